"""The records of an Auto-FR study, and the only code that knows how they sit in Optuna's attributes.

The Optuna storage is the source of truth; every other module reads and writes these dataclasses.

Storage layout (keys below are spelled here and nowhere else in autofr, except ``fail_reason`` and
``over_budget``, which the generic workers of :mod:`autofr.execution` write):

* **trial user attrs** (:class:`TrialResult`, written by the objective; ``origin``/``label`` by the
  warm start): ``origin`` (the stored name of an :class:`~autofr.search.origin.Origin`), ``label``, ``schedule`` (a :meth:`ReuseSchedule.to_dict`),
  ``num_inference_steps``, ``predicted_speedup``, ``proxy``, ``proxy_metrics`` (name -> value),
  ``constraint`` (feasible when <= 0; also Optuna's own constraint), ``sampling_seconds``,
  ``trial_seconds``, ``duplicate_of``, ``fidelity`` (the most samples the trial was scored on),
  ``fidelity_deltas`` / ``fidelity_sd`` (samples -> FID difference to full compute and its bootstrap sd),
  ``samples_generated``, ``fid_estimate`` (the calibrated top-level FID), ``fid_estimate_sd``; plus
  ``fail_reason`` and ``over_budget``. A ``peer`` trial (:func:`add_peer_trial`) holds ``peer`` (its
  description) and ``measured_speedup`` (its first value) instead of a schedule and a prediction;
* the study's values are ``(predicted speedup, proxy)``, directions ``(maximize, minimize)``;
* **confirmations** (:class:`Confirmation`): finished trials cannot change in Optuna, so the FID
  confirmation of trial ``n`` is the study user attr ``confirmed:<n>`` (``fid``, ``fid_vs_full``,
  ``fid_seeds``, ``fid_full_seeds``, ``latency_s``, ``full_latency_s``, ``measured_speedup``,
  ``speed_gap``, ``speedup_repeats``). Studies built by hand may keep these keys in the trial's own user attrs instead;
  both are read;
* **study user attrs** (:class:`StudyInfo`): see its fields.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autofr.execution.budget import OVER_BUDGET_ATTR
from autofr.execution.workers import FAIL_REASON_ATTR
from autofr.search.origin import Origin

#: Study user attribute prefix under which the confirmation of trial ``n`` is stored.
CONFIRMED_PREFIX = "confirmed:"

_ORIGIN, _LABEL = "origin", "label"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def _by_level(data: Any) -> dict[int, float]:
    """``{samples: value}`` (JSON keeps the keys as strings)."""
    return {int(k): float(v) for k, v in (data or {}).items() if _finite(v)}


# ---------------------------------------------------------------------- confirmation
@dataclass
class Confirmation:
    """FID-N and measured speed of one confirmed trial.

    ``fid`` is the mean over ``fid_seeds`` (one FID per seed, paired: every candidate at a seed starts
    from the same noise); ``fid_full_seeds`` holds full compute's FID at the same seeds, so a paired
    difference per seed is at hand. ``measured_speedup`` is the median full-compute time over the
    median time of the schedule, timed interleaved.
    """

    fid: float
    fid_vs_full: float | None = None
    fid_seeds: dict[str, float] = field(default_factory=dict)
    fid_full_seeds: dict[str, float] = field(default_factory=dict)
    latency_s: float | None = None
    full_latency_s: float | None = None
    measured_speedup: float | None = None
    speed_gap: float | None = None
    speedup_repeats: list[float] = field(default_factory=list)  # the speedup in each timing repeat

    def to_attr(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value not in (None, {}, [])}

    @classmethod
    def from_attr(cls, data: Mapping[str, Any]) -> Confirmation | None:
        if not _finite(data.get("fid")):
            return None
        numbers = ("fid_vs_full", "latency_s", "full_latency_s", "measured_speedup", "speed_gap")
        return cls(
            fid=float(data["fid"]),
            **{key: _number(data.get(key)) for key in numbers},
            **{
                key: {str(k): float(v) for k, v in (data.get(key) or {}).items()}
                for key in ("fid_seeds", "fid_full_seeds")
            },
            speedup_repeats=[float(v) for v in data.get("speedup_repeats") or () if _finite(v)],
        )

    def paired_difference(self) -> dict[str, float]:
        """FID minus full compute's FID at each seed both were scored at."""
        return {
            seed: value - self.fid_full_seeds[seed]
            for seed, value in self.fid_seeds.items()
            if seed in self.fid_full_seeds
        }


