"""The study summary a command prints: the front table, proxy fidelity, and the answer."""

from __future__ import annotations

from autofr.report.tables import format_table, front_table
from autofr.search.front import StudyAnswer
from autofr.search.records import StudyRecords


def summary_text(records: StudyRecords, all_trials: bool = False, answer: StudyAnswer | None = None) -> str:
    """The front table, the proxy's rank correlation with FID-N, and the study's answer (``answer``,
    default :meth:`StudyAnswer.of` the records): the fastest schedule within the target with what it
    beat, or why there is none."""
    lines = [format_table(front_table(records, all_trials=all_trials))]
    info = records.info
    if info.proxy_fid_spearman is not None:
        kendall = f", Kendall {info.proxy_fid_kendall:.2f}" if info.proxy_fid_kendall is not None else ""
        lines.append(
            f"\nproxy {info.proxy_label} vs {info.fid_label}: Spearman {info.proxy_fid_spearman:.2f}{kendall}"
        )
    answer = StudyAnswer.of(records) if answer is None else answer
    chosen = answer.chosen
    if answer.problem is not None:
        lines.append(f"\n{answer.target.describe()}: {answer.problem}")
    elif chosen is not None:
        lines.append(
            f"\nfastest within the target ({answer.target.describe()}): trial {chosen.number} "
            f"({chosen.display_label}), {chosen.speed:.2f}x at {info.fid_label} {chosen.fid:.4g}"
        )
        lines.extend(f"  {line}" for line in answer.lines())
    return "\n".join(lines)
