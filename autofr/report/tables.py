"""The front table: one row per reference point, peer, front member and confirmed trial.

Pure functions of :class:`~autofr.search.records.StudyRecords`; the writers go through
:func:`autofr.files.atomic_path`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autofr.files import atomic_path, atomic_write_text
from autofr.search import front as fronts
from autofr.search.records import StudyRecords

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


def front_table(records: StudyRecords, all_trials: bool = False) -> list[dict[str, Any]]:
    """One row per baseline, proxy-front member and confirmed trial (every completed trial with
    ``all_trials``), sorted by speed. ``on_front`` is membership of the FID front where the study has
    confirmed trials, else of the proxy front; ``on_proxy_front`` is always the proxy front;
    ``within_target`` says whether a confirmed trial's FID meets the study's target."""
    trials = records.completed()
    confirmed = {t.number for t in records.confirmed()}
    proxy_members = {t.number for t in fronts.proxy_front(trials)}
    front_members = {t.number for t in fronts.fid_front(trials)} if confirmed else proxy_members
    rows = []
    for trial in sorted(trials, key=lambda t: (t.speed, t.number)):
        if not (
            all_trials
            or trial.is_reference
            or trial.is_peer
            or trial.number in proxy_members
            or trial.number in confirmed
        ):
            continue
        confirmation = trial.confirmation
        rows.append(
            {
                "trial": trial.number,
                "label": trial.display_label,
                "origin": trial.origin.value,
                "steps": trial.num_inference_steps,
                "predicted_speedup": None
                if trial.is_peer
                else _or_none(trial.predicted_speedup if trial.predicted_speedup is not None else trial.values[0]),
                "measured_speedup": _or_none(
                    confirmation.measured_speedup if confirmation else trial.measured_speedup
                ),
                "proxy": _or_none(trial.search_proxy),
                "fid": _or_none(trial.fid),
                "fid_vs_full": _or_none(confirmation.fid_vs_full if confirmation else None),
                "fid_seeds": len(confirmation.fid_seeds) if confirmation and confirmation.fid_seeds else None,
                "within_target": fronts.within_target(records, trial) if confirmation else None,
                "on_front": trial.number in front_members,
                "on_proxy_front": trial.number in proxy_members,
            }
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] = TABLE_COLUMNS) -> str:
    """Rows of :func:`front_table` as aligned plain text (numbers right-aligned, '-' for missing)."""
    header = [title for _, title in columns]
    body = [[cell(key, row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    text_columns = {i for i, (key, _) in enumerate(columns) if key in ("label", "origin")}

    def render(line: list[str]) -> str:
        cells = [c.ljust(widths[i]) if i in text_columns else c.rjust(widths[i]) for i, c in enumerate(line)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return (
        "\n".join([render(header), rule, *(render(line) for line in body)])
        if rows
        else render(header) + "\n(no trials)"
    )


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]] = TABLE_COLUMNS) -> str:
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join("---" if key in ("label", "origin") else "---:" for key, _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(key, row.get(key)).replace("|", "/") for key, _ in columns) + " |")
    return "\n".join(lines)


def write_table_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Front-table rows as CSV (empty cells for missing values)."""
    columns = list(rows[0].keys()) if rows else [key for key, _ in TABLE_COLUMNS]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return Path(path)


def write_table_markdown(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None) -> Path:
    text = (f"# {title}\n\n" if title else "") + markdown_table(rows) + "\n\n`*`: on the Pareto front.\n"
    return atomic_write_text(path, text)


def cell(key: str, value: Any) -> str:
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


def _or_none(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )
