"""Trial origins: one type, the stored names studies have always held, each kind's role and style."""

import json

import optuna

from autofr.search.origin import Origin
from autofr.search.records import StudyRecords, enqueue_reference, mark_origin


def test_stored_names_are_those_old_studies_hold():
    assert {o.value for o in Origin} == {
        "baseline",
        "frdiff",
        "reduced_steps",
        "deepcache",
        "block_split",
        "magcache_rule",
        "calibrated",
        "search",
        "peer",
    }
    assert Origin.FULL_COMPUTE == "baseline" and json.dumps(Origin.FRDIFF) == '"frdiff"'
    assert f"{Origin.DEEPCACHE}" == str(Origin.DEEPCACHE) == "deepcache"


def test_each_origin_knows_what_it_is():
    assert Origin.FULL_COMPUTE.is_full_compute and Origin.FULL_COMPUTE.is_reference
    assert {o for o in Origin if o.is_reference and not o.is_full_compute} == set(Origin.references())
    assert Origin.references() == [  # confirmation order
        Origin.FRDIFF,
        Origin.DEEPCACHE,
        Origin.REDUCED_STEPS,
        Origin.BLOCK_SPLIT,
        Origin.MAGCACHE_RULE,
    ]
    assert Origin.PEER.is_peer and not Origin.PEER.is_reference and not Origin.PEER.is_enqueued
    assert Origin.CALIBRATED.is_enqueued and not Origin.CALIBRATED.is_reference
    assert not Origin.SEARCH.is_enqueued and Origin.SEARCH.style is None
    assert all(o.style is not None for o in Origin.references()) and Origin.FULL_COMPUTE.style.marker == "*"
    assert Origin.FRDIFF.label == "FRDiff uniform"
    assert Origin.parse(None) is Origin.SEARCH and Origin.parse("unknown kind") is Origin.SEARCH


def test_origins_round_trip_through_the_storage():
    study = optuna.create_study(directions=["maximize", "minimize"])
    enqueue_reference(study, {"x": 1}, Origin.FRDIFF, "FRDiff M=2")

    def objective(trial):
        trial.suggest_int("x", 0, 3)
        mark_origin(trial)
        return 1.0, 1.0

    study.optimize(objective, n_trials=2)
    trials = study.get_trials()
    assert [t.user_attrs["origin"] for t in trials] == ["frdiff", "search"]
    records = StudyRecords.load(study)
    assert [t.origin for t in records.trials] == [Origin.FRDIFF, Origin.SEARCH]
    assert records.trials[0].is_reference and records.trials[0].display_label == "FRDiff M=2"
    assert records.trials[1].display_label == "search"
