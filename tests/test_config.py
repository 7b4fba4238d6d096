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
