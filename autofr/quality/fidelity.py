"""Proxy fidelity: how well each fast proxy ranks schedules the way FID does, and what it saves.

Given, for a set of schedules, each proxy's values and the FID values (plus what each costs in
seconds), :func:`proxy_fidelity` returns one row per proxy:

``proxy``             the proxy's name
``n``                 schedules with finite proxy and FID values (NaN/inf rows are left out)
``spearman``          Spearman's rho of proxy vs FID (1: same order; lower-is-better both)
``spearman_p``        its two-sided p-value
``kendall``           Kendall's tau-b of proxy vs FID
``kendall_p``         its two-sided p-value
``proxy_seconds``     cost of one proxy evaluation (as given; mean if a list)
``fid_seconds``       cost of one FID evaluation (as given; mean if a list)
``cost_ratio``        ``fid_seconds / proxy_seconds``: how many proxy evaluations one FID costs

Correlations of fewer than 3 schedules, or with a constant column, are NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np


def proxy_fidelity(
    proxies: Mapping[str, Sequence[float]],
    fid: Sequence[float],
    *,
    proxy_seconds: Mapping[str, float | Sequence[float]] | None = None,
    fid_seconds: float | Sequence[float] | None = None,
) -> list[dict[str, float | int | str]]:
    """Rank correlation of each proxy with FID over the same schedules, and the cost ratio.

    Args:
        proxies: proxy name -> one value per schedule (same order as ``fid``).
        fid: FID per schedule.
        proxy_seconds: proxy name -> seconds per evaluation (a number or per-schedule list).
        fid_seconds: seconds per FID evaluation (a number or per-schedule list).
    """
    from scipy.stats import kendalltau, spearmanr

    fid_values = np.asarray(fid, dtype=np.float64)
    fid_cost = _mean_seconds(fid_seconds)
    rows: list[dict[str, float | int | str]] = []
    for name, values in proxies.items():
        proxy_values = np.asarray(values, dtype=np.float64)
        if proxy_values.shape != fid_values.shape:
            raise ValueError(
                f"proxy {name!r} has {proxy_values.size} values but there are {fid_values.size} FID values"
            )
        finite = np.isfinite(proxy_values) & np.isfinite(fid_values)
        x, y = proxy_values[finite], fid_values[finite]
        rho = rho_p = tau = tau_p = math.nan
        if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho, rho_p = (float(v) for v in spearmanr(x, y))
                tau, tau_p = (float(v) for v in kendalltau(x, y))
        proxy_cost = _mean_seconds((proxy_seconds or {}).get(name))
        rows.append(
            {
                "proxy": name,
                "n": int(len(x)),
                "spearman": rho,
                "spearman_p": rho_p,
                "kendall": tau,
                "kendall_p": tau_p,
                "proxy_seconds": proxy_cost,
                "fid_seconds": fid_cost,
                "cost_ratio": fid_cost / proxy_cost if proxy_cost > 0 else math.nan,
            }
        )
    return rows


def format_fidelity_table(rows: Sequence[Mapping[str, float | int | str]], fid_name: str = "FID") -> str:
    """A markdown table of :func:`proxy_fidelity` rows (correlations against ``fid_name``)."""
    lines = [
        f"| proxy | n | Spearman rho | Kendall tau | proxy s | {fid_name} s | {fid_name} cost / proxy cost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['proxy']} | {row['n']} | {_fmt(row['spearman'])} (p={_fmt(row['spearman_p'], 2)}) "
            f"| {_fmt(row['kendall'])} (p={_fmt(row['kendall_p'], 2)}) | {_fmt(row['proxy_seconds'], 2)} "
            f"| {_fmt(row['fid_seconds'], 2)} | {_fmt(row['cost_ratio'], 1)}x |"
        )
    return "\n".join(lines)


def _mean_seconds(seconds: float | Sequence[float] | None) -> float:
    if seconds is None:
        return math.nan
    if isinstance(seconds, (int, float)):
        return float(seconds)
    values = [float(s) for s in seconds]
    return sum(values) / len(values) if values else math.nan


def _fmt(value: float | int | str, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and digits <= 2 and 0 < abs(value) < 10 ** (-digits):
        return f"{value:.0e}"
    return f"{value:.{digits}f}"
