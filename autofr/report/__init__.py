"""Plots and tables of a study, from its records: the front (PNG + HTML), the front table (CSV +
markdown), hypervolume over trials and the proxy-fidelity table.

Pure functions of :class:`~autofr.search.records.StudyRecords` that write files (atomically) and
return their paths; nothing here reads a storage or talks to MLflow. ``autofr-search`` and
``autofr-report`` call :func:`write_study_report`; :mod:`autofr.tracking` logs what it wrote.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from autofr.errors import ConfigError
from autofr.files import atomic_write_text
from autofr.images import sample_grid_png
from autofr.report.plots import front_figure, plot_front_html, plot_front_png, plot_hypervolume, quality_view
from autofr.report.tables import format_table, front_table, markdown_table, write_table_csv, write_table_markdown
from autofr.search import front as fronts
from autofr.search.front import StudyAnswer
from autofr.search.records import StudyRecords

logger = logging.getLogger(__name__)

#: Files :func:`write_study_report` writes into ``out_dir``.
REPORT_FILES = {
    "front_png": "front.png",
    "front_html": "front.html",
    "front_csv": "front_table.csv",
    "front_md": "front_table.md",
    "hypervolume_png": "hypervolume.png",
    "proxy_fidelity_md": "proxy_fidelity.md",  # only when the study has proxy-fidelity rows
}

__all__ = [
    "REPORT_FILES",
    "format_table",
    "front_figure",
    "front_table",
    "markdown_table",
    "plot_front_html",
    "plot_front_png",
    "plot_hypervolume",
    "quality_view",
    "sample_grid_png",
    "study_summary",
    "write_study_report",
    "write_table_csv",
    "write_table_markdown",
]


def write_study_report(
    records: StudyRecords, out_dir: str | os.PathLike, include_plotlyjs: str | bool = "cdn", chosen: int | None = None
) -> dict[str, Path]:
    """Write the study's report into ``out_dir``; returns ``{kind: path}`` (keys of :data:`REPORT_FILES`).
    ``chosen`` is the trial to ring as exported (default: what ``autofr-export`` would pick)."""
    from autofr.quality.fidelity import format_fidelity_table

    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in REPORT_FILES.items()}
    if chosen is None:
        answer = StudyAnswer.of(records)
        chosen = answer.chosen.number if answer.chosen is not None else None
    fidelity = records.info.proxy_fidelity
    if fidelity:
        atomic_write_text(
            paths["proxy_fidelity_md"],
            f"# Proxy fidelity: {records.name}\n\n" + format_fidelity_table(fidelity, records.info.fid_label) + "\n",
        )
    else:
        del paths["proxy_fidelity_md"]
    rows = front_table(records)
    plot_front_png(records, paths["front_png"], chosen=chosen)
    plot_front_html(records, paths["front_html"], include_plotlyjs=include_plotlyjs, chosen=chosen)
    write_table_csv(rows, paths["front_csv"])
    write_table_markdown(rows, paths["front_md"], title=f"Study {records.name}")
    plot_hypervolume(
        fronts.hypervolume_history(records.trials),
        paths["hypervolume_png"],
        title=f"{records.name}: hypervolume (speedup x {records.info.proxy_label})",
    )
    logger.info("wrote the report of study %s to %s", records.name, out_dir)
    return paths


@dataclass
class StudySummary:
    """What the MLflow parent run shows besides the report files."""

    metrics: dict[str, float]
    hypervolume: list[tuple[int, float, int | None]]  # (completed trials, volume, completion time ms)
    front_trials: list[int]


def study_summary(records: StudyRecords, answer: StudyAnswer | None = None) -> StudySummary:
    """Proxy fidelity, full-compute FID, trial counts, the fastest speedup within the target (the
    answer's, with its margins over the fastest reference and peer) and within 5%, the front size and
    the hypervolume after each completed trial."""
    from optuna.trial import TrialState

    info = records.info
    metrics: dict[str, float] = {}
    for key in ("proxy_fid_spearman", "proxy_fid_kendall", "fid_full_compute"):
        value = getattr(info, key)
        if isinstance(value, (int, float)):
            metrics[key] = float(value)
    for row in info.proxy_fidelity or []:
        if isinstance(row, dict) and row.get("proxy"):
            for stat in ("spearman", "kendall"):
                if isinstance(row.get(stat), (int, float)):
                    metrics[f"fidelity.{row['proxy']}.{stat}"] = float(row[stat])
    metrics["trials_complete"] = len(records.by_state(TrialState.COMPLETE))
    metrics["trials_failed"] = len(records.by_state(TrialState.FAIL))
    metrics["trials_confirmed"] = len(records.confirmed())
    front = fronts.fid_front(records.trials) or fronts.proxy_front(records.trials)
    metrics["front_size"] = len(front)
    answer = StudyAnswer.of(records) if answer is None else answer
    if answer.chosen is not None:
        metrics["speedup_within_target"] = answer.chosen.speed
        metrics.update(answer.metrics())
    try:
        metrics["speedup_within_5pct_fid"] = fronts.select_trial(records, "fastest_within", delta=0.05).speed
    except ConfigError:
        pass
    completed = sorted(records.completed(), key=lambda t: t.number)
    history = fronts.hypervolume_history(records.trials)
    if history:
        metrics["hypervolume"] = history[-1][1]
    stamps = [int(t.datetime_complete.timestamp() * 1000) if t.datetime_complete else None for t in completed]
    return StudySummary(
        metrics, [(count, volume, stamps[count - 1]) for count, volume in history], [t.number for t in front]
    )
