"""The speed-quality front as a person reads it, and hypervolume over trials.

Two panels: the search proxy over every feasible trial, and FID-N over the confirmed trials. Quality
is on a log axis where every value is positive; the quality target is a dashed line; the view is cut
to the range around the target (points beyond it are counted in a note, not squashed into a corner);
reference points (full compute, FRDiff, fewer steps, DeepCache-style) have their own markers and
labels that are moved apart until none overlaps; peers (other libraries' caches, at their measured
speed) have one marker of their own, a colour and legend entry per method, and labels like the
references on two settings per method, its default and its fastest one within the target line (a
sweep of five labelled points per method would bury the plot); the exported (or recommended)
schedule is ringed.
Matplotlib draws on an Agg canvas outside pyplot; the interactive version is a plotly page.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autofr.files import atomic_path
from autofr.search import front as fronts
from autofr.search.origin import Origin
from autofr.search.records import StudyRecords, TrialRecord

#: Peers: one marker, a colour per method (autofr.peers.PEER_METHODS), legend "peer: <name>".
PEER_MARKER, PEER_SIZE, PEER_PLOTLY_SYMBOL = "P", 9, "cross"
PEER_STYLE = {
    "first_block_cache": ("tab:brown", "FirstBlockCache"),
    "taylorseer_cache": ("tab:pink", "TaylorSeerCache"),
    "mag_cache": ("tab:olive", "MagCache"),
    "faster_cache": ("tab:gray", "FasterCache"),
    "pyramid_attention_broadcast": ("tab:cyan", "PyramidAttentionBroadcast"),
    "dbcache": ("darkgoldenrod", "cache-dit DBCache"),
    "dbcache_taylorseer": ("darkslateblue", "cache-dit DBCache+TaylorSeer"),
}


def peer_method(trial: TrialRecord) -> str:
    return str((trial.peer or {}).get("method", "peer"))


def peer_style(method: str) -> tuple[str, str]:
    """``(colour, legend name)`` of a peer method."""
    colour, name = PEER_STYLE.get(method, ("dimgray", method))
    return colour, f"peer: {name}"


def _label_colour(trial: TrialRecord) -> str:
    if trial.is_peer:
        return peer_style(peer_method(trial))[0]
    return trial.origin.style.colour if trial.origin.style is not None else "black"


#: How far above the target (or full compute) the quality axis reaches, as a factor.
VIEW_FACTOR = 1.5


@dataclass
class Panel:
    measure: str
    xlabel: str
    ylabel: str
    trials: list[TrialRecord]
    front: list[TrialRecord]
    x: object
    y: object
    line: float | None = None  # the target (FID) or the proxy threshold
    line_label: str = ""
    anchor: float | None = None  # what the view is cut around: the line, else full compute
    view: tuple[float, float, int, bool] = field(default=(0.0, 1.0, 0, False))  # low, high, hidden, log


def quality_view(
    values: Sequence[float], anchor: float | None, factor: float = VIEW_FACTOR
) -> tuple[float, float, int, bool]:
    """``(low, high, hidden, log)``: the quality range to show. ``high`` is ``factor`` x ``anchor``
    (the target, or full compute's value) when some point lies beyond it, else just above the worst
    point; ``hidden`` counts the points above ``high``; ``log`` when every shown value is positive.
    Every point at or below the anchor is always inside the range."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return 0.0, 1.0, 0, False
    if anchor is not None and math.isfinite(anchor) and anchor > 0 and finite[-1] > factor * anchor:
        high = factor * anchor
    else:
        high = finite[-1]
    shown = [v for v in finite if v <= high]
    log = bool(shown) and shown[0] > 0
    low = shown[0] if shown else finite[0]
    if log:
        low, high = low / 1.08, high * 1.08
    else:
        pad = 0.05 * ((high - low) or abs(high) or 1.0)
        low, high = low - pad, high + pad
    return low, high, sum(v > high for v in finite), log


def panels(records: StudyRecords) -> list[Panel]:
    """One panel per quality measure: the search proxy always, FID when trials were confirmed."""
    completed = records.completed()
    feasible = [t for t in completed if t.feasible]
    baseline = records.full_compute()
    threshold = None
    if baseline is not None and baseline.constraint is not None:
        threshold = baseline.search_proxy - baseline.constraint  # constraint = proxy - threshold
    full_proxy = baseline.search_proxy if baseline is not None else None
    adaptive = any(t.fid_estimate is not None for t in feasible)
    ylabel = (
        f"FID estimate from {records.info.proxy_label} (search objective, lower is better)"
        if adaptive
        else f"{records.info.proxy_label} (proxy, lower is better)"
    )
    line_label = f"target: {fronts.study_target(records).describe()}" if adaptive else "proxy threshold"
    xlabel = "predicted speedup" + (" (peers: measured)" if any(t.is_peer for t in feasible) else "")
    result = [
        Panel(
            "proxy",
            xlabel,
            ylabel,
            feasible,
            fronts.proxy_front(feasible),
            lambda t: t.search_speedup,
            lambda t: t.search_proxy,
            threshold,
            line_label,
            threshold if threshold else full_proxy,
        )
    ]
    confirmed = records.confirmed()
    if confirmed:
        limit = fronts.target_limit(records)
        result.append(
            Panel(
                "fid",
                "speedup (measured where timed)",
                f"{records.info.fid_label} (lower is better)",
                confirmed,
                fronts.fid_front(confirmed),
                lambda t: t.speed,
                lambda t: t.fid,
                limit,
                f"target: {fronts.study_target(records).describe()}",
                limit if limit is not None else fronts.full_compute_fid(records),
            )
        )
    for panel in result:
        panel.view = quality_view([panel.y(t) for t in panel.trials], panel.anchor)
    return result


def plot_front_png(records: StudyRecords, path: str | os.PathLike, chosen: int | None = None):
    """Write the front figure as PNG; returns the matplotlib figure (for inspection)."""
    figure = front_figure(records, chosen)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return figure


def front_figure(records: StudyRecords, chosen: int | None = None):
    shown_panels = panels(records)
    figure = _figure(6.6 * len(shown_panels), 6.0)
    axes = figure.subplots(1, len(shown_panels), squeeze=False)[0]
    for axis, panel in zip(axes, shown_panels):
        _draw_panel(axis, panel, chosen)
    model = records.info.model_id
    figure.suptitle(f"{records.name}: speed vs quality" + (f" ({model})" if model else ""))
    figure.tight_layout()
    for axis, panel in zip(axes, shown_panels):
        labelled = [t for t in panel.trials if t.is_reference and _inside(panel, t)] + _labelled_peers(panel)
        _place_labels(figure, axis, labelled, panel)
    return figure


def _inside(panel: Panel, trial: TrialRecord) -> bool:
    low, high, _, _ = panel.view
    value = panel.y(trial)
    return math.isfinite(value) and low <= value <= high


def _draw_panel(axis, panel: Panel, chosen: int | None) -> None:
    x, y = panel.x, panel.y
    low, high, hidden, log = panel.view
    searched = [t for t in panel.trials if not t.is_reference and not t.is_peer and _inside(panel, t)]
    axis.scatter(
        [x(t) for t in searched],
        [y(t) for t in searched],
        s=18,
        color="tab:blue",
        alpha=0.45,
        label=Origin.SEARCH.label,
    )
    front = [t for t in panel.front if _inside(panel, t)]
    if front:
        axis.step(
            [x(t) for t in front],
            [y(t) for t in front],
            where="pre",
            color="tab:red",
            linewidth=1.4,
            label="Pareto front",
        )
        axis.scatter([x(t) for t in front], [y(t) for t in front], s=30, color="tab:red", zorder=3)
    for origin in Origin.styled():
        marked = [t for t in panel.trials if t.origin is origin and _inside(panel, t)]
        if marked:
            axis.scatter(
                [x(t) for t in marked],
                [y(t) for t in marked],
                marker=origin.style.marker,
                s=origin.style.size**2,
                color=origin.style.colour,
                edgecolor="white",
                zorder=4,
                label=origin.label,
            )
    for method, marked in _peers_by_method([t for t in panel.trials if t.is_peer and _inside(panel, t)]).items():
        color, name = peer_style(method)
        axis.scatter(
            [x(t) for t in marked],
            [y(t) for t in marked],
            marker=PEER_MARKER,
            s=PEER_SIZE**2,
            color=color,
            edgecolor="white",
            zorder=4,
            label=name,
        )
    pick = next((t for t in panel.trials if t.number == chosen and _inside(panel, t)), None)
    if pick is not None:
        axis.scatter(
            [x(pick)],
            [y(pick)],
            s=260,
            facecolors="none",
            edgecolors="gold",
            linewidths=2.5,
            zorder=5,
            label=f"exported: trial {pick.number}",
        )
    if panel.line is not None and math.isfinite(panel.line):
        axis.axhline(panel.line, color="tab:red", linestyle="--", linewidth=1, alpha=0.8, label=panel.line_label)
    if log:
        axis.set_yscale("log")
    axis.set_ylim(low, high)
    if hidden:
        axis.text(
            0.99,
            0.99,
            f"{hidden} point{'s' if hidden != 1 else ''} above {high:.3g} not shown",
            transform=axis.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="dimgray",
        )
    axis.set_xlabel(panel.xlabel)
    axis.set_ylabel(panel.ylabel)
    axis.grid(True, which="both", alpha=0.25)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=3, frameon=False)