def save_confirmation(study: optuna.Study, number: int, confirmation: Confirmation) -> None:
    study.set_user_attr(f"{CONFIRMED_PREFIX}{int(number)}", confirmation.to_attr())


def confirmed_numbers(study: optuna.Study) -> set[int]:
    """Numbers of the trials the study holds a confirmation for."""
    return {int(key[len(CONFIRMED_PREFIX) :]) for key in study.user_attrs if key.startswith(CONFIRMED_PREFIX)}


# ---------------------------------------------------------------------- one trial
@dataclass(kw_only=True)
class TrialResult:
    """What the objective measured for one trial; :meth:`write` stores it on the live trial."""

    schedule: dict | None = None
    num_inference_steps: int | None = None
    predicted_speedup: float | None = None
    proxy: float | None = None
    proxy_metrics: dict[str, float] = field(default_factory=dict)
    constraint: float | None = None
    sampling_seconds: float | None = None
    trial_seconds: float | None = None
    duplicate_of: int | None = None
    fidelity: int | None = None
    fidelity_deltas: dict[int, float] = field(default_factory=dict)
    fidelity_sd: dict[int, float] = field(default_factory=dict)
    samples_generated: int | None = None
    fid_estimate: float | None = None
    fid_estimate_sd: float | None = None
    fid_vs_full_top: float | None = None  # FID of the top level's samples against full compute's (same N, seed)
    measured_speedup: float | None = None
    peer: dict | None = None

    @classmethod
    def of(cls, record: TrialResult) -> TrialResult:
        """The result a recorded trial holds (a copy, without the record's identity)."""
        return cls(**{f.name: copy.copy(getattr(record, f.name)) for f in dataclasses.fields(cls)})

    def attrs(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None and value != {}}

    def write(self, trial: optuna.Trial) -> None:
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)


def mark_origin(trial: optuna.Trial) -> None:
    """A trial the sampler proposed (not enqueued) is a search result."""
    if _ORIGIN not in trial.user_attrs:
        trial.set_user_attr(_ORIGIN, Origin.SEARCH.value)
        trial.set_user_attr(_LABEL, "")


def enqueue_reference(study: optuna.Study, params: dict, origin: Origin, label: str) -> None:
    """Enqueue a warm-start schedule (full compute, FRDiff, fewer steps, calibrated, DeepCache-style)."""
    study.enqueue_trial(params, user_attrs={_ORIGIN: Origin(origin).value, _LABEL: label})


def record_failure(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON_ATTR, reason)


def add_peer_trial(study: optuna.Study, label: str, result: TrialResult, values: Sequence[float]) -> None:
    """Store a peer's evaluation as a finished trial (origin ``peer``); ``values``: (measured speedup, quality)."""
    constraints = {"quality_target": result.constraint} if result.constraint is not None else None
    study.add_trial(
        optuna.trial.create_trial(
            values=[float(v) for v in values],
            constraints=constraints,
            user_attrs={_ORIGIN: Origin.PEER.value, _LABEL: label, **result.attrs()},
        )
    )


