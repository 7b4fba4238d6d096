"""Export: the schedule an export policy picks, written as JSON with its provenance.

The default policy picks the fastest confirmed schedule within the study's target and says what it
beat; ``fastest_within`` with ``delta``/``delta_abs``, ``best_at_speedup`` and ``knee`` are the others
(:func:`autofr.search.front.select_trial`). The file is written atomically and carries the study,
trial, policy and the numbers behind the choice, so ``apply_schedule(pipe, path)`` users can tell
where it came from.

Peers (other libraries' caches evaluated as baselines, :mod:`autofr.peers`) are no schedules: the
policies never pick one, and :func:`export_schedule` refuses a peer trial in one line.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autofr.errors import StorageError
from autofr.schedule import ReuseSchedule
from autofr.search import front as fronts
from autofr.search.records import StudyRecords, TrialRecord


@dataclass
class Exported:
    path: Path
    trial: TrialRecord
    schedule: ReuseSchedule
    lines: list[str]


def export_schedule(records: StudyRecords, policy: str, options: dict[str, Any], out: str | os.PathLike) -> Exported:
    """Select a trial with ``policy`` and write its schedule to ``out``; ``lines`` describe the choice."""
    trial = fronts.select_trial(records, policy, **options)
    if trial.is_peer:
        raise StorageError(
            f"trial {trial.number} of study {records.name!r} is a peer ({trial.label}), another library's "
            "cache, not a schedule: autofr-export writes autofr schedules only"
        )
    if not trial.schedule:
        raise StorageError(
            f"trial {trial.number} of study {records.name!r} has no schedule recorded: "
            "it was not made by autofr-search; pick another policy"
        )
    schedule = ReuseSchedule.from_dict(trial.schedule, source=f"trial {trial.number} of study {records.name!r}")
    info, confirmation = records.info, trial.confirmation
    fid_full = fronts.full_compute_fid(records)
    numbers = {"predicted_speedup": trial.predicted_speedup, "proxy": trial.search_proxy}
    if confirmation is not None:
        numbers.update(
            measured_speedup=confirmation.measured_speedup,
            fid=confirmation.fid,
            fid_vs_full=confirmation.fid_vs_full,
            latency_s=confirmation.latency_s,
            fid_seeds=confirmation.fid_seeds or None,
        )
    shown = {key: value for key, value in options.items() if value is not None}
    provenance = {
        **schedule.provenance,
        "study": records.name,
        "storage": info.storage,
        "model_id": info.model_id,
        "trial": trial.number,
        "origin": trial.origin.value,
        "label": trial.label,
        "policy": policy,
        "policy_options": shown,
        **numbers,
        "proxy_name": info.proxy_name,
        "fid_name": info.fid_name,
        "fid_full_compute": fid_full,
        "target": fronts.study_target(records).to_info(),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    schedule.provenance = {key: value for key, value in provenance.items() if value is not None and value != ""}
    path = schedule.to_json(Path(out))
    return Exported(path, trial, schedule, _describe(records, trial, schedule, policy, shown, fid_full))


def _describe(
    records: StudyRecords,
    trial: TrialRecord,
    schedule: ReuseSchedule,
    policy: str,
    options: dict,
    fid_full: float | None,
) -> list[str]:
    info, confirmation = records.info, trial.confirmation
    described = " ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in options.items()
        if not (k == "measure" and v == "fid")
    )
    if (
        policy == "fastest_within"
        and not {"delta", "delta_abs"} & set(options)
        and options.get("measure", "fid") == "fid"
    ):
        described = f"({fronts.study_target(records).describe()})"
    lines = [
        f"study {records.name!r}: trial {trial.number} ({trial.display_label}) chosen by {policy}"
        + (f" {described}" if described else "")
    ]
    measured = confirmation.measured_speedup if confirmation is not None else None
    speed = f"{trial.speed:.2f}x {'measured' if measured is not None else 'predicted'}"
    if measured is not None and trial.predicted_speedup is not None:
        speed += f" ({trial.predicted_speedup:.2f}x predicted)"
    lines.append(f"  speedup   {speed}; {schedule.describe()}")
    if confirmation is not None:
        versus = f" (full compute {fid_full:.4g}, {100 * (confirmation.fid / fid_full - 1):+.1f}%)" if fid_full else ""
        seeds = f" over {len(confirmation.fid_seeds)} seeds" if len(confirmation.fid_seeds) > 1 else ""
        lines.append(
            f"  {info.fid_label}  {confirmation.fid:.4g}{seeds}{versus}"
            + (
                f"; vs full-compute samples {confirmation.fid_vs_full:.4g}"
                if confirmation.fid_vs_full is not None
                else ""
            )
        )
        if policy == "fastest_within":
            lines.extend(f"  {line}" for line in fronts.StudyAnswer.of(records, trial).lines())
            warning = fronts.close_to_limit(records, trial)
            if warning:
                lines.append(f"  {warning}")
    if trial.proxy is not None:
        lines.append(f"  proxy     {info.proxy_label} {trial.proxy:.4g}")
    return lines
