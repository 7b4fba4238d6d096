import optuna

from autofr.search.confirm import confirm_candidates as _confirm_candidates
from autofr.search.records import CONFIRMED_PREFIX, StudyRecords


def confirm_candidates(study, *args, **kwargs):
    """The chosen trials as the study's own FrozenTrials."""
    return [study.trials[t.number] for t in _confirm_candidates(StudyRecords.load(study), *args, **kwargs)]


def constructed_study():
    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [("baseline", 1.0, 0.0)] + [("frdiff", 1.3 + 0.1 * i, 0.001 * (i + 1)) for i in range(6)]
    rows += [("search", 2.0 + i, 0.01 * (i + 1) ** 2) for i in range(8)] + [("search", 1.5, 0.5)]
    rows += [("reduced_steps", 2.5, 0.3), ("reduced_steps", 5.0, 0.9)]
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


def test_fewer_step_baselines_are_confirmed_after_frdiff():
    study = constructed_study()
    chosen = [t.user_attrs["origin"] for t in confirm_candidates(study, top_k=0, limit=None)]
    assert chosen.count("reduced_steps") == 2
    last_frdiff = max(i for i, origin in enumerate(chosen) if origin == "frdiff")
    assert all(i > last_frdiff for i, origin in enumerate(chosen) if origin == "reduced_steps")


def test_no_limit_takes_everything_once_and_skips_confirmed():
    study = constructed_study()
    everything = confirm_candidates(study, top_k=2, limit=None)
    numbers = [t.number for t in everything]
    assert len(numbers) == len(set(numbers))
    assert {t.number for t in study.best_trials} <= set(numbers)
    study.set_user_attr(f"{CONFIRMED_PREFIX}{numbers[0]}", {"fid": 1.0})
    assert numbers[0] not in [t.number for t in confirm_candidates(study, top_k=2, limit=None)]


def test_a_schedule_proposed_twice_is_confirmed_once():
    study = optuna.create_study(directions=["maximize", "minimize"])
    schedule = {"num_inference_steps": 20, "units": {"a": {"interval": 2, "offset": 0}}, "mixing": {"enabled": False}}
    for origin, provenance in (("baseline", {}), ("search", {"kind": "first"}), ("search", {"kind": "twin"})):
        attrs = {"origin": origin, "schedule": dict(schedule, provenance=provenance)}
        if origin == "baseline":
            attrs["schedule"] = dict(schedule, num_inference_steps=50)
        study.add_trial(
            optuna.trial.create_trial(
                values=[2.0 if origin == "search" else 1.0, 0.1 if origin == "search" else 0.0], user_attrs=attrs
            )
        )
    chosen = [t.number for t in confirm_candidates(study, top_k=3, limit=None)]
    assert chosen == [0, 1]
    study.set_user_attr(f"{CONFIRMED_PREFIX}1", {"fid": 1.0})
    assert [t.number for t in confirm_candidates(study, top_k=3, limit=None)] == [0]


def test_confirm_layers_adds_the_trials_just_behind_the_proxy_front():
    study = optuna.create_study(directions=["maximize", "minimize"])
    # (speed, proxy): layer 1 = 3.0/0.2 and 2.0/0.1; layer 2 = 2.9/0.25 and 1.9/0.12; layer 3 = 1.8/0.3
    rows = [
        ("baseline", 1.0, 0.5),
        ("search", 3.0, 0.2),
        ("search", 2.0, 0.1),
        ("search", 2.9, 0.25),
        ("search", 1.9, 0.12),
        ("search", 1.8, 0.3),
        ("search", 2.5, 0.05),
    ]
    for origin, speed, proxy in rows:
        attrs = {"origin": origin, "constraint": 1.0 if proxy == 0.05 else -1.0}  # 2.5/0.05 is infeasible
        study.add_trial(
            optuna.trial.create_trial(
                values=[speed, proxy], user_attrs=attrs, system_attrs={"constraints": [attrs["constraint"]]}
            )
        )
    one = [t.number for t in confirm_candidates(study, top_k=0, limit=None)]
    two = [t.number for t in confirm_candidates(study, top_k=0, limit=None, layers=2)]
    three = [t.number for t in confirm_candidates(study, top_k=0, limit=None, layers=3)]
    assert one == [0, 1, 2]
    assert two == [0, 1, 2, 3, 4]  # the second layer follows the front, fastest first
    assert three == [0, 1, 2, 3, 4, 5]
    assert 6 not in three  # an infeasible trial is never a candidate, however good its proxy


