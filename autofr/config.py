"""Typed, validated settings: the one source of every config key, type and default.

The settings dataclasses below (:class:`ModelSettings`, :class:`SearchSettings`, ...) are the schema:
:func:`register_configs` stores each one's structured config in Hydra's ConfigStore (``_schema/<group>``),
conf/config.yaml puts it under its group first, and the YAML files of ``conf/`` and ``studies/`` set
only what differs. Hydra and OmegaConf reject unknown keys and values of the wrong type;
:meth:`StudyConfig.from_hydra` turns the result into frozen dataclasses and checks every range that
needs no model, so a bad value is one :class:`~autofr.errors.ConfigError` line before anything is
loaded or written (a Hydra app of its own on conf/ calls :func:`register_configs` before
``hydra.main``; :func:`compose` does it). Pluggable parts are built from their node with ``_target_`` and
:func:`hydra.utils.instantiate` (the Optuna sampler: :class:`SamplerSettings`). Downstream code takes
the section it needs (``config.quality``, ``config.space``), never the whole Hydra config.

Configs live in the repository's ``conf/`` (Hydra config groups) and ``studies/`` (study presets,
selected with ``study=<name>``; ``conf/study`` links to it). A built package carries both as
``autofr/_conf/`` (see setup.py). Set ``AUTOFR_CONF_DIR`` to use another ``conf/``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig

from autofr.errors import ConfigError
from autofr.execution.settings import StorageSettings
from autofr.peers import PEER_CHOICES, PEER_METHODS, resolve_methods
from autofr.schedulers import check_scheduler
from autofr.target import QualityTarget

SPEED_MODELS = ("macs", "latency")
FID_REFERENCES = ("real", "full_compute")


#: Where a built package carries conf/ (with studies/ as its ``study`` group); written by setup.py.
PACKAGED_CONF_NAME = "_conf"
_PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """The ``conf/`` directory: ``$AUTOFR_CONF_DIR``, the source checkout's, or the copy in the package.

    A checkout (or an editable install) is recognised by ``pyproject.toml`` and ``conf/config.yaml``
    next to the ``autofr`` package; an installed wheel has ``autofr/_conf/``.
    """
    override = os.environ.get("AUTOFR_CONF_DIR")
    if override:
        if not (Path(override).expanduser() / "config.yaml").is_file():
            raise ConfigError(
                f"AUTOFR_CONF_DIR={override} has no config.yaml: point it at a conf/ directory "
                "like the repository's, or unset it"
            )
        return Path(override).expanduser().resolve()
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    packaged = _PACKAGE_DIR / PACKAGED_CONF_NAME
    if (packaged / "config.yaml").is_file():
        return packaged
    raise ConfigError(
        f"cannot find autofr's conf/ directory (no source checkout around {_PACKAGE_DIR} and no "
        f"packaged {packaged}): reinstall autofr, or set AUTOFR_CONF_DIR to the repository's conf/"
    )


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with ``key=value`` overrides; a bad override is a one-line ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()  # the settings dataclasses as the schema of their groups
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        cause = error.__cause__
        if cause is not None and str(cause).strip():  # what the schema said about the value
            message += f": {str(cause).strip().splitlines()[0]}"
        raise ConfigError(f"bad configuration: {message} (see `--help` for the keys)") from None


def load_study_config(overrides: Sequence[str] = ()) -> StudyConfig:
    """The validated settings of ``autofr-search <overrides>`` (e.g. ``["study=digits_dit", "seed=1"]``): the
    public way for scripts (bench/) to build a study's config."""
    return StudyConfig.from_hydra(compose("config", list(overrides)))