def peer_trial_count(study: optuna.Study) -> int:
    """How many finished trials of the study are peers (they take no slot of the search budget)."""
    return sum(
        Origin.parse(t.user_attrs.get(_ORIGIN)).is_peer
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


@dataclass(kw_only=True)
class TrialRecord(TrialResult):
    """One trial as reporting, confirmation and export see it (a read-only view): what the objective
    measured (the :class:`TrialResult` fields) plus the trial's identity, state and confirmation."""

    number: int
    state: TrialState | None
    values: tuple[float, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    origin: Origin = Origin.SEARCH
    label: str = ""
    fail_reason: str | None = None
    over_budget: bool = False
    datetime_start: datetime.datetime | None = None
    datetime_complete: datetime.datetime | None = None
    confirmation: Confirmation | None = None

    def __post_init__(self) -> None:
        self.origin = Origin.parse(self.origin)  # a stored name is read as its Origin

    @classmethod
    def from_frozen(cls, trial: FrozenTrial, confirmation: Mapping[str, Any] | None = None) -> TrialRecord:
        attrs = trial.user_attrs
        schedule = attrs.get("schedule")
        steps = attrs.get("num_inference_steps", (schedule or {}).get("num_inference_steps"))
        numbers = (
            "predicted_speedup",
            "proxy",
            "constraint",
            "sampling_seconds",
            "trial_seconds",
            "fid_estimate",
            "fid_estimate_sd",
            "fid_vs_full_top",
            "measured_speedup",
        )
        plain = ("duplicate_of", "fidelity", "samples_generated", "peer")
        return cls(
            number=trial.number,
            state=trial.state,
            params=dict(trial.params),
            values=tuple(float(v) for v in trial.values) if trial.values else None,
            origin=Origin.parse(attrs.get(_ORIGIN)),
            label=str(attrs.get(_LABEL, "") or ""),
            schedule=schedule,
            num_inference_steps=int(steps) if steps is not None else None,
            proxy_metrics={
                str(k): float(v) for k, v in (attrs.get("proxy_metrics") or {}).items() if isinstance(v, (int, float))
            },
            fidelity_deltas=_by_level(attrs.get("fidelity_deltas")),
            fidelity_sd=_by_level(attrs.get("fidelity_sd")),
            **{key: _number(attrs.get(key)) for key in numbers},
            **{key: attrs.get(key) for key in plain},
            fail_reason=attrs.get(FAIL_REASON_ATTR),
            over_budget=bool(attrs.get(OVER_BUDGET_ATTR, False)),
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
            confirmation=Confirmation.from_attr(confirmation if confirmation else attrs),
        )

    # ------------------------------------------------------------------ derived
    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE and self.values is not None

    @property
    def feasible(self) -> bool:
        """Meets the quality constraint (or has none)."""
        return not (self.constraint is not None and self.constraint > 0)

    @property
    def is_reference(self) -> bool:
        """A hand-set reference schedule (full compute, FRDiff, fewer steps, DeepCache-style)."""
        return self.origin.is_reference

    @property
    def is_peer(self) -> bool:
        """Another library's cache (:mod:`autofr.peers`): a baseline, but no schedule."""
        return self.origin.is_peer

    @property
    def display_label(self) -> str:
        """The trial's label (``FRDiff M=2``), else its origin's stored name (``search``)."""
        return self.label or self.origin.value

    @property
    def search_speedup(self) -> float:
        """The search objective: predicted speedup (``values[0]``)."""
        if self.values:
            return self.values[0]
        return self.predicted_speedup if self.predicted_speedup is not None else float("nan")

    @property
    def search_proxy(self) -> float:
        """The search's quality objective (``values[1]``): the proxy, or with adaptive fidelity the FID
        estimate; the raw level-0 proxy is :attr:`proxy`."""
        if self.values and len(self.values) > 1:
            return self.values[1]
        return self.proxy if self.proxy is not None else float("nan")

    @property
    def speed(self) -> float:
        """Measured speedup where the trial was timed (a peer always is), else the predicted one."""
        if self.confirmation is not None and self.confirmation.measured_speedup is not None:
            return self.confirmation.measured_speedup
        if self.measured_speedup is not None:
            return self.measured_speedup
        if self.predicted_speedup is not None:
            return self.predicted_speedup
        return self.values[0] if self.values else float("nan")

    @property
    def fid(self) -> float:
        return self.confirmation.fid if self.confirmation is not None else float("nan")

    def quality(self, measure: str = "fid") -> float:
        """FID (``"fid"``), the search proxy (``"proxy"``) or any recorded proxy metric; NaN when missing."""
        if measure == "fid":
            return self.fid
        if measure == "proxy":
            return self.search_proxy
        return self.proxy_metrics.get(measure, float("nan"))

    def schedule_key(self) -> str:
        """What the schedule computes (its provenance aside), for spotting duplicate trials."""
        return schedule_key(self.schedule, self.number)


def schedule_key(schedule: Mapping | None, number: int | None = None) -> str:
    if schedule is None:
        return f"trial:{number}"
    return json.dumps({k: v for k, v in schedule.items() if k != "provenance"}, sort_keys=True)


def frozen_schedule_key(trial: FrozenTrial) -> str:
    """:func:`schedule_key` of a live or frozen Optuna trial."""
    return schedule_key(trial.user_attrs.get("schedule"), trial.number)


# ---------------------------------------------------------------------- the study
@dataclass
class StudyInfo:
    """The study's metadata (study user attrs), set once by the process that created the study
    (``model_id`` ... ``mlflow_experiment_id``), by the confirmation stage (``fid_*``, fidelity) or by
    the peer stage (``peers_skipped``: method -> why it cannot run on the model), the timing run
    (``timing_device``) and the device-hour budget (``budget``)."""

    model_id: str | None = None
    protocol: dict | None = None
    space: dict | None = None
    proxy_name: str | None = None
    baseline_steps: int | None = None
    storage: str | None = None
    target: dict | None = None
    mlflow_parent_run_id: str | None = None
    mlflow_experiment_id: str | None = None
    fid_full_compute: float | None = None
    fid_full_seeds: dict[str, float] | None = None
    fid_name: str | None = None
    fid_reference: str | None = None
    proxy_fidelity: list | None = None
    proxy_fid_spearman: float | None = None
    proxy_fid_kendall: float | None = None
    calibration: dict | None = None
    peers_skipped: dict | None = None
    timing_device: str | None = None  # where the confirmed points were timed (one quiet run)
    budget: dict | None = None  # search.max_device_hours: the plan, what was cut, what was spent

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StudyInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in attrs.items() if key in names})

    @classmethod
    def read(cls, study: optuna.Study) -> StudyInfo:
        return cls.from_attrs(study.user_attrs)

    @staticmethod
    def update(study: optuna.Study, **fields: Any) -> None:
        """Write the given fields to the study (names are checked)."""
        names = {f.name for f in dataclasses.fields(StudyInfo)}
        for key, value in fields.items():
            if key not in names:
                raise KeyError(f"StudyInfo has no field {key!r}")
            study.set_user_attr(key, value)

    @property
    def fid_label(self) -> str:
        return self.fid_name or "FID"

    @property
    def proxy_label(self) -> str:
        return self.proxy_name or "proxy"


