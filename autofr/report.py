"""Plots and tables of a study: the speed/quality front, the front table, hypervolume over trials.

Used by :meth:`autofr.tracking.Tracker.log_study_summary` and ``autofr-report``. Every file is
written atomically (a temporary file in the same folder, then renamed), so a reader never finds half
a plot. Matplotlib draws on an Agg canvas outside pyplot; the interactive front is a plotly HTML page.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import optuna

from autofr.search import front as fronts

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

_BASELINE_STYLE = {"baseline": ("*", "black", 14), "frdiff": ("D", "tab:orange", 8),
                   "reduced_steps": ("s", "tab:green", 8)}
_BASELINE_NAMES = {"baseline": "full compute", "frdiff": "FRDiff uniform", "reduced_steps": "full compute, fewer steps"}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_study_report(study: optuna.Study, out_dir: str | os.PathLike, include_plotlyjs: str | bool = "cdn") -> dict[str, Path]:
    """Write the front plot (PNG + HTML), the front table (CSV + markdown) and the hypervolume plot
    into ``out_dir``, and the proxy-fidelity table when the study has one (``proxy_fidelity`` user
    attr, rows of :func:`autofr.quality.fidelity.proxy_fidelity`); returns ``{kind: path}`` (keys of
    :data:`REPORT_FILES`)."""
    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in REPORT_FILES.items()}
    fidelity = study.user_attrs.get("proxy_fidelity")
    if fidelity:
        from autofr.quality.fidelity import format_fidelity_table

        with atomic_path(paths["proxy_fidelity_md"]) as tmp:
            tmp.write_text(f"# Proxy fidelity: {study.study_name}\n\n"
                           + format_fidelity_table(fidelity, str(study.user_attrs.get("fid_name", "FID"))) + "\n")
    else:
        del paths["proxy_fidelity_md"]
    rows = fronts.front_table(study)
    plot_front_png(study, paths["front_png"])
    plot_front_html(study, paths["front_html"], include_plotlyjs=include_plotlyjs)
    write_table_csv(rows, paths["front_csv"])
    write_table_markdown(rows, paths["front_md"], title=f"Study {study.study_name}")
    plot_hypervolume(fronts.hypervolume_history(study), paths["hypervolume_png"],
                     title=f"{study.study_name}: hypervolume (speedup x {_proxy_name(study)})")
    logger.info("wrote the report of study %s to %s", study.study_name, out_dir)
    return paths


# ---------------------------------------------------------------------- front
def _panels(study: optuna.Study) -> list[dict]:
    """One panel per quality measure: the search proxy always, FID when trials were confirmed."""
    feasible = [t for t in fronts.trial_records(study) if fronts._feasible(t)]
    panels = [{
        "measure": "proxy",
        "ylabel": f"{_proxy_name(study)} (proxy, lower is better)",
        "xlabel": _speed_name(study),
        "trials": feasible,
        "x": lambda t: float(t.values[0]),
        "y": lambda t: fronts.quality_of(t, "proxy"),
        "front": fronts.proxy_front(study),
    }]
    confirmed = fronts.confirmed_trials(study)
    if confirmed:
        panels.append({
            "measure": "fid",
            "ylabel": f"{study.user_attrs.get('fid_name', 'FID')} (lower is better)",
            "xlabel": "speedup (measured where timed)",
            "trials": confirmed,
            "x": fronts.speed_of,
            "y": lambda t: fronts.quality_of(t, "fid"),
            "front": fronts.fid_front(study),
        })
    return panels


def plot_front_png(study: optuna.Study, path: str | os.PathLike) -> Path:
    """Speed vs quality scatter with the Pareto front as a step line; baselines (full compute,
    FRDiff uniform settings) marked and labelled."""
    panels = _panels(study)
    figure = _figure(6.4 * len(panels), 4.8)
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        x, y = panel["x"], panel["y"]
        searched = [t for t in panel["trials"] if t.user_attrs.get("origin") not in fronts.BASELINE_ORIGINS]
        axis.scatter([x(t) for t in searched], [y(t) for t in searched], s=18, color="tab:blue", alpha=0.45,
                     label="search trials")
        front = panel["front"]
        if front:
            axis.step([x(t) for t in front], [y(t) for t in front], where="pre", color="tab:red", linewidth=1.5,
                      label="Pareto front")
            axis.scatter([x(t) for t in front], [y(t) for t in front], s=30, color="tab:red", zorder=3)
        for origin, (marker, color, size) in _BASELINE_STYLE.items():
            marked = [t for t in panel["trials"] if t.user_attrs.get("origin") == origin]
            if not marked:
                continue
            axis.scatter([x(t) for t in marked], [y(t) for t in marked], marker=marker, s=size ** 2, color=color,
                         edgecolor="white", zorder=4, label=_BASELINE_NAMES[origin])
            for trial in marked:
                axis.annotate(trial.user_attrs.get("label") or origin, (x(trial), y(trial)), textcoords="offset points",
                              xytext=(6, 6), fontsize=8, color=color)
        axis.set_xlabel(panel["xlabel"])
        axis.set_ylabel(panel["ylabel"])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    model = study.user_attrs.get("model_id")
    figure.suptitle(f"{study.study_name}: speed vs quality" + (f" ({model})" if model else ""))
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return Path(path)


def plot_front_html(study: optuna.Study, path: str | os.PathLike, include_plotlyjs: str | bool = "cdn") -> Path:
    """The front plot as an interactive plotly page (hover shows trial, label, speeds, quality)."""
    import plotly.graph_objects as go
    import plotly.io
    from plotly.subplots import make_subplots

    panels = _panels(study)
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=[p["measure"].upper() for p in panels])
    for column, panel in enumerate(panels, start=1):
        x, y = panel["x"], panel["y"]
        front_numbers = {t.number for t in panel["front"]}
        groups = {
            "search trials": [t for t in panel["trials"] if t.user_attrs.get("origin") not in fronts.BASELINE_ORIGINS],
            "full compute": [t for t in panel["trials"] if t.user_attrs.get("origin") == "baseline"],
            "FRDiff uniform": [t for t in panel["trials"] if t.user_attrs.get("origin") == "frdiff"],
            "full compute, fewer steps": [t for t in panel["trials"] if t.user_attrs.get("origin") == "reduced_steps"],
        }
        symbols = {"search trials": "circle", "full compute": "star", "FRDiff uniform": "diamond",
                   "full compute, fewer steps": "square"}
        for name, trials in groups.items():
            if not trials:
                continue
            figure.add_trace(go.Scatter(
                x=[x(t) for t in trials], y=[y(t) for t in trials], mode="markers" if name == "search trials" else "markers+text",
                name=name, legendgroup=name, showlegend=column == 1, marker={"symbol": symbols[name], "size": 9 if name == "search trials" else 14},
                text=None if name == "search trials" else [t.user_attrs.get("label") or name for t in trials],
                textposition="top right", hovertext=[_hover(t, t.number in front_numbers) for t in trials], hoverinfo="text",
            ), row=1, col=column)
        front = panel["front"]
        if front:
            figure.add_trace(go.Scatter(x=[x(t) for t in front], y=[y(t) for t in front], mode="lines",
                                        line={"shape": "vh", "color": "red"}, name="Pareto front", legendgroup="front",
                                        showlegend=column == 1, hoverinfo="skip"), row=1, col=column)
        figure.update_xaxes(title_text=panel["xlabel"], row=1, col=column)
        figure.update_yaxes(title_text=panel["ylabel"], row=1, col=column)
    figure.update_layout(title=f"{study.study_name}: speed vs quality", template="plotly_white")
    with atomic_path(path) as tmp:
        plotly.io.write_html(figure, str(tmp), include_plotlyjs=include_plotlyjs, full_html=True, auto_open=False)
    return Path(path)


def _hover(trial, on_front: bool) -> str:
    attrs = trial.user_attrs
    parts = [f"trial {trial.number}" + (" (front)" if on_front else ""), attrs.get("label") or attrs.get("origin", "")]
    for key in ("predicted_speedup", "measured_speedup", "proxy", "fid", "fid_vs_full"):
        value = attrs.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            parts.append(f"{key}: {value:.4g}")
    return "<br>".join(p for p in parts if p)


# ---------------------------------------------------------------------- hypervolume
def plot_hypervolume(history: Sequence[tuple[int, float]], path: str | os.PathLike, title: str = "hypervolume") -> Path:
    """Hypervolume of the search front against the number of completed trials."""
    figure = _figure(6.4, 4.0)
    axis = figure.subplots()
    if history:
        axis.step([count for count, _ in history], [volume for _, volume in history], where="post", color="tab:green")
    axis.set_xlabel("completed trials")
    axis.set_ylabel("hypervolume")
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return Path(path)


# ---------------------------------------------------------------------- tables
def write_table_csv(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Front-table rows as CSV (empty cells for missing values)."""
    columns = list(rows[0].keys()) if rows else [key for key, _ in fronts.TABLE_COLUMNS]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return Path(path)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str]] = fronts.TABLE_COLUMNS) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |",
             "|" + "|".join("---" if key in ("label", "origin") else "---:" for key, _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fronts._cell(key, row.get(key)).replace("|", "/") for key, _ in columns) + " |")
    return "\n".join(lines)


def write_table_markdown(rows: Sequence[Mapping], path: str | os.PathLike, title: str | None = None) -> Path:
    text = (f"# {title}\n\n" if title else "") + markdown_table(rows) + "\n\n`*`: on the Pareto front.\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas, outside pyplot (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _proxy_name(study: optuna.Study) -> str:
    names = study.metric_names  # the objectives' names, as optuna-dashboard shows them
    return str(names[1]) if names and len(names) == 2 else str(study.user_attrs.get("proxy_name", "proxy"))


def _speed_name(study: optuna.Study) -> str:
    names = study.metric_names
    return str(names[0]).replace("_", " ") if names and len(names) == 2 else "predicted speedup"
