"""The search space, built define-by-run from a model's own reusable units, at every unit level.

Units come at three levels (:data:`autofr.reuse.units.LEVELS`, ``space.levels``): the whole block
stack, blocks (UNet stages), and the sub-layers inside blocks. Sub-layer units are grouped (one
schedule per group) to trade dimension for precision:

* ``unit``: one per unit (largest space);
* ``stage``: one per block stage (``down_blocks.1``, ``mid_block``, ``blocks.early`` ...);
* ``kind``: one per unit kind (``resnet``, ``attention``, ``feed_forward`` ...);
* ``global``: one for the whole model (FRDiff's uniform setting).

A trial reuses at one level (the ``level`` parameter; the units of the other levels compute at every
step): the search picks a granularity as the field's caches do, with a handful of parameters instead
of all levels' at once. The stack is one group (``stack``); blocks are grouped by stage (``block.blocks.early``: the front,
middle and back of each block list, DBCache's split; each UNet stage on its own: DeepCache), or in
one group (``block``) with ``kind``/``global`` grouping.

When a group computes (``space.timing``): ``uniform`` every ``M`` steps (FRDiff), ``calibrated``
where its change accumulates (a threshold on the study's measured profile, a cap on consecutive
reuses and warm-up steps: MagCache's rule, see :mod:`autofr.search.timing`), or ``choice`` (a
parameter per trial). Besides, a trial chooses the number of sampling steps (so reduced-step
schedules compete in the same search), FRDiff score mixing on/off, and its bias and slope.

Parameter names (what Optuna and MLflow show): ``steps``, ``level``, ``timing``, ``interval.<group>``,
``offset.<group>``, ``threshold.<group>``, ``max_reuse.<group>``, ``warmup``, ``mixing``,
``mixing_bias``, ``mixing_slope``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from autofr.config import SpaceSettings, section
from autofr.errors import ConfigError
from autofr.reuse.units import LEVELS, ReusableUnit
from autofr.schedule import FRDIFF_MIXING_BIAS, FRDIFF_MIXING_SLOPE, Mixing, ReuseSchedule, UnitSchedule
from autofr.search.origin import Origin
from autofr.search.timing import (
    MAGCACHE_MAX_SKIP,
    MAGCACHE_RETENTION,
    TIMINGS,
    StepProfile,
    calibrated_steps,
    warmup_steps,
)

GROUPINGS = ("unit", "stage", "kind", "global")
MIXING_MODES = ("choice", "on", "off")
STACK_GROUP = "stack"


def group_of(unit: ReusableUnit, grouping: str) -> str:
    """The search group of a unit (see the module docstring)."""
    if unit.level == "stack":
        return STACK_GROUP
    if unit.level == "block":
        return "block" if grouping in ("kind", "global") else f"block.{unit.stage}"
    return {"unit": unit.name, "stage": unit.stage, "kind": unit.kind, "global": "all"}[grouping]


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
    timing: str = "uniform"
    threshold: tuple[float, float] = (0.005, 2.0)
    warmup: tuple[float, float] = (0.0, 0.4)
    kinds: dict | None = None  # group -> "stack" | "block" | "sublayer" level

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
        unknown = sorted(set(settings.levels) - set(LEVELS))
        if unknown or not settings.levels:
            raise ConfigError(f"space.levels={list(settings.levels)}: use a non-empty list of {', '.join(LEVELS)}")
        if settings.timing not in TIMINGS:
            raise ConfigError(f"space.timing={settings.timing!r} is unknown: use one of {', '.join(TIMINGS)}")
        low, high = (tuple(settings.threshold) + (0, 0))[:2]
        if len(settings.threshold) != 2 or not 0 < low < high:
            raise ConfigError("space.threshold must be a [low, high] range of accumulated error with 0 < low < high")
        low, high = (tuple(settings.warmup) + (0, 0))[:2]
        if len(settings.warmup) != 2 or not 0 <= low <= high < 1:
            raise ConfigError("space.warmup must be a [low, high] range of fractions of the steps in [0, 1)")
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
        levels: dict[str, str] = {}
        for unit in units:
            if unit.level not in settings.levels:
                continue
            key = group_of(unit, settings.grouping)
            groups.setdefault(key, []).append(unit.name)
            levels[key] = unit.level
        if not groups:
            raise ConfigError(
                f"space.levels={list(settings.levels)}: the model has no units at these levels; add sublayer"
            )
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
            settings.timing,
            tuple(settings.threshold),
            tuple(settings.warmup),
            levels,
        )

    @property
    def level_of(self) -> dict[str, str]:
        """Group -> the level of its units."""
        return self.kinds or {group: "sublayer" for group in self.groups}

    @property
    def levels(self) -> list[str]:
        """The unit levels of the space, outermost first."""
        return [level for level in LEVELS if level in self.level_of.values()]

    def groups_at(self, level: str) -> list[str]:
        return [group for group in self.groups if self.level_of[group] == level]

    def _level_of_groups(self, groups) -> str:
        """The one level of ``groups`` (the innermost level when none are given: full compute)."""
        found = {self.level_of[group] for group in groups}
        if len(found) > 1:
            raise ConfigError(f"a schedule of this space reuses at one unit level, not {sorted(found)}")
        return found.pop() if found else self.levels[-1]

    # ------------------------------------------------------------------ trial -> schedule
    def suggest(self, trial, profiles: Callable[[int], StepProfile] | None = None) -> ReuseSchedule:
        """The trial's schedule. ``profiles`` (steps -> :class:`StepProfile`) is needed for calibrated
        timing (:class:`autofr.search.timing.StepProfiles` measures and stores them)."""
        steps = trial.suggest_categorical("steps", self.steps) if len(self.steps) > 1 else self.default_steps
        # one unit level per trial: the stack, blocks or sub-layers (a reused outer unit hides the inner ones)
        levels = self.levels
        level = trial.suggest_categorical("level", levels) if len(levels) > 1 else levels[0]
        groups = self.groups_at(level)
        timing = self.timing
        if timing == "choice":
            timing = trial.suggest_categorical("timing", ["uniform", "calibrated"])
        if timing == "calibrated":
            if profiles is None:
                raise ConfigError("space.timing=calibrated needs the study's change profiles (run it through a study)")
            units = self._calibrated_units(trial, int(steps), profiles(int(steps)), groups)
        else:
            units = self._uniform_units(trial, int(steps), groups)
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

    def _uniform_units(self, trial, steps: int, groups: list[str]) -> dict[str, UnitSchedule]:
        units: dict[str, UnitSchedule] = {}
        for group in groups:
            names = self.groups[group]
            interval = trial.suggest_int(f"interval.{group}", 1, self.max_interval)
            offset = 0
            if self.offsets and self.max_interval > 1:
                offset = trial.suggest_int(f"offset.{group}", 0, self.max_interval - 1) % interval
            interval = min(interval, steps)
            for name in names:
                units[name] = UnitSchedule(interval=interval, offset=min(offset, interval - 1))
        return units

    def _calibrated_units(self, trial, steps: int, profile: StepProfile, groups: list[str]) -> dict[str, UnitSchedule]:
        warmup = warmup_steps(trial.suggest_float("warmup", *self.warmup), steps)
        units: dict[str, UnitSchedule] = {}
        for group in groups:
            names = self.groups[group]
            threshold = trial.suggest_float(f"threshold.{group}", *self.threshold, log=True)
            max_reuse = trial.suggest_int(f"max_reuse.{group}", 1, max(1, self.max_interval - 1))
            ratios = profile.ratio.get(group) or [1.0] * steps
            if threshold <= self.threshold[0]:  # the bottom of the range: the group never reuses
                compute = tuple(range(steps))
            else:
                compute = calibrated_steps(
                    ratios[:steps] + [1.0] * (steps - len(ratios)), threshold, max_reuse, warmup
                )
            schedule = UnitSchedule() if len(compute) == steps else UnitSchedule(steps=compute)
            for name in names:
                units[name] = schedule
        return units

    # ------------------------------------------------------------------ warm start
    def params_for(
        self,
        intervals: dict[str, int],
        mixing: bool,
        steps: int | None = None,
        timing: str = "uniform",
        level: str | None = None,
    ) -> dict:
        """Trial parameters of a per-group uniform schedule (for ``study.enqueue_trial``); groups not
        in ``intervals`` compute every step; mixing is FRDiff's. The groups that reuse share one level
        (``level``, else theirs)."""
        if timing == "uniform" and self.timing == "calibrated":
            raise ConfigError("uniform schedules are outside a space.timing=calibrated space")
        params: dict = {}
        if len(self.steps) > 1:
            params["steps"] = steps or self.default_steps
        level = level or self._level_of_groups([g for g, k in intervals.items() if k > 1])
        if len(self.levels) > 1:
            params["level"] = level
        if self.timing == "choice":
            params["timing"] = timing
        if timing == "uniform":
            for group in self.groups_at(level):
                params[f"interval.{group}"] = int(min(max(1, intervals.get(group, 1)), self.max_interval))
                if self.offsets and self.max_interval > 1:
                    params[f"offset.{group}"] = 0
        self._mixing_params(params, mixing)
        return params

    def params_for_calibrated(
        self,
        thresholds: dict[str, float],
        max_reuse: dict[str, int],
        warmup: float,
        mixing: bool = False,
        steps: int | None = None,
    ) -> dict:
        """Trial parameters of a calibrated-timing schedule; groups not in ``thresholds`` compute
        every step (the bottom of the threshold range means never reuse); values are clipped to the
        space's ranges."""
        if self.timing == "uniform":
            raise ConfigError("calibrated schedules are outside a space.timing=uniform space")
        level = self._level_of_groups(list(thresholds))
        params = self.params_for({}, mixing, steps, timing="calibrated", level=level)
        params["warmup"] = min(max(warmup, self.warmup[0]), self.warmup[1])
        for group in self.groups_at(level):
            params[f"threshold.{group}"] = min(max(thresholds.get(group, 0.0), self.threshold[0]), self.threshold[1])
            params[f"max_reuse.{group}"] = int(min(max(1, max_reuse.get(group, 1)), max(1, self.max_interval - 1)))
        return params

    def _mixing_params(self, params: dict, mixing: bool) -> None:
        if self.mixing == "choice":
            params["mixing"] = bool(mixing)
        if mixing and self.mixing != "off":
            params["mixing_bias"] = min(max(FRDIFF_MIXING_BIAS, self.mixing_bias[0]), self.mixing_bias[1])
            params["mixing_slope"] = min(max(FRDIFF_MIXING_SLOPE, self.mixing_slope[0]), self.mixing_slope[1])

    def params_for_uniform(self, interval: int, mixing: bool, steps: int | None = None) -> dict:
        """Trial parameters that reproduce FRDiff's uniform setting (every sub-layer unit at ``interval``)."""
        groups = [g for g in self.groups if self.level_of[g] == "sublayer"] or list(self.groups)
        return self.params_for(dict.fromkeys(groups, interval), mixing, steps)

    def deepcache_intervals(self, interval: int) -> dict[str, int] | None:
        """DeepCache in this space: every stage but the first and the last reuses every ``interval``
        steps. With block units of a UNet (one group per stage) this is DeepCache exactly; with
        sub-layer ``stage`` grouping it is its idea on the units inside the stages. None where the
        space has neither (or fewer than three stages)."""
        blocks = [g for g in self.groups if self.level_of[g] == "block"]
        if len(blocks) >= 3 and all(
            g.startswith(("block.down_blocks", "block.mid_block", "block.up_blocks")) for g in blocks
        ):
            return {group: 1 if group in (blocks[0], blocks[-1]) else interval for group in blocks}
        stages = [g for g in self.groups if self.level_of[g] == "sublayer"]
        if self.grouping != "stage" or len(stages) < 3:
            return None
        return {group: 1 if group in (stages[0], stages[-1]) else interval for group in stages}

    def block_split_intervals(self, interval: int) -> dict[str, int] | None:
        """DBCache's front / back split as a static schedule: the front third of every block list
        computes every step, the middle and back thirds reuse every ``interval`` steps. None without
        transformer block groups."""
        blocks = [
            g
            for g in self.groups
            if self.level_of[g] == "block" and g.rsplit(".", 1)[-1] in ("early", "middle", "late")
        ]
        if not blocks:
            return None
        return {group: 1 if group.endswith(".early") else interval for group in blocks}

    def warm_start(self) -> list[tuple[Origin, str, dict]]:
        """(origin, label, params) of the hand-set reference points every study starts from.

        The full-compute baseline, FRDiff's uniform M=2,3,4 with and without mixing, DeepCache
        (every 3 and 5 steps), a front/back block split (every 2 and 3 steps) and full compute at
        each of ``baseline_steps`` (plain step reduction, the other way to be faster). MagCache's
        rule and the calibrated schedules need a model run: see :mod:`autofr.search.warmstart`.
        """
        if self.timing == "calibrated":
            return [(Origin.FULL_COMPUTE, "full compute", self.params_for_calibrated({}, {}, 0.0))]
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
                exact = self.level_of[next(iter(deep))] == "block"
                label = f"DeepCache N={interval}" if exact else f"DeepCache-style N={interval}"
                entries.append((Origin.DEEPCACHE, label, self.params_for(deep, False)))
        for interval in sorted({min(n, self.max_interval) for n in (2, 3)} - {1}):
            split = self.block_split_intervals(interval)
            if split is not None and self.mixing != "on":
                entries.append((Origin.BLOCK_SPLIT, f"front/back split N={interval}", self.params_for(split, False)))
        for steps in self.baseline_steps:
            if steps != self.default_steps and len(self.steps) > 1:
                entries.append(
                    (Origin.REDUCED_STEPS, f"{steps} steps", self.params_for_uniform(1, False, steps=steps))
                )
        return entries

    def magcache_params(self, threshold: float, steps: int | None = None) -> dict | None:
        """MagCache's rule at ``threshold`` as this space's parameters: the stack group with
        MagCache's own max skip and retention, everything else computing. None without a stack or
        calibrated timing."""
        if STACK_GROUP not in self.groups or self.timing == "uniform":
            return None
        return self.params_for_calibrated(
            {STACK_GROUP: threshold}, {STACK_GROUP: MAGCACHE_MAX_SKIP}, MAGCACHE_RETENTION, False, steps
        )

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
            "levels": [level for level in LEVELS if level in self.level_of.values()],
            "timing": self.timing,
        }

    def size_summary(self) -> str:
        """One line: dimensions and the number of discrete schedules."""
        widest = max(len(self.groups_at(level)) for level in self.levels)  # one level per trial
        int_dims = widest * (2 if self.offsets and self.max_interval > 1 else 1) + (len(self.levels) > 1)
        discrete = len(self.steps) * sum(self.max_interval ** len(self.groups_at(level)) for level in self.levels)
        if self.offsets and self.max_interval > 1:
            discrete *= self.max_interval**widest
        continuous = 0
        if self.mixing == "choice":
            discrete *= 2
        if self.mixing != "off":
            continuous = 2
        dims = int_dims + (len(self.steps) > 1) + (self.mixing == "choice") + continuous
        if self.timing != "uniform":  # a threshold and a cap per group, and the warm-up
            dims += (self.timing == "choice") + 1 + (widest if self.timing == "choice" else 0)
            continuous += 1
        levels = "/".join(self.describe()["levels"])
        return (
            f"search space: {dims} dimensions over {self.describe()['units']} units ({levels}) in "
            f"{len(self.groups)} groups (timing {self.timing}, interval 1..{self.max_interval}, steps {self.steps}, "
            f"mixing {self.mixing}); "
            f"~10^{math.log10(discrete):.1f} discrete schedules" + (" x continuous mixing" if continuous else "")
        )
