"""Pareto fronts, hypervolume, export policies and the front table on a constructed study."""

from __future__ import annotations

import functools

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from autofr.errors import ConfigError
from autofr.report.tables import format_table, front_table
from autofr.search import front as fronts
from autofr.search.records import CONFIRMED_PREFIX, StudyRecords

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

# origin, label, predicted speedup, proxy, confirmation (or None), interval, mixing
TRIALS = [
    ("baseline", "full compute", 1.0, 0.0, {"fid": 10.0, "fid_vs_full": 0.0, "measured_speedup": 1.0}, 1, False),
    ("frdiff", "FRDiff M=2", 1.6, 0.02, {"fid": 10.3, "fid_vs_full": 0.5, "measured_speedup": 1.55}, 2, False),
    ("frdiff", "FRDiff M=3 +mixing", 2.4, 0.05, {"fid": 10.9, "fid_vs_full": 1.1, "measured_speedup": 2.3}, 3, True),
    ("search", "", 2.0, 0.015, {"fid": 10.45, "fid_vs_full": 0.6, "measured_speedup": 1.95}, 2, True),
    ("search", "", 3.0, 0.08, {"fid": 14.0, "fid_vs_full": 4.0, "measured_speedup": 2.9}, 4, True),
    ("search", "", 1.8, 0.03, None, 2, False),  # on neither front, not confirmed
    ("search", "", 1.5, 0.06, {"fid": 12.0, "fid_vs_full": 2.0, "measured_speedup": 1.45}, 2, False),  # dominated
]
STEPS = 10


@functools.cache
def schedule_dict(interval: int, mixing: bool) -> dict:
    from diffusers import UNet2DModel

    from autofr.schedule import ReuseSchedule

    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    return ReuseSchedule.uniform(model, STEPS, interval, mixing=mixing).to_dict()


def build_study(storage=None, study_name: str = "frstudy", confirmed: bool = True) -> optuna.Study:
    """The constructed study of these tests: 7 completed trials and one failed one.

    Baseline and FRDiff confirmations sit in the trials' user attrs, search-trial confirmations in the
    study's ``confirmed:<n>`` attrs (the way autofr-search stores them); both must be read.
    """
    study = optuna.create_study(storage=storage, study_name=study_name, directions=["maximize", "minimize"])
    study.set_user_attr("model_id", "tiny_unet")
    study.set_user_attr("proxy_name", "latent_mse")
    study.set_user_attr("fid_name", "fid_1000")
    study.set_user_attr("baseline_steps", STEPS)
    for number, (origin, label, speedup, proxy, confirmation, interval, mixing) in enumerate(TRIALS):
        attrs = {
            "schedule": schedule_dict(interval, mixing),
            "origin": origin,
            "label": label,
            "predicted_speedup": speedup,
            "proxy": proxy,
            "proxy_metrics": {"latent_mse": proxy, "psnr": 40 - 100 * proxy},
            "num_inference_steps": STEPS,
        }
        if confirmed and confirmation and origin != "search":
            attrs.update(confirmation)
        study.add_trial(create_trial(values=[speedup, proxy], user_attrs=attrs, params={}, distributions={}))
        if confirmed and confirmation and origin == "search":
            study.set_user_attr(f"{CONFIRMED_PREFIX}{number}", confirmation)
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            user_attrs={"origin": "search", "fail_reason": "NaN samples"},
            params={},
            distributions={},
        )
    )
    if confirmed:
        study.set_user_attr("fid_full_compute", 10.0)
        study.set_user_attr("proxy_fid_spearman", 0.9)
        study.set_user_attr("proxy_fid_kendall", 0.8)
        study.set_user_attr(
            "proxy_fidelity",
            [
                {
                    "proxy": name,
                    "n": 6,
                    "spearman": rho,
                    "spearman_p": 0.01,
                    "kendall": tau,
                    "kendall_p": 0.02,
                    "proxy_seconds": 0.5,
                    "fid_seconds": 30.0,
                    "cost_ratio": 60.0,
                }
                for name, rho, tau in (("latent_mse", 0.9, 0.8), ("psnr", -0.7, -0.6))
            ],
        )
    return study


