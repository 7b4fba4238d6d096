"""Typed, validated settings built once from the Hydra config (``conf/``).

Hydra composes the YAML groups and rejects unknown keys; :meth:`StudyConfig.from_hydra` turns the
result into frozen dataclasses, checking every type and range that needs no model, so a bad value is
one :class:`~autofr.errors.ConfigError` line before anything is loaded or written. Downstream code
takes the section it needs (``config.quality``, ``config.space``), never the whole Hydra config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autofr.errors import ConfigError
from autofr.execution.settings import StorageSettings

SCHEDULERS = ("ddim", "dpmsolver++", "euler", None)
SAMPLERS = ("tpe", "nsga2", "gp", "random")
SPEED_MODELS = ("macs", "latency")
FID_REFERENCES = ("real", "full_compute")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the annotated ``kind`` (int, float, bool, str, tuple[...], X | None, dict)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        last: ConfigError | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                last = error
        raise last or ConfigError(f"{where}={value!r} has the wrong type")
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} must be true or false")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{where}={value!r} must be a whole number")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r} must be a number")
        return float(value)
    if kind is str:
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise ConfigError(f"{where}={value!r} must be a string")
        return str(value)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} must be a list")
        (item,) = typing.get_args(kind)[:1]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}={value!r} must be a mapping")
        return dict(value)
    raise TypeError(f"unsupported setting type {kind!r} for {where}")


def section(cls, node: Mapping[str, Any] | None, prefix: str):
    """Build the settings dataclass ``cls`` from the mapping ``node`` (the ``prefix`` config group)."""
    node = dict(node or {})
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name in node:
            values[spec.name] = _coerce(node[spec.name], hints[spec.name], f"{prefix}.{spec.name}")
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def _choice(value: Any, allowed: tuple, where: str) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed if a is not None)
        raise ConfigError(f"{where}={value!r} is unknown: use one of {shown}")


@dataclass(frozen=True)
class ModelSettings:
    """``model``: which weights, how they are sampled (see conf/model/*.yaml for each key)."""

    name: str
    path: str
    scheduler: str | None = "ddim"
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    num_classes: int | None = None
    prompts: tuple[str, ...] = ()
    resolution: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    feature: str = "inception"
    units: dict | None = None
    call_options: dict | None = None

    def check(self) -> None:
        _choice(self.scheduler, SCHEDULERS, "model.scheduler")
        if self.num_inference_steps < 1:
            raise ConfigError(f"model.num_inference_steps={self.num_inference_steps} must be at least 1")


@dataclass(frozen=True)
class QualitySettings:
    """``quality``: the per-trial proxy, FID-N for confirmation, references and the constraint."""

    proxy: str = "latent_mse"
    proxy_samples: int = 64
    fid_samples: int = 256
    fid_reference: str = "real"
    feature: str = "inception"
    inception_weights: str | None = None
    real_data: str | None = None
    threshold: float | str | None = None
    batch_size: int = 64

    def check(self) -> None:
        _choice(self.fid_reference, FID_REFERENCES, "quality.fid_reference")
        for key in ("proxy_samples", "fid_samples", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"quality.{key}={getattr(self, key)} must be at least 1")


@dataclass(frozen=True)
class SpaceSettings:
    """``space``: how the model's units become search parameters (autofr/search/space.py)."""

    grouping: str = "stage"
    max_interval: int = 6
    offsets: bool = False
    mixing: str = "choice"
    mixing_bias: tuple[float, ...] = (0.2, 0.8)
    mixing_slope: tuple[float, ...] = (5.0, 60.0)
    steps: tuple[int, ...] = ()
    baseline_steps: tuple[int, ...] = ()


@dataclass(frozen=True)
class SamplerSettings:
    """``sampler``: the Optuna sampler and its seed."""

    name: str = "tpe"
    seed: int | None = None
    n_startup_trials: int = 10
    population_size: int = 16

    def check(self) -> None:
        _choice(self.name, SAMPLERS, "sampler.name")


@dataclass(frozen=True)
class TrackingSettings:
    """``tracking``: the MLflow store or server."""

    uri: str
    experiment: str = "autofr"
    log_samples: bool = True


@dataclass(frozen=True)
class SearchSettings:
    """``search``: budget, workers, warm start, confirmation (conf/config.yaml documents each)."""

    n_trials: int = 30
    workers: int = 1
    timeout_s: float | None = None
    warm_start: bool = True
    confirm_top_k: int = 1
    confirm_layers: int = 1
    confirm_proxies: tuple[str, ...] = ()
    confirm_max: int | None = 10
    measure_speed: bool = True
    speed_model: str = "macs"
    progress: bool = True
    target: float | str | None = "5%"
    calibrated_thresholds: tuple[float, ...] = (0.2, 0.4)
    calibrated_steps: tuple[float, ...] = (1.0, 0.7, 0.5)
    calibrated_mixing: tuple[bool, ...] = (False,)
    fidelity: tuple[int, ...] | str | None = "auto"
    fidelity_z: float = 2.0
    fidelity_bootstrap: int = 32
    fid_seeds: int = 2
    timing_repeats: int = 3
    peers: tuple[str, ...] | str | None = "auto"

    @property
    def peer_methods(self) -> tuple[str, ...]:
        """The peer methods to evaluate (``auto``: every one that runs on the model; ``off``: none)."""
        from autofr.peers import resolve_methods

        return resolve_methods(self.peers)

    def check(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"search.n_trials={self.n_trials} must be a whole number >= 1")
        if self.workers < 1:
            raise ConfigError(f"search.workers={self.workers} must be a whole number >= 1")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"search.timeout_s={self.timeout_s} must be positive (or null)")
        for key in ("confirm_top_k", "confirm_layers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.{key}={getattr(self, key)} must be >= 0")
        if self.confirm_max is not None and self.confirm_max < 0:
            raise ConfigError(f"search.confirm_max={self.confirm_max} must be >= 0 (or null: all)")
        _choice(self.speed_model, SPEED_MODELS, "search.speed_model")
        from autofr.target import QualityTarget

        QualityTarget.parse(self.target)
        if isinstance(self.fidelity, str) and self.fidelity not in ("auto", "off"):
            raise ConfigError(f"search.fidelity={self.fidelity!r} must be auto, off or a list of sample counts")
        if isinstance(self.fidelity, tuple) and any(n < 2 for n in self.fidelity):
            raise ConfigError(f"search.fidelity={list(self.fidelity)} must be sample counts >= 2")
        if any(t <= 0 for t in self.calibrated_thresholds) or any(not 0 < f <= 1 for f in self.calibrated_steps):
            raise ConfigError(
                "search.calibrated_thresholds must be > 0 and search.calibrated_steps fractions in (0, 1]"
            )
        for key, low in (("fidelity_z", 0), ("fidelity_bootstrap", 2), ("fid_seeds", 1), ("timing_repeats", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"search.{key}={getattr(self, key)} must be >= {low}")
        from autofr.peers import PEER_CHOICES, PEER_METHODS

        if isinstance(self.peers, str) and self.peers not in PEER_CHOICES:
            raise ConfigError(
                f"search.peers={self.peers!r} must be auto, off or a list of peer methods ({', '.join(PEER_METHODS)})"
            )
        unknown = [name for name in self.peers if name not in PEER_METHODS] if isinstance(self.peers, tuple) else []
        if unknown:
            raise ConfigError(
                f"search.peers names an unknown peer method {unknown[0]!r}: use {', '.join(PEER_METHODS)}"
            )


@dataclass(frozen=True)
class StudyConfig:
    """Everything one ``autofr-search`` run needs, validated."""

    study_name: str
    out_dir: str
    seed: int
    cache_dir: str | None
    model: ModelSettings
    quality: QualitySettings
    space: SpaceSettings
    sampler: SamplerSettings
    storage: StorageSettings
    tracking: TrackingSettings
    search: SearchSettings
    worker_only: bool = False
    tree: dict = field(
        default_factory=dict, repr=False, compare=False
    )  # the composed config, for the MLflow parent run

    @classmethod
    def from_hydra(cls, cfg) -> StudyConfig:
        """From a composed Hydra config (``autofr.cli._config.compose("config", overrides)``)."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            tree = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as error:
            raise ConfigError(f"bad configuration: {' '.join(str(error).split())}") from None
        return cls(
            study_name=_coerce(tree.get("study_name"), str, "study_name"),
            out_dir=_coerce(tree.get("out_dir"), str, "out_dir"),
            seed=_coerce(tree.get("seed", 0), int, "seed"),
            cache_dir=_coerce(tree.get("cache_dir"), str | None, "cache_dir"),
            model=section(ModelSettings, tree.get("model"), "model"),
            quality=section(QualitySettings, tree.get("quality"), "quality"),
            space=section(SpaceSettings, tree.get("space"), "space"),
            sampler=section(SamplerSettings, tree.get("sampler"), "sampler"),
            storage=StorageSettings.from_config(tree.get("storage") or {}),
            tracking=section(TrackingSettings, tree.get("tracking"), "tracking"),
            search=section(SearchSettings, tree.get("search"), "search"),
            worker_only=bool(tree.get("worker_only", False)),
            tree=tree,
        )