def test_confirm_proxies_adds_the_front_of_another_recorded_metric():
    study = optuna.create_study(directions=["maximize", "minimize"])
    # (speed, proxy, latent_mse). On the proxy the front is trials 1 and 2. On latent_mse, trial 3
    # (2.8x, barely changes the output) joins it; trial 4 is dominated on both; 5 is infeasible.
    rows = [
        ("baseline", 1.0, 0.9, 0.0),
        ("search", 3.0, 0.2, 0.009),
        ("search", 2.0, 0.1, 0.004),
        ("search", 2.8, 0.5, 0.001),
        ("search", 1.5, 0.6, 0.008),
        ("search", 3.5, 0.7, 0.0005),
    ]
    for origin, speed, proxy, latent in rows:
        attrs = {
            "origin": origin,
            "proxy_metrics": {"fid_real": proxy, "latent_mse": latent},
            "constraint": 1.0 if speed == 3.5 else -1.0,
        }
        study.add_trial(
            optuna.trial.create_trial(
                values=[speed, proxy], user_attrs=attrs, system_attrs={"constraints": [attrs["constraint"]]}
            )
        )
    assert [t.number for t in confirm_candidates(study, top_k=0)] == [0, 1, 2]
    both = [t.number for t in confirm_candidates(study, top_k=0, proxies=("latent_mse",))]
    assert both == [0, 1, 2, 3]  # the latent_mse front is 3 (and 0, 2, confirmed once): fastest first
    assert 4 not in both and 5 not in both
    # a metric no trial records adds nothing rather than failing a finished study's confirmation
    assert [t.number for t in confirm_candidates(study, top_k=0, proxies=("ssim",))] == [0, 1, 2]


def test_calibrated_schedules_do_not_take_the_hand_set_baselines_places():
    """Five calibrated warm-start schedules and one hand-set baseline: within a budget of four the
    hand-set one is confirmed, so "what the answer beat" has a hand-set point to name."""
    from autofr.search.confirm import deciding_order

    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = (
        [("baseline", 1.0, 0.0)] + [("calibrated", 2.0 + 0.1 * i, 0.01 * i) for i in range(5)] + [("frdiff", 1.6, 0.0)]
    )
    for origin, speed, proxy in rows:
        study.add_trial(optuna.trial.create_trial(values=[speed, proxy], user_attrs={"origin": origin}))
    chosen = [
        t.user_attrs["origin"]
        for t in confirm_candidates(study, top_k=0, limit=4, order=deciding_order, near_target=True)
    ]
    assert chosen[0] == "baseline" and "frdiff" in chosen and chosen.count("calibrated") == 2


def test_a_schedule_clearly_within_the_target_is_confirmed_before_faster_likely_misses():
    """Two trials a little faster than a clearly feasible one, each 1.5-1.75 sd beyond the limit: with
    room for two confirmations after full compute, the feasible one is among them (fastest-first
    would spend both places on the likely misses and never confirm the probable answer)."""
    from autofr.search.confirm import chance_within, deciding_order
    from autofr.search.records import StudyRecords

    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [
        ("baseline", 1.0, 0.50, -0.03, 0.0),
        ("search", 2.30, 0.49, -0.05, 0.01),
        ("search", 2.34, 0.63, 0.03, 0.02),
        ("search", 2.33, 0.62, 0.035, 0.02),
    ]
    for origin, speed, fid, constraint, sd in rows:
        attrs = {"origin": origin, "constraint": constraint, "fid_estimate": fid, "fid_estimate_sd": sd}
        study.add_trial(
            optuna.trial.create_trial(
                values=[speed, fid], user_attrs=attrs, system_attrs={"constraints": [constraint]}
            )
        )
    chosen = [t.number for t in confirm_candidates(study, top_k=0, limit=3, order=deciding_order, near_target=True)]
    assert chosen[:2] == [0, 1] and len(chosen) == 3
    trials = {t.number: t for t in StudyRecords.load(study).completed()}
    assert chance_within(trials[1]) > 0.99 and 0.05 < chance_within(trials[2]) < 0.1
