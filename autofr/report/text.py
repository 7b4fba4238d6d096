"""The study summary a command prints: the front table, proxy fidelity, and the answer."""

from __future__ import annotations

from autofr.errors import ConfigError
from autofr.report.tables import format_table, front_table
from autofr.search import front as fronts
from autofr.search.records import StudyRecords


def summary_text(records: StudyRecords, all_trials: bool = False) -> str:
    """The front table, the proxy's rank correlation with FID-N, and the fastest schedule within the
    target with what it beat (or why there is none)."""
    lines = [format_table(front_table(records, all_trials=all_trials))]
    info = records.info
    if info.proxy_fid_spearman is not None:
        kendall = f", Kendall {info.proxy_fid_kendall:.2f}" if info.proxy_fid_kendall is not None else ""
        lines.append(
            f"\nproxy {info.proxy_label} vs {info.fid_label}: Spearman {info.proxy_fid_spearman:.2f}{kendall}"
        )
    if records.confirmed():
        try:
            chosen = fronts.select_default(records)
        except ConfigError as error:
            lines.append(f"\n{fronts.study_target(records).describe()}: {error}")
        else:
            lines.append(
                f"\nfastest within the target ({fronts.study_target(records).describe()}): trial {chosen.number} "
                f"({chosen.display_label}), {chosen.speed:.2f}x at {info.fid_label} {chosen.fid:.4g}"
            )
            lines.extend(f"  {line}" for line in fronts.verdict(records, chosen))
    return "\n".join(lines)
