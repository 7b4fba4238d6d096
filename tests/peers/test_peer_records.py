"""Peers in a study's records: reported as peers beside the hand-set references, confirmed in their own
stream, never on the schedules' front and never exported."""

from __future__ import annotations

import pytest

from autofr.errors import ConfigError
from autofr.report.tables import front_table
from autofr.search import front as fronts
from autofr.search.confirm import confirm_candidates, deciding_order
from autofr.search.export import export_schedule
from autofr.search.records import CONFIRMED_PREFIX, StudyRecords, TrialResult, add_peer_trial
from tests.search.test_front import build_study


def add_peer(
    study, label: str, speed: float, fid: float | None, proxy: float = 0.01, method: str = "mag_cache"
) -> None:
    result = TrialResult(
        schedule=None,
        num_inference_steps=10,
        predicted_speedup=None,
        proxy=proxy,
        measured_speedup=speed,
        constraint=-1.0,
        peer={"method": method, "source": "diffusers", "label": label, "options": {"threshold": speed}},
    )
    add_peer_trial(study, label, result, (speed, proxy))
    if fid is not None:
        number = study.trials[-1].number
        study.set_user_attr(
            f"{CONFIRMED_PREFIX}{number}",
            {"fid": fid, "measured_speedup": speed, "fid_seeds": {"0": fid}, "fid_full_seeds": {"0": 10.0}},
        )


def test_a_faster_peer_is_reported_but_never_picked_and_never_exported(tmp_path):
    study = build_study()
    before = fronts.hypervolume_history(StudyRecords.load(study).trials)
    add_peer(study, "MagCache 0.12", speed=3.5, fid=10.2)  # fastest within the target (10.5)
    add_peer(study, "MagCache 0.48", speed=4.0, fid=11.5)  # outside it
    records = StudyRecords.load(study)
    peer = next(t for t in records.trials if t.label == "MagCache 0.12")
    assert peer.is_peer and not peer.is_reference and peer.speed == 3.5 and peer.schedule is None
    chosen = fronts.select_default(records)
    assert not chosen.is_peer and chosen.schedule
    lines = fronts.StudyAnswer.of(records, chosen).lines()
    assert any(line.startswith("a peer is faster: MagCache 0.12 (3.50x)") for line in lines)
    assert all(not t.is_peer for t in fronts.fid_front(records.trials) + fronts.proxy_front(records.trials))
    assert fronts.hypervolume_history(records.trials) == before, "peers are not the search's hypervolume"
    rows = {row["label"]: row for row in front_table(records)}
    assert rows["MagCache 0.48"]["measured_speedup"] == 4.0 and rows["MagCache 0.48"]["predicted_speedup"] is None
    exported = export_schedule(records, "fastest_within", {}, tmp_path / "schedule.json")
    assert not exported.trial.is_peer and exported.schedule.provenance["origin"] != "peer"


def test_a_slower_peer_is_beaten_by_a_margin():
    study = build_study()
    add_peer(study, "FirstBlockCache 0.1", speed=1.2, fid=10.1, method="first_block_cache")
    records = StudyRecords.load(study)
    chosen = fronts.select_default(records)
    assert any(
        line == f"beats the fastest peer within the target, FirstBlockCache 0.1 (1.20x), by {chosen.speed / 1.2:.2f}x"
        for line in fronts.StudyAnswer.of(records, chosen).lines()
    )


def test_a_study_whose_only_confirmed_candidates_are_peers_exports_nothing(tmp_path):
    study = build_study(confirmed=False)
    add_peer(study, "MagCache 0.12", speed=3.5, fid=10.2)
    records = StudyRecords.load(study)
    with pytest.raises(ConfigError, match="no FID-confirmed trials"):
        export_schedule(records, "fastest_within", {}, tmp_path / "schedule.json")
    with pytest.raises(ConfigError):
        export_schedule(records, "best_at_speedup", {"min_speedup": 1.0}, tmp_path / "schedule.json")
    assert not (tmp_path / "schedule.json").exists()


def test_peers_are_confirmed_in_their_own_stream_beside_front_and_references():
    study = build_study(confirmed=False)
    for speed in (1.3, 2.2, 2.8):
        add_peer(study, f"PAB every {speed}", speed=speed, fid=None, method="pyramid_attention_broadcast")
    records = StudyRecords.load(study)
    ordered = confirm_candidates(records, top_k=1, order=deciding_order)
    kinds = ["peer" if t.is_peer else "reference" if t.is_reference else "search" for t in ordered]
    assert ordered[0].origin == "baseline"
    assert kinds[1:4] == ["search", "reference", "peer"], kinds
    peers = [t for t in ordered if t.is_peer]
    assert [t.speed for t in peers] == [2.8, 2.2, 1.3], "fastest first, like the references"
    assert len(confirm_candidates(records, top_k=1, limit=4, order=deciding_order)) == 4
