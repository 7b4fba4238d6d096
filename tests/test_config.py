import pytest

from autofr import ConfigError
from autofr.cli._config import compose

PRESETS = [
    "digits_unet",
    "digits_dit",
    "digits_flux",
    "sd15",
    "sdxl",
    "dit_xl_256",
    "pixart_alpha",
    "ddpm_cifar10",
    "flux_dev",
    "flux_schnell",
    "sd35_medium",
    "qwen_image",
    "wan21_t2v_1_3b",
    "sana_1600m",
]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_study_preset_composes(preset):
    cfg = compose("config", [f"study={preset}"])
    assert cfg.model.name in preset or preset.startswith(cfg.model.name)
    assert cfg.model.scheduler in ("ddim", "dpmsolver++", "euler", None)  # None: the checkpoint's own (flow matching)
    assert cfg.quality.feature == ("digits" if preset.startswith("digits") else "inception")


def test_command_line_overrides_beat_presets():
    cfg = compose("config", ["study=sd15", "search.n_trials=7"])
    assert cfg.search.n_trials == 7 and cfg.study_name == "sd15_ddim50"


def test_default_is_the_embedded_digits_unet_on_local_storage():
    cfg = compose("config", [])
    assert cfg.model.path == "digits_unet" and cfg.storage.url is None and cfg.search.n_trials == 40
    assert cfg.tracking.uri.startswith(("sqlite:", "file:", "./", "/")) or "mlruns" in cfg.tracking.uri


@pytest.mark.parametrize(
    "override, fragment",
    [("no_such_key=1", "no_such_key"), ("model=nope", "nope"), ("search.n_trials", "search.n_trials")],
)
def test_bad_override_is_one_line_config_error(override, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        compose("config", [override])
    assert "\n" not in str(error.value)


def test_the_settings_dataclasses_are_the_one_source_of_defaults():
    from autofr.config import SearchSettings, load_study_config

    config = load_study_config([])
    assert config.search == SearchSettings()  # conf/ sets no search key: every default is the dataclass's
    assert config.search.calibrated_thresholds == (0.2, 0.4)


def test_a_sampler_is_its_yaml_file_built_by_instantiate():
    import optuna

    from autofr.config import load_study_config

    for name, cls in (("tpe", optuna.samplers.TPESampler), ("nsga2", optuna.samplers.NSGAIISampler)):
        assert type(load_study_config([f"sampler={name}"]).sampler.build()) is cls
    assert type(load_study_config(["sampler=random"]).sampler.build()) is optuna.samplers.RandomSampler
    with pytest.raises(ConfigError, match="Optuna sampler"):
        load_study_config(["sampler._target_=os.system"])


def test_every_scheduler_the_protocol_runs_is_a_model_scheduler():
    from autofr.config import load_study_config
    from autofr.schedulers import SCHEDULERS

    assert load_study_config(["model.scheduler=unipc"]).model.scheduler == "unipc"
    assert set(SCHEDULERS) >= {"ddim", "dpmsolver++", "euler", "unipc"}
    with pytest.raises(ConfigError, match="model.scheduler='nope' is unknown"):
        load_study_config(["model.scheduler=nope"])


def test_a_value_of_the_wrong_type_is_one_line():
    with pytest.raises(ConfigError, match="search.n_trials") as error:
        compose("config", ["search.n_trials=abc"])
    assert "\n" not in str(error.value) and "Integer" in str(error.value)


def test_nested_settings_get_a_nested_schema():
    from dataclasses import dataclass, field

    from autofr.config import section

    @dataclass(frozen=True)
    class Inner:
        repeats: int = 3
        levels: tuple[int, ...] = (64, 256)

    @dataclass(frozen=True)
    class Outer:
        grouping: str = "stage"
        inner: Inner = field(default_factory=Inner)

    assert section(Outer, {"inner": {"repeats": 5}}, "outer") == Outer(inner=Inner(repeats=5))
    with pytest.raises(ConfigError, match="Integer"):
        section(Outer, {"inner": {"repeats": "x"}}, "outer")
