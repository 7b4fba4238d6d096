"""The search space, built define-by-run from a model's own reusable units.

Units are grouped (one reuse interval per group) to trade dimension for precision:

* ``unit``: one interval per unit (largest space);
* ``stage``: one per block stage (``down_blocks.1``, ``mid_block``, ``blocks.early`` ...);
* ``kind``: one per unit kind (``resnet``, ``attention``, ``feed_forward`` ...);
* ``global``: one interval for the whole model (FRDiff's uniform setting).

Besides the intervals a trial chooses the number of sampling steps (so reduced-step schedules
compete in the same search), FRDiff score mixing on/off, and its bias and slope.

Parameter names (what Optuna and MLflow show): ``steps``, ``interval.<group>``, ``offset.<group>``,
``mixing``, ``mixing_bias``, ``mixing_slope``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from autofr.config import SpaceSettings, section
from autofr.errors import ConfigError
from autofr.reuse.units import ReusableUnit
from autofr.schedule import FRDIFF_MIXING_BIAS, FRDIFF_MIXING_SLOPE, Mixing, ReuseSchedule, UnitSchedule
from autofr.search.origin import Origin

GROUPINGS = ("unit", "stage", "kind", "global")
MIXING_MODES = ("choice", "on", "off")


@dataclass
class SearchSpace:
    """Turns Optuna trials into :class:`ReuseSchedule` objects for one model."""

    model_class: str
    fingerprint: str
    groups: OrderedDict[str, list[str]]
    steps: list[int]
    default_steps: int
    max_interval: int = 6
    offsets: bool = False
    mixing: str = "choice"
    mixing_bias: tuple[float, float] = (0.2, 0.8)
    mixing_slope: tuple[float, float] = (5.0, 60.0)
    scheduler: str | None = None
    baseline_steps: tuple[int, ...] = ()
    grouping: str = "stage"

    @staticmethod
    def settings(cfg) -> SpaceSettings:
        """``cfg`` as validated :class:`SpaceSettings` (a mapping or Hydra node is converted)."""
        if isinstance(cfg, SpaceSettings):
            settings = cfg
        else:
            from omegaconf import DictConfig, OmegaConf

            node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
            settings = section(SpaceSettings, node, "space")
        if settings.grouping not in GROUPINGS:
            raise ConfigError(f"space.grouping={settings.grouping!r} is unknown: use one of {', '.join(GROUPINGS)}")
        if settings.mixing not in MIXING_MODES:
            raise ConfigError(f"space.mixing={settings.mixing!r} is unknown: use one of {', '.join(MIXING_MODES)}")
        if settings.max_interval < 1:
            raise ConfigError(f"space.max_interval={settings.max_interval} must be at least 1")
        bias, slope = settings.mixing_bias, settings.mixing_slope
        if len(bias) != 2 or not bias[0] < bias[1] or len(slope) != 2 or not 0 < slope[0] < slope[1]:
            raise ConfigError("space.mixing_bias and space.mixing_slope must be [low, high] ranges (slope > 0)")
        if any(s < 1 for s in settings.steps):
            raise ConfigError(f"space.steps={list(settings.steps)} must be positive step counts")
        return settings

    @classmethod
    def check_config(cls, cfg) -> None:
        """Validate the model-independent keys (before any model is loaded)."""
        cls.settings(cfg)

    @classmethod
    def from_config(
        cls,
        cfg,
        units: list[ReusableUnit],
        model_class: str,
        fingerprint: str,
        default_steps: int,
        scheduler: str | None = None,
    ) -> SearchSpace:
        settings = cls.settings(cfg)
        if not 1 <= settings.max_interval <= default_steps:
            raise ConfigError(f"space.max_interval={settings.max_interval} must be in [1, {default_steps}]")
        groups: OrderedDict[str, list[str]] = OrderedDict()
        for unit in units:
            key = {"unit": unit.name, "stage": unit.stage, "kind": unit.kind, "global": "all"}[settings.grouping]
            groups.setdefault(key, []).append(unit.name)
        steps = sorted(set(settings.steps) | {int(default_steps)})
        # Only step counts the space can express are enqueued (a user narrowing space.steps drops the rest).
        baseline_steps = tuple(sorted(set(settings.baseline_steps) & set(steps), reverse=True))
        return cls(
            model_class,
            fingerprint,
            groups,
            steps,
            int(default_steps),
            settings.max_interval,
            settings.offsets,
            settings.mixing,
            tuple(settings.mixing_bias),
            tuple(settings.mixing_slope),
            scheduler,
            baseline_steps,
            settings.grouping,
        )

    # ------------------------------------------------------------------ trial -> schedule
    def suggest(self, trial) -> ReuseSchedule:
        steps = trial.suggest_categorical("steps", self.steps) if len(self.steps) > 1 else self.default_steps
        units: dict[str, UnitSchedule] = {}
        for group, names in self.groups.items():
            interval = trial.suggest_int(f"interval.{group}", 1, self.max_interval)
            offset = 0
            if self.offsets and self.max_interval > 1:
                offset = trial.suggest_int(f"offset.{group}", 0, self.max_interval - 1) % interval
            interval = min(interval, steps)
            for name in names:
                units[name] = UnitSchedule(interval=interval, offset=min(offset, interval - 1))
        mixing = None
        enabled = {"on": True, "off": False}.get(self.mixing)
        if enabled is None:
            enabled = trial.suggest_categorical("mixing", [True, False])
        if enabled:
            mixing = Mixing(
                bias=trial.suggest_float("mixing_bias", *self.mixing_bias),
                slope=trial.suggest_float("mixing_slope", *self.mixing_slope, log=True),
            )
        schedule = ReuseSchedule(self.model_class, self.fingerprint, int(steps), units, mixing, self.scheduler)
        schedule.validate()
        return schedule

    # ------------------------------------------------------------------ warm start
    def params_for(self, intervals: dict[str, int], mixing: bool, steps: int | None = None) -> dict:
        """Trial parameters of a per-group schedule (for ``study.enqueue_trial``); mixing is FRDiff's."""
        params: dict = {}
        if len(self.steps) > 1:
            params["steps"] = steps or self.default_steps
        for group in self.groups:
            params[f"interval.{group}"] = int(min(max(1, intervals[group]), self.max_interval))
            if self.offsets and self.max_interval > 1:
                params[f"offset.{group}"] = 0
        if self.mixing == "choice":
            params["mixing"] = bool(mixing)
        if mixing and self.mixing != "off":
            params["mixing_bias"] = min(max(FRDIFF_MIXING_BIAS, self.mixing_bias[0]), self.mixing_bias[1])
            params["mixing_slope"] = min(max(FRDIFF_MIXING_SLOPE, self.mixing_slope[0]), self.mixing_slope[1])
        return params

    def params_for_uniform(self, interval: int, mixing: bool, steps: int | None = None) -> dict:
        """Trial parameters that reproduce FRDiff's uniform setting."""
        return self.params_for({group: interval for group in self.groups}, mixing, steps)

    def deepcache_intervals(self, interval: int) -> dict[str, int] | None:
        """DeepCache's idea in this space: the deep stages reuse every ``interval`` steps, the
        shallowest ones (the first and the last stage in network order) compute every step. Only
        with ``grouping=stage`` and three or more stages; None otherwise."""
        if self.grouping != "stage" or len(self.groups) < 3:
            return None
        names = list(self.groups)
        return {group: 1 if group in (names[0], names[-1]) else interval for group in names}

    def warm_start(self) -> list[tuple[Origin, str, dict]]:
        """(origin, label, params) of the hand-set reference points every study starts from.

        The full-compute baseline, FRDiff's uniform M=2,3,4 with and without mixing, DeepCache-style
        reuse of the deep stages (every 3 and 5 steps), and full compute at each of
        ``baseline_steps`` (plain step reduction, the other way to be faster).
        """
        entries = [(Origin.FULL_COMPUTE, "full compute", self.params_for_uniform(1, False))]
        for interval in (2, 3, 4):
            if interval > self.max_interval:
                continue
            if self.mixing != "on":
                entries.append((Origin.FRDIFF, f"FRDiff M={interval}", self.params_for_uniform(interval, False)))
            if self.mixing != "off":
                entries.append(
                    (Origin.FRDIFF, f"FRDiff M={interval} +mixing", self.params_for_uniform(interval, True))
                )
        for interval in sorted({min(n, self.max_interval) for n in (3, 5)} - {1}):
            deep = self.deepcache_intervals(interval)
            if deep is not None and self.mixing != "on":
                entries.append((Origin.DEEPCACHE, f"DeepCache-style N={interval}", self.params_for(deep, False)))
        for steps in self.baseline_steps:
            if steps != self.default_steps and len(self.steps) > 1:
                entries.append(
                    (Origin.REDUCED_STEPS, f"{steps} steps", self.params_for_uniform(1, False, steps=steps))
                )
        return entries

    # ------------------------------------------------------------------ description
    def describe(self) -> dict:
        return {
            "groups": len(self.groups),
            "units": sum(len(v) for v in self.groups.values()),
            "max_interval": self.max_interval,
            "steps": self.steps,
            "offsets": self.offsets,
            "mixing": self.mixing,
            "mixing_bias": list(self.mixing_bias),
            "mixing_slope": list(self.mixing_slope),
            "baseline_steps": list(self.baseline_steps),
        }

    def size_summary(self) -> str:
        """One line: dimensions and the number of discrete schedules."""
        int_dims = len(self.groups) * (2 if self.offsets and self.max_interval > 1 else 1)
        discrete = len(self.steps) * self.max_interval ** len(self.groups)
        if self.offsets and self.max_interval > 1:
            discrete *= self.max_interval ** len(self.groups)
        continuous = 0
        if self.mixing == "choice":
            discrete *= 2
        if self.mixing != "off":
            continuous = 2
        dims = int_dims + (len(self.steps) > 1) + (self.mixing == "choice") + continuous
        return (
            f"search space: {dims} dimensions over {self.describe()['units']} units in {len(self.groups)} groups "
            f"(interval 1..{self.max_interval}, steps {self.steps}, mixing {self.mixing}); "
            f"~10^{math.log10(discrete):.1f} discrete schedules" + (" x continuous mixing" if continuous else "")
        )