_LABEL_OFFSETS = [
    (6, 5),
    (6, -11),
    (-6, 5),
    (-6, -11),
    (6, 15),
    (6, -21),
    (-6, 15),
    (-6, -21),
    (6, 25),
    (6, -31),
    (-6, 25),
    (-6, -31),
    (14, 35),
    (14, -41),
    (-14, 35),
    (-14, -41),
]


def _place_labels(figure, axis, trials: list[TrialRecord], panel: Panel) -> None:
    """Label reference points: each label takes the first offset around its point whose box
    overlaps no label placed before and no point of the panel (a dozen positions are tried)."""
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    points = [axis.transData.transform((panel.x(t), panel.y(t))) for t in panel.trials if _inside(panel, t)]
    occupied = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in points]
    for trial in sorted(trials, key=lambda t: (-panel.y(t), panel.x(t))):
        color = _label_colour(trial)
        chosen = None
        for dx, dy in _LABEL_OFFSETS:
            text = axis.annotate(
                trial.display_label,
                (panel.x(trial), panel.y(trial)),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=7,
                color=color,
                ha="left" if dx > 0 else "right",
            )
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            if not any(box.overlaps(other) for other in occupied):
                chosen = box
                break
            text.remove()
        if chosen is None:  # crowded: the first position, drawn faint
            text = axis.annotate(
                trial.display_label,
                (panel.x(trial), panel.y(trial)),
                textcoords="offset points",
                xytext=_LABEL_OFFSETS[0],
                fontsize=7,
                color=color,
                alpha=0.5,
            )
            chosen = text.get_window_extent(renderer)
        occupied.append(chosen)


