"""The quality target: parsing, export within it, the answer, and a front plot a person can read."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import create_trial

from autofr.errors import ConfigError
from autofr.report.plots import front_figure, quality_view
from autofr.search import front as fronts
from autofr.search.records import CONFIRMED_PREFIX, StudyRecords
from autofr.target import QualityTarget

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("5%", "relative", 0.05),
        ("1.03x", "relative", 0.03),
        (0.47, "absolute", 0.47),
        ("0.47", "absolute", 0.47),
        (None, "relative", 0.05),
    ],
)
def test_target_parses(text, kind, value):
    target = QualityTarget.parse(text)
    assert target.kind == kind and target.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["loose", "-5%", "0", True])
def test_bad_target_is_a_config_error(text):
    with pytest.raises(ConfigError, match="search.target"):
        QualityTarget.parse(text)


def study_of(rows, target="5%", full_fid=1.0):
    """rows: (origin, label, speed, fid seeds {seed: fid}, full compute's fid at those seeds)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("target", QualityTarget.parse(target).to_info())
    study.set_user_attr("fid_full_compute", full_fid)
    for number, (origin, label, speed, seeds, full_seeds) in enumerate(rows):
        study.add_trial(
            create_trial(
                values=[speed, 0.1], user_attrs={"origin": origin, "label": label, "predicted_speedup": speed}
            )
        )
        mean = sum(seeds.values()) / len(seeds)
        study.set_user_attr(
            f"{CONFIRMED_PREFIX}{number}",
            {"fid": mean, "fid_seeds": seeds, "fid_full_seeds": full_seeds, "measured_speedup": speed},
        )
    return StudyRecords.load(study)


def test_export_picks_the_fastest_within_the_target_paired_by_seed():
    full = {"0": 1.0, "1": 1.02}
    records = study_of(
        [
            ("baseline", "full compute", 1.0, full, full),
            ("frdiff", "FRDiff M=3", 2.0, {"0": 1.04, "1": 1.06}, full),  # mean 1.05 <= 1.05 * 1.01 = 1.0605
            ("search", "", 3.0, {"0": 1.07, "1": 1.07}, full),  # mean 1.07 > 1.0605: outside
            ("search", "", 2.5, {"0": 1.05, "1": 1.055}, full),  # mean 1.0525: inside, fastest inside
            (
                "search",
                "",
                2.8,
                {"0": 1.04, "1": 1.05},
                {"0": 0.98, "1": 0.98},
            ),  # inside vs the study's FID, not paired
        ],
        full_fid=1.01,
    )
    chosen = fronts.select_default(records)
    assert chosen.number == 3
    assert not fronts.within_target(records, records.trial(4))  # 1.045 > 1.05 * 0.98
    assert fronts.StudyAnswer.of(records, chosen).lines() == [
        "beats the fastest hand-set baseline within the target, FRDiff M=3 (2.00x), by 1.25x"
    ]


def test_when_a_hand_set_baseline_wins_the_verdict_says_so_with_the_margin():
    full = {"0": 1.0}
    records = study_of(
        [
            ("baseline", "full compute", 1.0, full, full),
            ("frdiff", "FRDiff M=4", 1.8, {"0": 1.02}, full),
            ("search", "", 1.5, {"0": 1.03}, full),
            ("search", "", 4.0, {"0": 1.5}, full),
        ]
    )
    chosen = fronts.select_default(records)
    assert chosen.label == "FRDiff M=4"
    lines = fronts.StudyAnswer.of(records, chosen).lines()
    assert lines[0].startswith("a hand-set baseline wins: FRDiff M=4 (1.80x)")
    assert "trial 2 at 1.50x, 1.20x slower" in lines[1]


def test_export_never_picks_a_point_outside_the_target():
    generator = random.Random(0)
    for _ in range(200):
        full = {"0": 1.0, "1": 1.0 + generator.uniform(-0.02, 0.02)}
        rows = [("baseline", "full compute", 1.0, full, full)]
        for _ in range(generator.randint(1, 8)):
            seeds = {s: v * generator.uniform(0.97, 1.2) for s, v in full.items()}
            rows.append((generator.choice(["search", "frdiff"]), "", generator.uniform(1.1, 5.0), seeds, full))
        tolerance = generator.choice(["2%", "5%", "10%"])
        records = study_of(rows, target=tolerance)
        try:
            chosen = fronts.select_default(records)
        except ConfigError as error:
            assert "no trial faster than full compute" in str(error)
            assert not any(fronts.within_target(records, t) and t.speed > 1 for t in records.confirmed())
            continue
        limit = (1 + QualityTarget.parse(tolerance).value) * sum(full.values()) / 2
        assert chosen.fid <= limit + 1e-12 and chosen.speed > 1
        faster_inside = [t for t in records.confirmed() if t.speed > chosen.speed and t.fid <= limit]
        assert not faster_inside


def test_quality_view_cuts_a_far_outlier_and_keeps_every_point_within_the_target():
    values = [0.44, 0.45, 0.46, 0.47, 0.52, 0.9, 36.0]
    low, high, hidden, log = quality_view(values, anchor=0.462)
    assert log and hidden == 2  # 0.9 and 36 lie beyond 1.5 times the limit
    assert low <= 0.44 and high >= 0.52 and high < 0.9
    low, high, hidden, _ = quality_view([0.44, 0.45], anchor=0.462)
    assert hidden == 0 and high >= 0.45


def test_front_plot_is_log_scaled_cut_to_the_target_and_marks_it():
    full = {"0": 0.44}
    rows = [
        ("baseline", "full compute", 1.0, full, full),
        ("frdiff", "FRDiff M=2", 1.5, {"0": 0.45}, full),
        ("frdiff", "FRDiff M=3", 2.2, {"0": 0.455}, full),
        ("reduced_steps", "20 steps", 2.8, {"0": 0.52}, full),
        ("search", "", 2.6, {"0": 0.46}, full),
        ("search", "", 5.0, {"0": 36.0}, full),
    ]
    records = study_of(rows, full_fid=0.44)
    figure = front_figure(records, chosen=4)
    axis = figure.axes[-1]  # the FID panel
    low, high = axis.get_ylim()
    limit = 0.44 * 1.05
    assert axis.get_yscale() == "log"
    assert high < 36.0 and all(low <= t.fid <= high for t in records.confirmed() if t.fid <= limit)
    assert any(
        math.isclose(line.get_ydata()[0], limit) for line in axis.get_lines() if len(set(line.get_ydata())) == 1
    )
    texts = [t.get_text() for t in axis.texts]
    assert any("not shown" in text for text in texts)
    labels = [t for t in axis.texts if t.get_text() in ("full compute", "FRDiff M=2", "FRDiff M=3", "20 steps")]
    boxes = [t.get_window_extent(figure.canvas.get_renderer()) for t in labels]
    assert len(boxes) >= 3 and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "exported: trial 4" in legend and any(text.startswith("target") for text in legend)


def test_a_schedule_at_the_limit_within_its_noise_is_flagged_and_a_clear_one_is_not():
    full = {"0": 1.0, "1": 1.0, "2": 1.0}
    records = study_of(
        [
            ("baseline", "full compute", 1.0, full, full),
            ("search", "", 2.5, {"0": 1.03, "1": 1.07, "2": 1.045}, full),  # mean 1.0483 <= 1.05, the seeds spread 4%
            ("search", "", 2.0, {"0": 0.95, "1": 0.96, "2": 0.955}, full),  # 9% inside the limit
        ]
    )
    assert fronts.select_default(records).number == 1
    warning = fronts.close_to_limit(records, records.trial(1))
    assert warning and warning.startswith("close to the limit: within it by 0.17%") and "over 3 seeds" in warning
    assert fronts.close_to_limit(records, records.trial(2)) is None
    single = study_of(
        [("baseline", "full compute", 1.0, {"0": 1.0}, {"0": 1.0}), ("search", "", 2.5, {"0": 1.049}, {"0": 1.0})]
    )
    assert fronts.close_to_limit(records=single, trial=single.trial(1)) is None  # one seed: the noise is unmeasured


def test_the_answer_is_computed_once_with_margins_and_their_spread():
    full = {"0": 1.0, "1": 1.02}
    records = study_of(
        [
            ("baseline", "full compute", 1.0, full, full),
            ("frdiff", "FRDiff M=3", 2.0, {"0": 1.04, "1": 1.06}, full),
            ("search", "", 3.0, {"0": 1.07, "1": 1.07}, full),  # outside
            ("search", "", 2.5, {"0": 1.05, "1": 1.055}, full),  # the answer
        ],
        full_fid=1.01,
    )
    study_repeats = {1: [1.9, 2.0, 2.2], 3: [2.4, 2.5, 2.5]}
    for number, repeats in study_repeats.items():
        records.trial(number).confirmation.speedup_repeats = repeats
    answer = fronts.StudyAnswer.of(records)
    assert answer.chosen.number == fronts.select_default(records).number == 3
    assert answer.fastest_reference.number == 1 and answer.fastest_peer is None and answer.problem is None
    margin = answer.over_reference
    assert margin.speed.value == pytest.approx(1.25)
    assert (margin.speed.low, margin.speed.high) == (pytest.approx(2.5 / 2.2), pytest.approx(2.4 / 1.9))
    assert margin.fid.value == pytest.approx(1.0525 - 1.05)
    assert (margin.fid.low, margin.fid.high, margin.fid.count) == (pytest.approx(-0.005), pytest.approx(0.01), 2)
    assert answer.deciding == [0, 1, 3]
    assert answer.metrics()["answer.over_reference.speed_ratio"] == pytest.approx(1.25)
    assert answer.to_dict()["chosen"]["trial"] == 3


def test_no_answer_says_why():
    full = {"0": 1.0}
    records = study_of([("baseline", "full compute", 1.0, full, full), ("search", "", 3.0, {"0": 1.5}, full)])
    answer = fronts.StudyAnswer.of(records)
    assert answer.chosen is None and "no trial faster than full compute" in answer.problem
    assert answer.lines() == [] and answer.metrics() == {}
