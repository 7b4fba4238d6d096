"""Pareto fronts, hypervolume and export policies over a finished (or running) Auto-FR study.

Pure functions of an Optuna study; nothing here touches MLflow, the model or the disk.

Conventions of an autofr study (written by :mod:`autofr.search.objective` and
:mod:`autofr.search.study`):

* ``study.directions == [MAXIMIZE, MINIMIZE]``: ``values[0]`` is the predicted speedup over full
  compute, ``values[1]`` the quality proxy (lower is better);
* each trial's ``user_attrs`` hold ``schedule``, ``origin`` (``baseline`` | ``frdiff`` |
  ``reduced_steps`` | ``search``),
  ``label``, ``predicted_speedup``, ``proxy``, ``num_inference_steps``;
* the FID confirmation of trial ``n`` (``fid``, ``fid_vs_full``, ``measured_speedup``, ...) is kept in
  the study's user attribute ``confirmed:<n>`` (finished trials cannot change in Optuna) or, for
  studies built by hand, in the trial's own ``user_attrs``. :func:`trial_records` merges both.

Speed is the *measured* speedup where a trial was timed, else the predicted one (:func:`speed_of`).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from autofr.errors import ConfigError

#: Study user attribute prefix under which the confirmation of trial ``n`` is stored.
CONFIRMED_PREFIX = "confirmed:"

#: Trial origins that are reference points rather than search results.
BASELINE_ORIGINS = ("baseline", "frdiff", "reduced_steps")

POLICIES = ("fastest_within", "best_at_speedup", "knee")
MEASURES = ("fid", "proxy")


# ---------------------------------------------------------------------- Pareto and hypervolume
def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool] = (True, False)) -> list[int]:
    """Indices (in input order) of the non-dominated points.

    ``maximize[k]`` says whether objective ``k`` is maximised. A point is dominated when another is
    at least as good in every objective and strictly better in one; equal points are all kept.
    Points with a non-finite coordinate are never on the front.
    """
    signs = [1.0 if up else -1.0 for up in maximize]
    scored = []
    for index, point in enumerate(points):
        if len(point) != len(signs):
            raise ValueError(f"point {index} has {len(point)} objectives, expected {len(signs)}")
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in point):
            scored.append((index, [s * float(v) for s, v in zip(signs, point)]))  # larger is better
    if len(signs) == 2:
        return sorted(_front_2d(scored))
    front = []
    for index, point in scored:
        dominated = any(
            all(o >= p for o, p in zip(other, point)) and any(o > p for o, p in zip(other, point))
            for _, other in scored
        )
        if not dominated:
            front.append(index)
    return front


def _front_2d(scored: list[tuple[int, list[float]]]) -> list[int]:
    """Non-dominated indices of 2-objective points (both maximised) in O(n log n)."""
    by_first = sorted(scored, key=lambda item: -item[1][0])
    front, best_second, start = [], -math.inf, 0
    while start < len(by_first):
        end = start
        while end < len(by_first) and by_first[end][1][0] == by_first[start][1][0]:
            end += 1
        group = by_first[start:end]
        group_best = max(point[1] for _, point in group)
        if group_best > best_second:
            front.extend(index for index, point in group if point[1] == group_best)
        best_second = max(best_second, group_best)
        start = end
    return front


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (maximise ``x`` = speed, minimise ``y`` = FID or proxy) and
    bounded by ``reference = (x_ref, y_ref)``. Points not strictly better than the reference in both
    coordinates add nothing."""
    x_ref, y_ref = float(reference[0]), float(reference[1])
    usable = sorted(
        ((float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y) and x > x_ref and y < y_ref),
        key=lambda p: (-p[0], p[1]),
    )
    area, best_y = 0.0, y_ref
    for i, (x, y) in enumerate(usable):
        best_y = min(best_y, y)
        next_x = usable[i + 1][0] if i + 1 < len(usable) else x_ref
        area += (x - next_x) * (y_ref - best_y)
    return area


def hypervolume_reference(study: optuna.Study) -> tuple[float, float]:
    """The reference point of :func:`hypervolume_history`: speed 1.0 (full compute) and the worst
    proxy among the study's feasible completed trials.

    Fixed over the whole history so the curve is comparable from trial to trial; with this choice the
    worst trial adds no area, and only schedules faster than full compute count.
    """
    proxies = [t.values[1] for t in _complete(study) if _feasible(t) and math.isfinite(t.values[1])]
    return 1.0, (max(proxies) if proxies else 0.0)