def plot_front_html(
    records: StudyRecords, path: str | os.PathLike, include_plotlyjs: str | bool = "cdn", chosen: int | None = None
) -> Path:
    """The front plot as an interactive plotly page (hover shows trial, label, speeds, quality)."""
    import plotly.graph_objects as go
    import plotly.io
    from plotly.subplots import make_subplots

    shown_panels = panels(records)
    figure = make_subplots(rows=1, cols=len(shown_panels), subplot_titles=[p.measure.upper() for p in shown_panels])
    for column, panel in enumerate(shown_panels, start=1):
        front_numbers = {t.number for t in panel.front}
        searched_name = Origin.SEARCH.label  # the searched and calibrated schedules: no markers of their own
        groups = {searched_name: [t for t in panel.trials if t.origin.style is None and not t.is_peer]}
        symbols = {searched_name: "circle"}
        for origin in Origin.styled():
            groups[origin.label] = [t for t in panel.trials if t.origin is origin]
            symbols[origin.label] = origin.style.plotly_symbol
        for method, marked in _peers_by_method([t for t in panel.trials if t.is_peer]).items():
            groups[peer_style(method)[1]] = marked
            symbols[peer_style(method)[1]] = PEER_PLOTLY_SYMBOL
        for name, trials in groups.items():
            if not trials:
                continue
            searched = name == searched_name
            figure.add_trace(
                go.Scatter(
                    x=[panel.x(t) for t in trials],
                    y=[panel.y(t) for t in trials],
                    mode="markers" if searched else "markers+text",
                    name=name,
                    legendgroup=name,
                    showlegend=column == 1,
                    marker={"symbol": symbols[name], "size": 9 if searched else 13},
                    text=None if searched else [t.label or name for t in trials],
                    textposition="top right",
                    hovertext=[_hover(t, t.number in front_numbers) for t in trials],
                    hoverinfo="text",
                ),
                row=1,
                col=column,
            )
        if panel.front:
            figure.add_trace(
                go.Scatter(
                    x=[panel.x(t) for t in panel.front],
                    y=[panel.y(t) for t in panel.front],
                    mode="lines",
                    line={"shape": "vh", "color": "red"},
                    name="Pareto front",
                    legendgroup="front",
                    showlegend=column == 1,
                    hoverinfo="skip",
                ),
                row=1,
                col=column,
            )
        pick = [t for t in panel.trials if t.number == chosen]
        if pick:
            figure.add_trace(
                go.Scatter(
                    x=[panel.x(pick[0])],
                    y=[panel.y(pick[0])],
                    mode="markers",
                    name="exported",
                    marker={"size": 22, "color": "rgba(0,0,0,0)", "line": {"color": "gold", "width": 3}},
                    showlegend=column == 1,
                    hoverinfo="skip",
                ),
                row=1,
                col=column,
            )
        low, high, hidden, log = panel.view
        if panel.line is not None and math.isfinite(panel.line):
            figure.add_hline(
                y=panel.line, line_dash="dash", line_color="red", annotation_text=panel.line_label, row=1, col=column
            )
        axis_range = [math.log10(low), math.log10(high)] if log else [low, high]
        figure.update_yaxes(
            title_text=panel.ylabel, type="log" if log else "linear", range=axis_range, row=1, col=column
        )
        figure.update_xaxes(
            title_text=panel.xlabel + (f" ({hidden} above the view)" if hidden else ""), row=1, col=column
        )
    figure.update_layout(title=f"{records.name}: speed vs quality", template="plotly_white")
    with atomic_path(path) as tmp:
        plotly.io.write_html(figure, str(tmp), include_plotlyjs=include_plotlyjs, full_html=True, auto_open=False)
    return Path(path)


