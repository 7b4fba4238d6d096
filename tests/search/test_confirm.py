import optuna

from autofr.search.study import CONFIRMED_PREFIX, confirm_candidates


def constructed_study():
    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [("baseline", 1.0, 0.0)] + [("frdiff", 1.3 + 0.1 * i, 0.001 * (i + 1)) for i in range(6)]
    rows += [("search", 2.0 + i, 0.01 * (i + 1) ** 2) for i in range(8)] + [("search", 1.5, 0.5)]
    for origin, speed, proxy in rows:
        study.add_trial(optuna.trial.create_trial(values=[speed, proxy], user_attrs={"origin": origin}))
    return study


def test_baseline_first_then_front_and_frdiff_interleaved_within_the_limit():
    study = constructed_study()
    chosen = confirm_candidates(study, top_k=1, limit=6)
    assert len(chosen) == 6
    assert chosen[0].user_attrs["origin"] == "baseline"
    origins = [t.user_attrs["origin"] for t in chosen[1:]]
    assert "frdiff" in origins and "search" in origins
    front = {t.number for t in study.best_trials}
    assert all(t.number in front or t.user_attrs["origin"] != "search" for t in chosen)
    assert chosen[1].values[0] == max(t.values[0] for t in study.best_trials)  # fastest front member first


def test_no_limit_takes_everything_once_and_skips_confirmed():
    study = constructed_study()
    everything = confirm_candidates(study, top_k=2, limit=None)
    numbers = [t.number for t in everything]
    assert len(numbers) == len(set(numbers))
    assert {t.number for t in study.best_trials} <= set(numbers)
    study.set_user_attr(f"{CONFIRMED_PREFIX}{numbers[0]}", {"fid": 1.0})
    assert numbers[0] not in [t.number for t in confirm_candidates(study, top_k=2, limit=None)]
