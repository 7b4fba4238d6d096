"""A study of digits_flux with its peers, end to end: every cache that runs becomes a trial, is confirmed
like any candidate, is drawn on the front plot, and is never exported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from autofr.cli import export as export_cli
from autofr.cli import search as search_cli
from autofr.cli._config import compose
from autofr.config import StudyConfig
from autofr.report import front_figure
from autofr.report.plots import _inside, panels, peer_method, peer_style
from autofr.search.confirm import Confirmer
from autofr.search.records import StudyRecords
from autofr.search.study import AutoFRStudy, open_existing
from tests.peers.test_peer_sources import RUNS_ON_FLUX

N_TRIALS = 4
CONFIRM_MAX = 9


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        "model=digits_flux",
        "model.num_inference_steps=5",
        "space.steps=[4,5]",
        "space.baseline_steps=[4]",
        "space.max_interval=2",
        "quality.proxy_samples=4",
        "quality.fid_samples=8",
        "quality.batch_size=8",
        "search.fidelity=[4,8]",
        "search.fidelity_bootstrap=2",
        f"search.n_trials={N_TRIALS}",
        "search.fid_seeds=2",
        "search.timing_repeats=1",
        f"search.confirm_max={CONFIRM_MAX}",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        "sampler.n_startup_trials=2",
        f"storage.journal_path={root / 'journal.log'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"out_dir={root / 'out'}",
        f"cache_dir={root / 'cache'}",
        "study_name=flux_peers",
        *extra,
    ]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("peers")
    assert search_cli.main(overrides(root)) == 0
    config = StudyConfig.from_hydra(compose("config", overrides(root)))
    return root, config, StudyRecords.load(open_existing(config.storage, config.study_name))


def test_every_cache_that_runs_is_a_trial_with_measured_speed_and_quality(searched):
    _, _, records = searched
    peers = [t for t in records.trials if t.is_peer]
    assert {t.peer["method"] for t in peers} == RUNS_ON_FLUX
    assert len({t.label for t in peers}) == len(peers) >= 4 * len(RUNS_ON_FLUX)
    for trial in peers:
        assert trial.state == TrialState.COMPLETE and trial.schedule is None and trial.predicted_speedup is None
        assert trial.values[0] == pytest.approx(trial.measured_speedup) and trial.measured_speedup > 0
        assert math.isfinite(trial.fid_estimate) and trial.values[1] == pytest.approx(trial.fid_estimate)
        assert trial.fidelity in (4, 8) and trial.constraint is not None, "scored like a trial: adaptive fidelity"
    assert "faster_cache" in records.info.peers_skipped
    searched_trials = [t for t in records.completed() if not t.is_peer]
    assert len(searched_trials) == N_TRIALS, "peers take no slot of the search budget"


def test_peers_are_confirmed_with_the_peer_enabled_and_the_fid_is_reproducible(searched):
    _, config, records = searched
    confirmed = [t for t in records.confirmed() if t.is_peer]
    assert len(confirmed) >= CONFIRM_MAX // 3, "confirmed like any candidate, interleaved with the schedules"
    full = records.full_compute().confirmation.fid
    differing = [t for t in confirmed if t.fid != pytest.approx(full, abs=1e-9)]
    assert differing, "a peer's samples differ from full compute's"
    assert all(t.confirmation.measured_speedup > 0 and len(t.confirmation.fid_seeds) == 2 for t in confirmed)
    study = AutoFRStudy.prepare(config)
    fresh = Confirmer(
        study.model.pipe,
        study.protocol,
        study.measures,
        config.quality.fid_samples,
        fid_seeds=2,
        timing_repeats=0,
    )  # no score cache: sampled again
    peer = max(differing, key=lambda t: abs(t.fid - full))
    assert fresh.score(peer).fid_seeds == pytest.approx(peer.confirmation.fid_seeds, abs=1e-9)


def test_the_front_plot_draws_peers_with_their_own_legend_entries(searched):
    root, _, records = searched
    assert (root / "out" / "front.png").is_file() and (root / "out" / "front.html").is_file()
    html = (root / "out" / "front.html").read_text()
    assert "peer: MagCache" in html
    figure = front_figure(records)
    shown = 0
    for axis, panel in zip(figure.axes, panels(records)):
        labels = axis.get_legend_handles_labels()[1]
        inside = {peer_style(peer_method(t))[1] for t in panel.trials if t.is_peer and _inside(panel, t)}
        assert "searched schedules" in labels
        assert inside == {label for label in labels if label.startswith("peer: ")}, "one entry per peer in view"
        shown += len(inside)
        texts = {text.get_text() for text in axis.texts}
        if inside:
            assert any(
                text.startswith(("MagCache", "FirstBlockCache", "TaylorSeer", "PAB", "DBCache")) for text in texts
            )
    assert shown, "peers within the plotted range are drawn"


def test_export_writes_a_schedule_never_a_peer(searched):
    root, _, records = searched
    out = root / "schedule.json"
    assert export_cli.main(overrides(root, "export.delta=10", f"export.out={out}")) == 0
    provenance = json.loads(out.read_text())["provenance"]
    assert provenance["origin"] != "peer" and not records.trial(provenance["trial"]).is_peer


def test_a_resumed_study_evaluates_no_peer_twice_and_peers_take_no_budget(searched):
    root, _, _ = searched
    config = StudyConfig.from_hydra(compose("config", overrides(root, f"search.n_trials={N_TRIALS + 1}")))
    study = AutoFRStudy.prepare(config)
    assert not study.open(), "the same study, resumed"
    study.run()
    stage = study.evaluate_peers()
    records = study.records()
    assert len([t for t in records.completed() if not t.is_peer]) == N_TRIALS + 1
    assert not stage.added and stage.already == len([t for t in records.trials if t.is_peer])
    assert "faster_cache" in stage.skipped