def hypervolume_history(study: optuna.Study, reference: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """``(completed trial count, hypervolume)`` after each completed trial (in trial-number order) over
    the search objectives (predicted speedup, proxy). ``reference`` defaults to
    :func:`hypervolume_reference`. Infeasible trials (constraint > 0) add nothing."""
    reference = tuple(reference) if reference is not None else hypervolume_reference(study)
    history, seen = [], []
    for count, trial in enumerate(sorted(_complete(study), key=lambda t: t.number), start=1):
        if _feasible(trial):
            seen.append((trial.values[0], trial.values[1]))
        history.append((count, hypervolume_2d(seen, reference)))
    return history


# ---------------------------------------------------------------------- study views
def trial_records(study: optuna.Study, states: Sequence[TrialState] = (TrialState.COMPLETE,)) -> list[FrozenTrial]:
    """The study's trials (shallow copies) with their ``confirmed:<n>`` record merged into ``user_attrs``."""
    attrs = study.user_attrs
    trials = []
    for trial in study.get_trials(deepcopy=False, states=tuple(states)):
        confirmed = attrs.get(f"{CONFIRMED_PREFIX}{trial.number}")
        if isinstance(confirmed, Mapping) and confirmed:
            trial = copy.copy(trial)
            trial.user_attrs = {**trial.user_attrs, **confirmed}
        trials.append(trial)
    return trials


def confirmed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials that have a finite FID (confirmed with the full quality measure)."""
    return [t for t in trial_records(study) if _finite(t.user_attrs.get("fid"))]


def speed_of(trial: FrozenTrial) -> float:
    """Measured speedup where the trial was timed, else the predicted one."""
    for key in ("measured_speedup", "predicted_speedup"):
        value = trial.user_attrs.get(key)
        if _finite(value):
            return float(value)
    return float(trial.values[0]) if trial.values else float("nan")


def quality_of(trial: FrozenTrial, measure: str = "fid") -> float:
    """The trial's FID (``measure="fid"``) or search proxy (``measure="proxy"``); NaN when missing."""
    if measure == "fid":
        value = trial.user_attrs.get("fid")
    else:
        value = trial.user_attrs.get("proxy", trial.values[1] if trial.values else None)
    return float(value) if _finite(value) else float("nan")


def fid_front(study: optuna.Study) -> list[FrozenTrial]:
    """Confirmed trials on the Pareto front of speed (:func:`speed_of`, max) vs FID (min), by speed."""
    trials = confirmed_trials(study)
    front = pareto_front([(speed_of(t), t.user_attrs["fid"]) for t in trials])
    return sorted((trials[i] for i in front), key=speed_of)


def proxy_front(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible completed trials on the Pareto front of the search values (predicted speedup, proxy):
    the candidates to confirm with FID. Sorted by predicted speedup."""
    trials = [t for t in trial_records(study) if _feasible(t)]
    maximize = _maximize(study)
    front = pareto_front([tuple(t.values) for t in trials], maximize)
    return sorted((trials[i] for i in front), key=lambda t: t.values[0])


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The full-compute trial (origin ``baseline``), with its confirmation merged; None if absent."""
    for trial in trial_records(study):
        if trial.user_attrs.get("origin") == "baseline":
            return trial
    return None


def full_compute_fid(study: optuna.Study) -> float | None:
    """FID of full compute: the baseline trial's, else the study's ``fid_full_compute``."""
    baseline = baseline_trial(study)
    if baseline is not None and _finite(baseline.user_attrs.get("fid")):
        return float(baseline.user_attrs["fid"])
    value = study.user_attrs.get("fid_full_compute")
    return float(value) if _finite(value) else None


# ---------------------------------------------------------------------- export policies
def select_trial(study: optuna.Study, policy: str, **options: Any) -> FrozenTrial:
    """The trial an export policy picks (with its confirmation merged into ``user_attrs``).

    Policies (``measure="fid"`` by default: confirmed trials, speed = :func:`speed_of`):

    * ``fastest_within``: the fastest trial faster than full compute whose quality is at most
      ``Q_full * (1 + delta)`` (``delta`` default 0.05), or ``Q_full + delta_abs`` when ``delta_abs`` is
      given. ``Q_full`` is the full-compute baseline's FID (or proxy).
    * ``best_at_speedup``: the best quality among trials with speed >= ``min_speedup``.
    * ``knee``: the front point farthest from the straight line joining the front's two extremes,
      with both axes normalised to [0, 1] over the front (needs 3 front points).

    ``measure="proxy"`` runs the same policies on the search proxy over all feasible completed trials
    (for studies that were not confirmed). Options set to None are ignored. Raises
    :class:`ConfigError` with what to relax when no trial is eligible.
    """
    options = {key: value for key, value in options.items() if value is not None}
    allowed = {"fastest_within": {"delta", "delta_abs"}, "best_at_speedup": {"min_speedup"}, "knee": set()}
    if policy not in allowed:
        raise ConfigError(f"export policy {policy!r} is unknown: use one of {', '.join(POLICIES)}")
    measure = options.pop("measure", "fid")
    if measure not in MEASURES:
        raise ConfigError(f"export measure {measure!r} is unknown: use fid or proxy")
    unknown = sorted(set(options) - allowed[policy])
    if unknown:
        raise ConfigError(f"option {unknown[0]!r} does not apply to policy {policy}: "
                          f"it takes {', '.join(sorted(allowed[policy])) or 'no options'}")
    candidates = _candidates(study, measure)
    if not candidates:
        if measure == "fid":
            raise ConfigError(f"study {study.study_name!r} has no FID-confirmed trials: run the confirmation stage "
                              "(autofr-search on the same study) or export with export.measure=proxy")
        raise ConfigError(f"study {study.study_name!r} has no completed feasible trials: run autofr-search first")
    name = "FID" if measure == "fid" else "proxy"

    if policy == "fastest_within":
        reference = full_compute_fid(study) if measure == "fid" else _baseline_proxy(study)
        if reference is None:
            raise ConfigError(f"study {study.study_name!r} has no full-compute {name} to compare with: "
                              "confirm the baseline or use export.policy=best_at_speedup")
        if "delta_abs" in options:
            limit, allowance = reference + _number(options, "delta_abs"), f"+ {options['delta_abs']:g}"
        else:
            delta = _number(options, "delta", 0.05)
            limit, allowance = reference * (1.0 + delta), f"* (1 + {delta:g})"
        eligible = [t for t in candidates if speed_of(t) > 1.0 and quality_of(t, measure) <= limit]
        if not eligible:
            best = min((t for t in candidates if speed_of(t) > 1.0), key=lambda t: quality_of(t, measure), default=None)
            closest = f" (best faster trial: {quality_of(best, measure):.4g})" if best is not None else ""
            raise ConfigError(f"no trial faster than full compute has {name} <= {limit:.4g} "
                              f"(full compute {reference:.4g} {allowance}){closest}: raise export.delta or export.delta_abs")
        return max(eligible, key=lambda t: (speed_of(t), -quality_of(t, measure), -t.number))

    if policy == "best_at_speedup":
        if "min_speedup" not in options:
            raise ConfigError("policy best_at_speedup needs export.min_speedup (e.g. export.min_speedup=1.5)")
        min_speedup = _number(options, "min_speedup")
        eligible = [t for t in candidates if speed_of(t) >= min_speedup]
        if not eligible:
            fastest = max(speed_of(t) for t in candidates)
            raise ConfigError(f"no trial reaches speedup {min_speedup:g}x (fastest: {fastest:.3g}x): "
                              "lower export.min_speedup")
        return min(eligible, key=lambda t: (quality_of(t, measure), -speed_of(t), t.number))

    # knee
    points = [(speed_of(t), quality_of(t, measure)) for t in candidates]
    front = sorted((candidates[i] for i in pareto_front(points)), key=speed_of)
    if len(front) < 3:
        raise ConfigError(f"policy knee needs 3 trials on the speed-{name} front, the study has {len(front)}: "
                          "confirm more trials or use export.policy=fastest_within")
    return knee_point(front, lambda t: (speed_of(t), quality_of(t, measure)))


def knee_point(front: Sequence, coordinates=lambda point: point):
    """The member of ``front`` farthest from the line joining its extremes (axes normalised to [0, 1]).

    ``coordinates(member) -> (speed, quality)``; speed is maximised, quality minimised. Ties go to the
    faster member.
    """
    xy = [coordinates(member) for member in front]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    normalised = [((x - min(xs)) / span_x, (y - min(ys)) / span_y) for x, y in xy]
    slowest = min(range(len(xy)), key=lambda i: (xs[i], ys[i]))
    fastest = max(range(len(xy)), key=lambda i: (xs[i], -ys[i]))
    (x0, y0), (x1, y1) = normalised[slowest], normalised[fastest]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0

    def distance(i: int) -> float:
        x, y = normalised[i]
        return abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length

    best = max(range(len(xy)), key=lambda i: (distance(i), xs[i]))
    return front[best]


# ---------------------------------------------------------------------- table
TABLE_COLUMNS = (
    ("trial", "trial"),
    ("label", "label"),
    ("steps", "steps"),
    ("predicted_speedup", "pred x"),
    ("measured_speedup", "meas x"),
    ("proxy", "proxy"),
    ("fid", "FID"),
    ("fid_vs_full", "FID vs full"),
    ("on_front", "front"),
)


def front_table(study: optuna.Study, all_trials: bool = False) -> list[dict]:
    """One row per baseline, proxy-front member and confirmed trial (every completed trial with
    ``all_trials``), sorted by speed. ``on_front`` is membership of the FID front where the study has
    confirmed trials, else of the proxy front; ``on_proxy_front`` is always the proxy front."""
    trials = trial_records(study)
    confirmed = {t.number for t in confirmed_trials(study)}
    proxy_members = {t.number for t in proxy_front(study)}
    front_members = {t.number for t in fid_front(study)} if confirmed else proxy_members
    rows = []
    for trial in sorted(trials, key=lambda t: (speed_of(t), t.number)):
        attrs = trial.user_attrs
        origin = attrs.get("origin", "search")
        if not (all_trials or origin in BASELINE_ORIGINS or trial.number in proxy_members or trial.number in confirmed):
            continue
        rows.append({
            "trial": trial.number,
            "label": attrs.get("label") or origin,
            "origin": origin,
            "steps": attrs.get("num_inference_steps", (attrs.get("schedule") or {}).get("num_inference_steps")),
            "predicted_speedup": _or_none(attrs.get("predicted_speedup", trial.values[0])),
            "measured_speedup": _or_none(attrs.get("measured_speedup")),
            "proxy": _or_none(attrs.get("proxy", trial.values[1])),
            "fid": _or_none(attrs.get("fid")),
            "fid_vs_full": _or_none(attrs.get("fid_vs_full")),
            "on_front": trial.number in front_members,
            "on_proxy_front": trial.number in proxy_members,
        })
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] = TABLE_COLUMNS) -> str:
    """Rows of :func:`front_table` as aligned plain text (numbers right-aligned, '-' for missing)."""
    header = [title for _, title in columns]
    body = [[_cell(key, row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    text_columns = {i for i, (key, _) in enumerate(columns) if key in ("label", "origin")}

    def render(line: list[str]) -> str:
        cells = [cell.ljust(widths[i]) if i in text_columns else cell.rjust(widths[i]) for i, cell in enumerate(line)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)]) if rows else render(header) + "\n(no trials)"


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        if key.endswith("speedup"):
            return f"{value:.2f}"
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------- helpers
def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def _feasible(trial: FrozenTrial) -> bool:
    constraint = trial.user_attrs.get("constraint")
    return not (_finite(constraint) and constraint > 0)


def _candidates(study: optuna.Study, measure: str) -> list[FrozenTrial]:
    if measure == "fid":
        return confirmed_trials(study)
    return [t for t in trial_records(study) if _feasible(t) and math.isfinite(quality_of(t, "proxy"))]


def _baseline_proxy(study: optuna.Study) -> float | None:
    baseline = baseline_trial(study)
    if baseline is None:
        return None
    value = quality_of(baseline, "proxy")
    return value if math.isfinite(value) else None


def _maximize(study: optuna.Study) -> tuple[bool, ...]:
    return tuple(direction == optuna.study.StudyDirection.MAXIMIZE for direction in study.directions)


def _number(options: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = options.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"export.{key}={value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"export.{key}={value!r} must be a finite number >= 0")
    return number


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _or_none(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def schedule_key(trial) -> str:
    """What a trial's schedule computes (its provenance aside), for spotting duplicate trials."""
    schedule = trial.user_attrs.get("schedule")
    if schedule is None:
        return f"trial:{trial.number}"
    return json.dumps({k: v for k, v in schedule.items() if k != "provenance"}, sort_keys=True)