#: The study attribute every worker waits for: the creator sets it last.
READY_ATTR = "mlflow_parent_run_id"


@dataclass
class StudyRecords:
    """A study read once: its name, metadata and every trial (confirmations merged)."""

    name: str
    info: StudyInfo
    trials: list[TrialRecord]

    @classmethod
    def load(cls, study: optuna.Study) -> StudyRecords:
        attrs = study.user_attrs
        trials = [
            TrialRecord.from_frozen(t, attrs.get(f"{CONFIRMED_PREFIX}{t.number}"))
            for t in study.get_trials(deepcopy=False)
        ]
        return cls(study.study_name, StudyInfo.from_attrs(attrs), trials)

    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.complete]

    def feasible(self) -> list[TrialRecord]:
        return [t for t in self.completed() if t.feasible]

    def confirmed(self) -> list[TrialRecord]:
        return [t for t in self.completed() if t.confirmation is not None]

    def by_state(self, *states: TrialState) -> list[TrialRecord]:
        return [t for t in self.trials if t.state in states]

    def full_compute(self) -> TrialRecord | None:
        """The full-compute trial (:attr:`Origin.FULL_COMPUTE`), or None."""
        return next((t for t in self.completed() if t.origin.is_full_compute), None)

    def trial(self, number: int) -> TrialRecord:
        return next(t for t in self.trials if t.number == number)


def confirmed_records(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    return [t for t in trials if t.complete and t.confirmation is not None]
