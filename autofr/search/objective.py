"""The per-trial objective: schedule -> samples -> (speedup, quality proxy).

Every trial is sampled with the study's fixed :class:`~autofr.evaluation.EvalProtocol` at the
trial's own step count, from the same initial noise as the full-compute reference (made once at
the model's reference step count and cached), so the paired proxy measures exactly what the
schedule changed. Speed is predicted from the cost model (MACs, or a latency model calibrated on
this machine), relative to full compute at the reference step count.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from optuna.trial import TrialState

from autofr.cost import ModelCost, executed_macs
from autofr.errors import ConfigError, QualityError
from autofr.evaluation import EvalProtocol, SampleBatch, generate
from autofr.schedule import ReuseSchedule
from autofr.search.front import schedule_key
from autofr.search.space import SearchSpace

logger = logging.getLogger(__name__)


@dataclass
class SpeedModel:
    """Predicted speedup of a schedule vs full compute at ``baseline_steps``.

    ``unit_seconds``/``forward_seconds`` (from :func:`calibrate_latency`) switch from MACs to measured
    per-unit latency: a step costs the full forward minus the units it reuses, plus a fixed overhead.
    """

    cost: ModelCost
    baseline_steps: int
    forward_seconds: float | None = None
    unit_seconds: dict[str, float] = field(default_factory=dict)
    step_overhead_seconds: float = 0.0

    def predicted_speedup(self, schedule: ReuseSchedule) -> float:
        plan = schedule.plan(list(self.cost.unit_macs))
        if self.forward_seconds is None:
            return self.baseline_steps * self.cost.total_macs / max(1, executed_macs(plan, self.cost))
        seconds = schedule.num_inference_steps * self.step_overhead_seconds
        for step in range(plan.num_steps):
            if plan.run[step]:
                seconds += self.forward_seconds - sum(
                    self.unit_seconds.get(name, 0.0) for name, mask in plan.unit_compute.items() if not mask[step]
                )
        full = self.baseline_steps * (self.forward_seconds + self.step_overhead_seconds)
        return full / max(seconds, 1e-9)


def sample_grid_png(images: torch.Tensor, count: int = 16) -> bytes:
    """A small PNG grid of the first ``count`` samples (images in [0, 1])."""
    from PIL import Image

    images = images[:count].clamp(0, 1)
    n, channels, height, width = images.shape
    columns = min(8, n)
    rows = math.ceil(n / columns)
    grid = torch.zeros(channels, rows * (height + 2), columns * (width + 2))
    for index in range(n):
        r, c = divmod(index, columns)
        grid[:, r * (height + 2) + 1 : r * (height + 2) + 1 + height, c * (width + 2) + 1 : c * (width + 2) + 1 + width] = images[index]
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    scale = max(1, 128 // max(height, 1))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


REAL_DATA_PROXY = "fid_real"
# Recorded for every trial beside its proxy (fid_real only where real data exists).
EXTRA_METRICS = ("latent_mse", "psnr", "ssim", "fid_real")


def build_proxy(name: str, reference: SampleBatch, real_reference=None, feature_options: dict | None = None):
    """A proxy measure by name. ``fid_real`` is FID of the proxy samples against the real data (the
    confirmation FID's own reference, at the proxy's small N: biased upward, compare at equal N
    only); every other name is a registered measure against the full-compute ``reference``."""
    from autofr.quality import build_measure

    if name == REAL_DATA_PROXY:
        if real_reference is None:
            raise ConfigError("quality.proxy=fid_real needs real data: set quality.real_data (a folder of images "
                              "or an .npz of mu/sigma) and quality.fid_reference=real")
        return build_measure("fid", reference=real_reference, **(feature_options or {}))
    return build_measure(name, reference=reference)


def resolve_threshold(threshold: float | str | None, proxy_name: str, full_compute_proxy: float) -> float | None:
    """``quality.threshold``: an absolute proxy value, or ``"<r>x"``, r times the proxy of full compute
    (for proxies that are not 0 at full compute, such as fid_real)."""
    if threshold is None:
        return None
    text = str(threshold).strip()
    if not text.lower().endswith("x"):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"quality.threshold={threshold!r} is not a number or a ratio like 1.2x") from None
    try:
        ratio = float(text[:-1])
    except ValueError:
        raise ConfigError(f"quality.threshold={threshold!r} is not a number or a ratio like 1.2x") from None
    if not (math.isfinite(full_compute_proxy) and full_compute_proxy > 0):
        raise ConfigError(f"quality.threshold={text} is relative to full compute, but {proxy_name} of full compute is "
                          f"{full_compute_proxy:g}: give an absolute threshold, or use quality.proxy=fid_real")
    return ratio * full_compute_proxy


class Objective:
    """``objective(trial) -> (predicted speedup, proxy)``; records what it did in the trial's user attrs."""

    def __init__(self, pipe, space: SearchSpace, protocol: EvalProtocol, reference: SampleBatch,
                 proxy_name: str, extra_proxies: tuple[str, ...], speed: SpeedModel,
                 threshold: float | str | None = None, keep_grids: bool = True,
                 real_reference=None, feature_options: dict | None = None) -> None:
        self.pipe = pipe
        self.space = space
        self.protocol = protocol
        self.proxy_name = proxy_name
        self.measures = {name: build_proxy(name, reference, real_reference, feature_options)
                         for name in (proxy_name, *extra_proxies)}
        self.speed = speed
        self.full_compute_proxy = float(self.measures[proxy_name].score(reference))
        self.threshold = resolve_threshold(threshold, proxy_name, self.full_compute_proxy)
        self.keep_grids = keep_grids
        self.grids: dict[int, bytes] = {}
        self._grid_by_schedule: dict[str, bytes] = {}

    def __call__(self, trial) -> tuple[float, float]:
        schedule = self.space.suggest(trial)
        trial.set_user_attr("schedule", schedule.to_dict())
        trial.set_user_attr("num_inference_steps", schedule.num_inference_steps)
        if "origin" not in trial.user_attrs:
            trial.set_user_attr("origin", "search")
            trial.set_user_attr("label", "")
        speedup = self.speed.predicted_speedup(schedule)
        trial.set_user_attr("predicted_speedup", speedup)
        twin = self._twin(trial)
        if twin is not None:  # the sampler proposed a schedule already scored: same protocol, same result
            return speedup, self._copy_result(trial, twin)
        began = time.perf_counter()
        try:
            samples = generate(self.pipe, self.protocol.replace(num_inference_steps=schedule.num_inference_steps), schedule)
        except QualityError as error:
            trial.set_user_attr("fail_reason", str(error))
            raise
        metrics = {}
        for name, measure in self.measures.items():
            measure.reset()
            metrics[name] = float(measure.score(samples))
        proxy = metrics[self.proxy_name]
        if not math.isfinite(proxy):
            reason = f"{self.proxy_name} is {proxy}: the schedule produced unusable samples"
            trial.set_user_attr("fail_reason", reason)
            raise QualityError(reason)
        trial.set_user_attr("proxy", proxy)
        trial.set_user_attr("proxy_metrics", metrics)
        trial.set_user_attr("sampling_seconds", samples.seconds)
        trial.set_user_attr("trial_seconds", time.perf_counter() - began)
        self._constrain(trial, proxy)
        if self.keep_grids:
            self.grids[trial.number] = self._grid_by_schedule[schedule_key(trial)] = sample_grid_png(samples.images)
        return speedup, proxy

    def _constrain(self, trial, proxy: float) -> None:
        if self.threshold is not None:
            trial.set_constraint("proxy_threshold", proxy - self.threshold)  # feasible when <= 0
            trial.set_user_attr("constraint", proxy - self.threshold)

    def _twin(self, trial):
        """An earlier complete trial with the same schedule (sampling is deterministic), or None."""
        key = schedule_key(trial)
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.number != trial.number and "proxy" in other.user_attrs and schedule_key(other) == key:
                return other
        return None

    def _copy_result(self, trial, twin) -> float:
        proxy = float(twin.user_attrs["proxy"])
        trial.set_user_attr("duplicate_of", twin.number)
        trial.set_user_attr("proxy", proxy)
        trial.set_user_attr("proxy_metrics", twin.user_attrs.get("proxy_metrics", {}))
        trial.set_user_attr("sampling_seconds", 0.0)
        trial.set_user_attr("trial_seconds", 0.0)
        self._constrain(trial, proxy)
        grid = self._grid_by_schedule.get(schedule_key(trial))
        if self.keep_grids and grid is not None:
            self.grids[trial.number] = grid
        return proxy