# ---------------------------------------------------------------------- the schema
def _schema_type(kind: Any) -> Any:
    """A settings annotation as OmegaConf types it: ``tuple[X, ...]`` -> ``List[X]``, ``X | None`` ->
    ``Optional[X]``, ``dict`` -> ``Dict[str, Any]``; a union of several types (``float | str``) is ``Any``
    (its :meth:`check` validates it)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        if len(options) == 1:
            return typing.Optional[_schema_type(options[0])]  # noqa: UP045  (OmegaConf reads typing.Optional)
        return Any
    if origin is tuple:
        return typing.List[_schema_type(typing.get_args(kind)[0])]  # noqa: UP006  (OmegaConf reads typing.List)
    if kind is dict or origin is dict:
        return typing.Dict[str, Any]  # noqa: UP006
    if dataclasses.is_dataclass(kind):  # a nested settings dataclass: its own schema
        return schema(kind)
    return kind


def _plain(value: Any) -> Any:
    """A default as OmegaConf holds it (tuples as lists, nested settings as their schema)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return schema(type(value))(**{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def schema(cls) -> type:
    """The structured config (Hydra's schema) of the settings dataclass ``cls``: the same fields, types and
    defaults in the types OmegaConf knows. Registered in Hydra's ConfigStore by :func:`register_configs`."""
    hints = typing.get_type_hints(cls)
    fields = []
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            default = spec.default
            if isinstance(default, (tuple, dict)) or dataclasses.is_dataclass(default):
                default = field(default_factory=lambda value=default: _plain(value))
        elif spec.default_factory is not dataclasses.MISSING:
            default = field(default_factory=lambda make=spec.default_factory: _plain(make()))
        else:
            default = field(default=MISSING)
        fields.append((spec.name, _schema_type(hints[spec.name]), default))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


SCHEMA_GROUP = "_schema"


def register_configs() -> None:
    """Store the schema of every settings group in Hydra's ConfigStore as ``_schema/<group>`` (option
    ``settings``); conf/config.yaml and conf/sample.yaml put each under its group before the YAML options."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, settings in SCHEMAS.items():
        store.store(group=f"{SCHEMA_GROUP}/{group}", name="settings", node=schema(settings))


def _frozen(value: Any, kind: Any, where: str) -> Any:
    """A validated config value as the settings field holds it (lists as tuples where the field is a tuple)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        if len(options) == 1:  # X | None: typed by OmegaConf already
            return _frozen(value, options[0], where)
        if isinstance(value, list):
            listed = next((option for option in options if typing.get_origin(option) is tuple), None)
            if listed is None:
                raise ConfigError(f"{where}={value!r} must not be a list")
            return _frozen(value, listed, where)
        for option in options:  # a scalar of a several-type field: it must be one of them
            if option in (int, float, str) and isinstance(value, option) and not isinstance(value, bool):
                return value
            if option is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
        raise ConfigError(f"{where}={value!r} has the wrong type")
    if dataclasses.is_dataclass(kind):  # a nested settings dataclass
        return section(kind, value, where)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if item is Any or typing.get_origin(item) is not None:
            return tuple(value)
        wrong = [v for v in value if isinstance(v, bool) != (item is bool) or not isinstance(v, (item, int))]
        if wrong:
            raise ConfigError(f"{where}={value!r} must be a list of {item.__name__} values")
        return tuple(item(v) for v in value)
    return value


def section(cls, node: Mapping[str, Any] | None, prefix: str):
    """Build the settings dataclass ``cls`` from the mapping ``node`` (the ``prefix`` config group), typed
    by its schema (OmegaConf converts and checks each value; keys ``cls`` does not have are ignored)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    names = {spec.name for spec in dataclasses.fields(cls)}
    given = {key: value for key, value in dict(node or {}).items() if key in names}
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema(cls)), given)
        values = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"bad {prefix} setting: {message}") from None
    hints = typing.get_type_hints(cls)
    settings = cls(**{key: _frozen(value, hints[key], f"{prefix}.{key}") for key, value in values.items()})
    return _checked(settings)


def _checked(settings):
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
    """``model``: which weights, how they are sampled; each conf/model/<name>.yaml sets what differs."""

    name: str  # the study's and the reference cache's name for the model (mandatory)
    path: str  # embedded name, a local diffusers directory, or a hub id in the HF cache (mandatory)
    scheduler: str | None = "ddim"  # a name of autofr.schedulers.SCHEDULERS; null: the checkpoint's own
    num_inference_steps: int = 50
    guidance_scale: float | None = None  # classifier-free guidance scale; null: the pipeline's default
    num_classes: int | None = None  # class-conditional: sample i gets label i % num_classes
    prompts: tuple[str, ...] = ()  # text models: sample i gets prompts[i % len(prompts)]
    resolution: int | None = None  # output size in pixels; null: the model's native size
    dtype: str = "float32"  # float32 | float16 | bfloat16
    device: str = "cuda"  # cpu | cuda | cuda:N | mps
    feature: str = "inception"  # FID/KID feature extractor: digits | inception
    # unit-discovery rules (README, "The feature-reuse engine"); empty: the rule table alone.
    # include: module-path pattern -> kind for modules the table does not find; exclude: module-path
    # patterns the table finds no units in; kinds: per kind, false drops it (context_feed_forward: false),
    # output/residual sets the cache
    units: dict | None = field(default_factory=lambda: {"include": {}, "exclude": [], "kinds": {}})
    call_options: dict | None = field(
        default_factory=dict
    )  # extra pipeline arguments, e.g. {max_sequence_length: 512}

    def check(self) -> None:
        check_scheduler(self.scheduler)
        if self.num_inference_steps < 1:
            raise ConfigError(f"model.num_inference_steps={self.num_inference_steps} must be at least 1")


@dataclass(frozen=True)
class QualitySettings:
    """``quality``: the per-trial proxy, FID-N for confirmation, references and the constraint."""

    proxy: str = "latent_mse"  # per-trial objective (lower is better): latent_mse | psnr | ssim | kid_small | fid_real
    proxy_samples: int = 64  # samples per trial for the proxy (same seeds for every trial)
    fid_samples: int = 256  # samples for confirming candidates with FID (FID-N: compare at equal N only)
    fid_reference: str = "real"  # real (the real data) | full_compute (the model's own full-compute samples)
    feature: str = "inception"  # FID/KID feature extractor: digits | inception
    inception_weights: str | None = None  # real models: local path of the FID Inception weights
    real_data: str | None = None  # real models: folder of images or .npz with mu/sigma
    # constraint: trials with proxy above this are infeasible; a value, or 1.2x = 1.2 x full compute's (fid_real)
    threshold: float | str | None = None
    batch_size: int = 64

    def check(self) -> None:
        _choice(self.fid_reference, FID_REFERENCES, "quality.fid_reference")
        for key in ("proxy_samples", "fid_samples", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"quality.{key}={getattr(self, key)} must be at least 1")


@dataclass(frozen=True)
class SpaceSettings:
    """``space``: how the model's units become search parameters (autofr/search/space.py). The defaults
    are these; ``conf/space/*.yaml`` and the study presets set what differs."""

    grouping: str = "stage"  # unit | stage | kind | global: sub-layer units sharing one schedule
    max_interval: int = 6  # reuse interval per group in 1..max_interval (calibrated: reuses in a row < it)
    offsets: bool = False  # also search a keyframe offset per group
    mixing: str = "choice"  # choice | on | off: FRDiff score mixing
    mixing_bias: tuple[float, ...] = (0.2, 0.8)
    mixing_slope: tuple[float, ...] = (5.0, 60.0)
    steps: tuple[int, ...] = ()  # sampling step counts that compete; () = the model's own only
    baseline_steps: tuple[int, ...] = ()  # warm start: full compute at these step counts (those in steps)
    # unit levels a trial may reuse at (one per trial): the whole block stack, blocks (UNet stages), sub-layers
    levels: tuple[str, ...] = ("stack", "block", "sublayer")
    timing: str = "choice"  # uniform (every M steps) | calibrated (keyframes where change accumulates) | choice
    # calibrated timing: accumulated-error threshold per group (log scale; the bottom of the range never reuses)
    threshold: tuple[float, ...] = (0.005, 2.0)
    warmup: tuple[float, ...] = (0.0, 0.4)  # calibrated timing: share of the first steps that always compute


@dataclass(frozen=True)
class SamplerSettings:
    """``sampler``: the Optuna sampler, as its config node: ``_target_`` (an Optuna sampler class) and
    the keyword arguments it is built with by :func:`hydra.utils.instantiate` (conf/sampler/*.yaml: a new
    sampler is one file there)."""

    node: dict = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "multivariate": True})

    @property
    def name(self) -> str:
        """The sampler's class name (``TPESampler``)."""
        return str(self.node.get("_target_", "")).rsplit(".", 1)[-1]

    def check(self) -> None:
        target = self.node.get("_target_")
        if not isinstance(target, str) or not target.startswith("optuna.samplers."):
            raise ConfigError(
                f"sampler._target_={target!r} must name an Optuna sampler class, e.g. optuna.samplers.TPESampler "
                "(or pick one: sampler=tpe, nsga2, gp, random)"
            )

    def build(self):
        """The sampler (an ``optuna.samplers.BaseSampler``); a bad argument is a one-line ConfigError."""
        from hydra.errors import HydraException
        from hydra.utils import instantiate

        try:
            return instantiate(self.node, _convert_="all")
        except (HydraException, TypeError, ValueError, ImportError) as error:
            message = " ".join(str(error).split())
            raise ConfigError(f"cannot build the sampler {self.node.get('_target_')}: {message}") from None


@dataclass(frozen=True)
class TrackingSettings:
    """``tracking``: the MLflow store or server."""

    uri: str  # the MLflow store (sqlite:///..., a folder) or server (http://...)
    experiment: str = "autofr"
    log_samples: bool = True  # a small sample grid per trial


@dataclass(frozen=True)
class SearchSettings:
    """``search``: budget, workers, warm start, confirmation. The defaults are these; a study preset
    (studies/*.yaml) or an override (``search.n_trials=100``) sets what differs."""

    n_trials: int = 40  # global budget: completed trials across all workers
    workers: int = 1  # local worker processes sharing the study
    timeout_s: float | None = None  # stop asking new trials after this many seconds
    # enqueue full compute, FRDiff M=2,3,4 (+/- mixing), fewer steps, DeepCache-style, calibrated
    warm_start: bool = True
    confirm_top_k: int = 1  # besides the deciding candidates, confirm this many best-proxy trials with FID
    confirm_layers: int = 1  # confirm this many non-dominated layers of the proxy front (2+: the proxy is noisy)
    confirm_proxies: tuple[
        str, ...
    ] = ()  # also confirm the (speed, metric) fronts of these metrics, e.g. [latent_mse]
    confirm_max: int | None = 10  # at most this many FID confirmations per run (the deciding ones first); null: all
    measure_speed: bool = True  # time confirmed schedules interleaved with full compute
    speed_model: str = "latency"  # latency (every unit level timed once per machine and model) | macs
    progress: bool = True
    # the quality you accept: 5% (FID within 5% of full compute's), 1.05x, or an absolute FID-N
    target: float | str | None = "5%"
    # calibrated warm start: reuse while a group's accumulated change stays below each threshold, at these
    # fractions of the model's step count (nearest in space.steps), without (and with: [false, true])
    # FRDiff's score mixing
    calibrated_thresholds: tuple[float, ...] = (0.2, 0.4)
    calibrated_steps: tuple[float, ...] = (1.0, 0.7, 0.5)
    calibrated_mixing: tuple[bool, ...] = (False,)
    # adaptive fidelity (fid_real proxy): auto = proxy_samples x 1, 4, 16 up to fid_samples; a list of sample
    # counts; off = every trial on proxy_samples (quality.threshold then constrains)
    fidelity: tuple[int, ...] | str | None = "auto"
    fidelity_z: float = 2.0  # climb to more samples while the estimate is within this many sd of the limit
    fidelity_bootstrap: int = 32  # paired bootstrap draws that measure each score's noise
    fid_seeds: int = 2  # FID-N seeds per confirmation (paired: the same noise for every candidate at a seed)
    # repeats of the one timing run: every confirmed schedule, blocks bracketed by full compute (median)
    timing_repeats: int = 3
    # other libraries' caches as baselines, in this study's protocol (measured speed, same FID): auto = every
    # one that runs on the model (diffusers' enable_cache caches; cache-dit's DBCache with autofr[peers]);
    # off or [] = none; or a list, e.g. [first_block_cache, mag_cache, dbcache]
    peers: tuple[str, ...] | str | None = "auto"
    # the whole study's device time (trials, peers, confirmation, timing; all workers together): the plan is
    # cut to fit (confirmation set, FID seeds, fidelity levels, trials) and the study stops cleanly at it
    max_device_hours: float | None = None
    fid_slice: int | None = None  # samples per FID work item (any worker takes one); null: two batches

    @property
    def peer_methods(self) -> tuple[str, ...]:
        """The peer methods to evaluate (``auto``: every one that runs on the model; ``off``: none)."""
        return resolve_methods(self.peers)

    def check(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"search.n_trials={self.n_trials} must be a whole number >= 1")
        if self.workers < 1:
            raise ConfigError(f"search.workers={self.workers} must be a whole number >= 1")
        if self.max_device_hours is not None and not self.max_device_hours > 0:
            raise ConfigError(f"search.max_device_hours={self.max_device_hours} must be positive (or null: no budget)")
        if self.fid_slice is not None and self.fid_slice < 2:
            raise ConfigError(f"search.fid_slice={self.fid_slice} must be at least 2 samples (or null: two batches)")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"search.timeout_s={self.timeout_s} must be positive (or null)")
        for key in ("confirm_top_k", "confirm_layers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.{key}={getattr(self, key)} must be >= 0")
        if self.confirm_max is not None and self.confirm_max < 0:
            raise ConfigError(f"search.confirm_max={self.confirm_max} must be >= 0 (or null: all)")
        _choice(self.speed_model, SPEED_MODELS, "search.speed_model")
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
        if isinstance(self.peers, str) and self.peers not in PEER_CHOICES:
            raise ConfigError(
                f"search.peers={self.peers!r} must be auto, off or a list of peer methods ({', '.join(PEER_METHODS)})"
            )
        unknown = [name for name in self.peers if name not in PEER_METHODS] if isinstance(self.peers, tuple) else []
        if unknown:
            raise ConfigError(
                f"search.peers names an unknown peer method {unknown[0]!r}: use {', '.join(PEER_METHODS)}"
            )


#: Config groups whose keys, types and defaults are a settings dataclass (the YAML files set what differs).
SCHEMAS = {
    "model": ModelSettings,
    "quality": QualitySettings,
    "space": SpaceSettings,
    "tracking": TrackingSettings,
    "search": SearchSettings,
    "storage": StorageSettings,
}


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
        seed, cache_dir = tree.get("seed", 0), tree.get("cache_dir")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} must be a whole number")
        for key in ("study_name", "out_dir"):
            if not isinstance(tree.get(key), (str, int)) or isinstance(tree.get(key), bool):
                raise ConfigError(f"{key}={tree.get(key)!r} must be a string")
        return cls(
            study_name=str(tree["study_name"]),
            out_dir=str(tree["out_dir"]),
            seed=seed,
            cache_dir=None if cache_dir is None else str(cache_dir),
            model=section(ModelSettings, tree.get("model"), "model"),
            quality=section(QualitySettings, tree.get("quality"), "quality"),
            space=section(SpaceSettings, tree.get("space"), "space"),
            sampler=_checked(SamplerSettings(node=dict(tree.get("sampler") or {}))),
            storage=StorageSettings.from_config(tree.get("storage") or {}),
            tracking=section(TrackingSettings, tree.get("tracking"), "tracking"),
            search=section(SearchSettings, tree.get("search"), "search"),
            worker_only=bool(tree.get("worker_only", False)),
            tree=tree,
        )