def _labelled_peers(panel: Panel) -> list[TrialRecord]:
    """Per peer method: its default setting and its fastest setting at or below the panel's line."""
    chosen = []
    for marked in _peers_by_method([t for t in panel.trials if t.is_peer and _inside(panel, t)]).values():
        within = [t for t in marked if panel.line is None or not math.isfinite(panel.line) or panel.y(t) <= panel.line]
        defaults = [t for t in marked if (t.peer or {}).get("default")]
        picks = defaults + ([max(within, key=panel.x)] if within else [])
        chosen.extend({t.number: t for t in picks}.values())
    return chosen


def _peers_by_method(trials: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    grouped: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        grouped.setdefault(peer_method(trial), []).append(trial)
    return grouped


def _hover(trial: TrialRecord, on_front: bool) -> str:
    parts = [
        f"trial {trial.number}" + (" (front)" if on_front else ""),
        trial.display_label,
        f"steps: {trial.num_inference_steps}",
    ]
    confirmation = trial.confirmation
    values = {
        "predicted_speedup": trial.predicted_speedup,
        "peer_speedup": trial.measured_speedup,
        "proxy": trial.search_proxy,
        "measured_speedup": confirmation.measured_speedup if confirmation else None,
        "fid": confirmation.fid if confirmation else None,
        "fid_vs_full": confirmation.fid_vs_full if confirmation else None,
    }
    for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            parts.append(f"{key}: {value:.4g}")
    return "<br>".join(p for p in parts if p)


def plot_hypervolume(
    history: Sequence[tuple[int, float]], path: str | os.PathLike, title: str = "hypervolume"
) -> Path:
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


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas, outside pyplot (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure
