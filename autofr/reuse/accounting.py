"""What a reuse schedule really did in the last sampling run.

Counters are plain Python ints bumped by the hooks (no device synchronisation). They are closed at
the end of every run, so a schedule that never fires (a hook that is never called, a unit planned to
be reused that never is) shows at once in :meth:`ReuseAccounting.summary` and in a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class UnitCount:
    computed: int = 0
    reused: int = 0


@dataclass
class ReuseAccounting:
    """Counters of the last completed sampling run (and of the one in progress, in ``calls``).

    Attributes:
        units: per unit, how often it computed and how often it reused its cache in the last run.
        planned: per unit, the (computed, reused) counts the schedule plans for one run.
        network_calls: denoiser calls in the last run in which the network ran.
        skipped_calls: denoiser calls answered with the jump score without running the network.
        cache_bytes: bytes held in feature caches at the end of the last run (freed after it).
        runs: completed sampling runs since the schedule was applied.
    """

    schedule_summary: str
    units: dict[str, UnitCount]
    planned: dict[str, tuple[int, int]]
    network_calls: int = 0
    skipped_calls: int = 0
    cache_bytes: int = 0
    runs: int = 0
    calls: int = 0  # denoiser calls in the run in progress
    skipped: int = 0
    planned_network_steps: int = 0
    total_macs: int | None = None
    unit_macs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, schedule_summary: str, plan, names: list[str]) -> ReuseAccounting:
        """Zero counters of the units ``names`` for a schedule unrolled into ``plan`` (a
        :class:`autofr.schedule.StepPlan`)."""
        return cls(
            schedule_summary=schedule_summary,
            units={name: UnitCount() for name in names},
            planned={name: plan.unit_counts(name) for name in names},
            planned_network_steps=sum(plan.run),
        )

    def set_cost(self, cost) -> None:
        self.total_macs = cost.total_macs
        self.unit_macs = dict(cost.unit_macs)

    def begin_run(self) -> None:
        self.calls = 0
        self.skipped = 0

    def end_run(self, unit_hooks, spans=()) -> None:
        """Close a run: read the counters of the unit hooks and of the block spans (an outer unit
        with no span never reuses: it computed wherever it ran, as planned)."""
        self.runs += 1
        self.network_calls = self.calls - self.skipped
        self.skipped_calls = self.skipped
        cache_bytes = 0
        silent = []
        counted = [(hook.name, hook) for hook in unit_hooks]
        counted += [(name, span) for span in spans for name in span.unit_names if name in self.units]
        seen = set()
        for name, counter in counted:
            self.units[name] = UnitCount(counter.computed, counter.reused)
            if id(counter) not in seen:
                cache_bytes += counter.cache_bytes()
                seen.add(id(counter))
            if counter.computed + counter.reused == 0 or (self.planned[name][1] > 0 and counter.reused == 0):
                silent.append(name)
        calls_per_step = self.network_calls // max(1, self.planned_network_steps)
        for name in self.units.keys() - {name for name, _ in counted}:
            self.units[name] = UnitCount(self.planned[name][0] * calls_per_step, 0)
        for _, counter in counted:
            counter.computed = counter.reused = 0
        self.cache_bytes = cache_bytes
        self.calls = self.skipped = 0
        if silent:
            logger.warning(
                "%d unit(s) never reused their cache as planned (e.g. %s): the pipeline may bypass these modules",
                len(silent),
                silent[0],
            )

    # ------------------------------------------------------------------ derived numbers
    @property
    def total_calls(self) -> int:
        return self.network_calls + self.skipped_calls

    @property
    def reused_units(self) -> int:
        return sum(1 for count in self.units.values() if count.reused)

    @property
    def never_fired(self) -> list[str]:
        """Units planned to reuse that did not, or hooks never called, in the last run."""
        return [
            name
            for name, count in self.units.items()
            if count.computed + count.reused == 0 or (self.planned[name][1] > 0 and count.reused == 0)
        ]

    @property
    def macs_full(self) -> int | None:
        """MACs (batch 1) the run would have cost without reuse."""
        return None if self.total_macs is None else self.total_calls * self.total_macs

    @property
    def macs_executed(self) -> int | None:
        """MACs (batch 1) the run executed."""
        if self.total_macs is None:
            return None
        saved = sum(count.reused * self.unit_macs.get(name, 0) for name, count in self.units.items())
        return self.network_calls * self.total_macs - saved

    @property
    def predicted_speedup(self) -> float | None:
        """``macs_full / macs_executed``: the speedup if time were proportional to MACs."""
        if self.total_macs is None or not self.total_calls:
            return None
        return self.macs_full / max(1, self.macs_executed)

    def as_metrics(self) -> dict[str, float]:
        metrics = {
            "network_calls": float(self.network_calls),
            "skipped_calls": float(self.skipped_calls),
            "cache_bytes": float(self.cache_bytes),
            "reused_units": float(self.reused_units),
        }
        if self.predicted_speedup is not None:
            metrics["macs_executed"] = float(self.macs_executed)
            metrics["macs_full"] = float(self.macs_full)
            metrics["predicted_speedup"] = float(self.predicted_speedup)
        return metrics

    def summary(self, per_unit: bool = True) -> str:
        """A human-readable table of the last run."""
        lines = [
            f"schedule: {self.schedule_summary}",
            f"denoiser calls: {self.total_calls} ({self.network_calls} ran the network, "
            f"{self.skipped_calls} skipped by score mixing)",
        ]
        if self.predicted_speedup is not None:
            lines.append(
                f"MACs executed: {self.macs_executed / 1e9:.3f} G of {self.macs_full / 1e9:.3f} G "
                f"(per sample) -> predicted speedup {self.predicted_speedup:.2f}x"
            )
        lines.append(f"feature caches held: {self.cache_bytes / 2**20:.2f} MiB")
        if per_unit:
            width = max(len(name) for name in self.units)
            lines.append(f"{'unit':<{width}}  computed  reused")
            for name, count in self.units.items():
                flag = "  <- never reused as planned" if name in self.never_fired else ""
                lines.append(f"{name:<{width}}  {count.computed:8d}  {count.reused:6d}{flag}")
        return "\n".join(lines)