@pytest.fixture(scope="module")
def study():
    return StudyRecords.load(build_study())


def numbers(trials) -> list[int]:
    return [t.number for t in trials]


# ---------------------------------------------------------------------- Pareto and hypervolume
def test_pareto_front_on_known_points():
    points = [(1, 5), (2, 4), (2, 4), (1.5, 6), (3, 7), (float("nan"), 0)]
    assert fronts.pareto_front(points) == [1, 2, 4]
    assert fronts.pareto_front(points, maximize=(True, True)) == [4]
    # three objectives (the general path): (1, 1, 1) is dominated by (1, 2, 1)
    assert fronts.pareto_front([(1, 1, 1), (1, 2, 1), (0, 0, 5)], maximize=(True, True, True)) == [1, 2]
    assert fronts.pareto_front([]) == []


def test_hypervolume_on_known_points():
    assert fronts.hypervolume_2d([(2, 1), (3, 2)], (1, 3)) == pytest.approx(3.0)
    # a dominated point and points outside the reference box add nothing
    assert fronts.hypervolume_2d([(2, 1), (3, 2), (1.5, 2.5), (0.5, 0), (4, 3)], (1, 3)) == pytest.approx(3.0)
    assert fronts.hypervolume_2d([], (1, 3)) == 0.0


def test_hypervolume_history_grows_to_the_front_volume(study):
    history = fronts.hypervolume_history(study.trials)
    assert [count for count, _ in history] == list(range(1, 8))  # completed trials only
    volumes = [volume for _, volume in history]
    assert all(b >= a for a, b in zip(volumes, volumes[1:]))
    # reference (speed 1.0, worst proxy 0.08): front trials 3 (2.0, 0.015) and 2 (2.4, 0.05)
    assert fronts.hypervolume_reference(study.trials) == (1.0, 0.08)
    assert volumes[-1] == pytest.approx(1.0 * 0.065 + 0.4 * 0.03)


# ---------------------------------------------------------------------- fronts
def test_fronts_and_confirmed_trials(study):
    assert numbers(study.confirmed()) == [0, 1, 2, 3, 4, 6]
    assert numbers(fronts.proxy_front(study.trials)) == [0, 3, 2, 4]
    assert numbers(fronts.fid_front(study.trials)) == [0, 1, 3, 2, 4]
    trial_3 = next(t for t in study.trials if t.number == 3)
    assert trial_3.speed == 1.95  # measured beats predicted
    trial_5 = next(t for t in study.trials if t.number == 5)
    assert trial_5.speed == 1.8
    assert fronts.full_compute_fid(study) == 10.0


# ---------------------------------------------------------------------- export policies
@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, 3),  # FID <= 10.5: trials 1 (1.55x) and 3 (1.95x)
        ({"delta": 0.1}, 2),  # FID <= 11.0: trial 2 (2.3x)
        ({"delta_abs": 0.35}, 1),  # FID <= 10.35: trial 1 only
    ],
)
def test_fastest_within(study, options, expected):
    assert fronts.select_trial(study, "fastest_within", **options).number == expected


def test_best_at_speedup(study):
    assert fronts.select_trial(study, "best_at_speedup", min_speedup=2.2).number == 2
    assert fronts.select_trial(study, "best_at_speedup", min_speedup=1.0).number == 0


def test_knee(study):
    # normalised front (0,0) (.29,.075) (.5,.11) (.68,.225) (1,1): trial 2 is farthest from the diagonal
    assert fronts.select_trial(study, "knee").number == 2


def test_proxy_measure_for_unconfirmed_studies():
    unconfirmed = StudyRecords.load(build_study(confirmed=False))
    assert unconfirmed.confirmed() == []
    assert fronts.select_trial(unconfirmed, "fastest_within", measure="proxy", delta_abs=0.02).number == 3
    assert fronts.select_trial(unconfirmed, "best_at_speedup", measure="proxy", min_speedup=2.2).number == 2
    with pytest.raises(ConfigError, match="no FID-confirmed trials.*export.measure=proxy"):
        fronts.select_trial(unconfirmed, "knee")


@pytest.mark.parametrize(
    "policy, options, message",
    [
        ("fastest_within", {"delta": 0.0}, r"raise export.delta"),
        ("best_at_speedup", {"min_speedup": 5.0}, r"fastest: 2.9x.*lower export.min_speedup"),
        ("best_at_speedup", {}, r"needs export.min_speedup"),
        ("fastest", {}, r"unknown: use one of fastest_within, best_at_speedup, knee"),
        ("knee", {"delta": 0.1}, r"does not apply to policy knee"),
        ("fastest_within", {"delta": -1}, r"export.delta=-1 must be"),
    ],
)
def test_no_eligible_trial_says_what_to_relax(study, policy, options, message):
    with pytest.raises(ConfigError, match=message) as raised:
        fronts.select_trial(study, policy, **options)
    assert "\n" not in str(raised.value)


def test_knee_needs_three_front_points():
    small = optuna.create_study(directions=["maximize", "minimize"])
    for speed, fid in ((1.0, 10.0), (2.0, 12.0), (1.5, 13.0)):
        small.add_trial(
            create_trial(
                values=[speed, 0.1], user_attrs={"fid": fid, "predicted_speedup": speed}, params={}, distributions={}
            )
        )
    with pytest.raises(ConfigError, match="knee needs 3 trials.*has 2"):
        fronts.select_trial(StudyRecords.load(small), "knee")


# ---------------------------------------------------------------------- table
def test_front_table_rows_and_text(study):
    rows = front_table(study)
    assert [row["trial"] for row in rows] == [0, 6, 1, 3, 2, 4]  # by speed; trial 5 is neither front nor confirmed
    by_trial = {row["trial"]: row for row in rows}
    assert by_trial[0]["label"] == "full compute" and by_trial[0]["on_front"]
    assert not by_trial[6]["on_front"] and by_trial[3]["on_proxy_front"] and not by_trial[1]["on_proxy_front"]
    assert by_trial[3]["fid"] == 10.45 and by_trial[3]["measured_speedup"] == 1.95 and by_trial[3]["steps"] == STEPS
    assert len(front_table(study, all_trials=True)) == 7

    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["trial", "label", "steps"] and "FID vs full" in lines[0]
    assert len(lines) == 2 + len(rows)
    assert any("FRDiff M=3 +mixing" in line and "10.9" in line and line.endswith("*") for line in lines)
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned
    assert lines[3].split()[:5] == ["6", "search", "10", "1.50", "1.45"]


@pytest.mark.parametrize("spread, resolved", [(0.05, True), (3.0, False)])
def test_a_target_inside_the_seed_noise_is_reported_as_not_resolved(spread, resolved):
    """5% of FID 10 allows 0.5; paired differences that swing by +-3 between seeds cannot tell it."""
    study = build_study()
    for number in (3, 6):  # two confirmed searched points, at two seeds each
        mean = TRIALS[number][4]["fid_vs_full"]
        confirmation = dict(TRIALS[number][4])
        confirmation["fid_seeds"] = {"0": 10.0 + mean - spread, "1": 10.0 + mean + spread}
        confirmation["fid_full_seeds"] = {"0": 10.0, "1": 10.0}
        study.set_user_attr(f"{CONFIRMED_PREFIX}{number}", confirmation)
    records = StudyRecords.load(study)
    decided = fronts.resolution(records)
    assert decided is not None and decided.resolved is resolved and decided.samples == 1000
    lines = fronts.StudyAnswer.of(records, records.trial(3)).lines()
    if resolved:
        assert not any("not resolved" in line for line in lines)
    else:
        assert decided.samples_needed > 1000
        assert any("not resolved" in line and f"fid_samples={decided.samples_needed}" in line for line in lines)
