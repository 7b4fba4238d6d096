"""Text-to-image end to end through the commands a user runs: a short ``autofr-search`` with a real
study preset on a tiny pipeline saved to a folder (``model.path=DIR``), ``autofr-export``, then
``apply_schedule`` of the exported file on a freshly loaded pipeline.

Two pipelines, built offline (text encoders and tokenizers from configs and a hand-made vocabulary):
a Stable Diffusion one (UNet, DDIM, classifier-free guidance) and a Stable Diffusion 3 one (a
flow-matching MMDiT transformer with joint attention). FID uses the ``pixels`` feature (no weights).
"""

import json
import sys

import pytest
import torch

import autofr
from autofr.cli import export as export_cli
from autofr.cli import search as search_cli
from autofr.models import load_pipeline

from .tiny_t2i import tiny_sd3_pipeline, tiny_sd_pipeline

PIPELINES = {"sd15": tiny_sd_pipeline, "sd35_medium": tiny_sd3_pipeline}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow store for the module: creating its tables takes seconds, so it is made once."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def overrides(root, study: str, *extra: str, tracking: str) -> list[str]:
    return [
        f"study={study}",
        f"model.path={root / 'pipeline'}",
        "model.device=cpu",
        "model.dtype=float32",
        "model.resolution=null",
        "model.num_inference_steps=4",
        "model.prompts=[a photo of a cat,a red house on the beach]",
        "space.steps=[3,4]",
        "space.max_interval=2",
        "space.baseline_steps=[3]",
        "quality.proxy=latent_mse",
        "quality.proxy_samples=2",
        "quality.fid_samples=4",
        "quality.batch_size=2",
        "quality.fid_reference=full_compute",
        "quality.feature=pixels",
        "quality.inception_weights=null",
        "search.n_trials=3",
        "search.speed_model=macs",
        "search.confirm_max=2",
        "search.measure_speed=false",
        "search.progress=false",
        "tracking.log_samples=false",
        f"storage.journal_path={root / 'journal.log'}",
        f"tracking.uri={tracking}",
        f"out_dir={root / 'out'}",
        f"cache_dir={root / 'cache'}",
        f"study_name=tiny_{study}",
        *extra,
    ]


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def searched(request, tmp_path_factory, tracking):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(request.param)
    PIPELINES[request.param](root / "build").save_pretrained(root / "pipeline")
    assert search_cli.main(overrides(root, request.param, tracking=tracking)) == 0
    return request.param, root, tracking


def test_search_export_and_apply_on_a_text_to_image_pipeline(searched, capsys):
    study, root, tracking = searched
    out = root / "schedule.json"
    code = export_cli.main(
        overrides(
            root,
            study,
            "export.policy=best_at_speedup",
            "export.min_speedup=1.0",
            "export.measure=proxy",
            f"export.out={out}",
            tracking=tracking,
        )
    )
    assert code == 0, capsys.readouterr().err
    schedule = json.loads(out.read_text())
    pipe = load_pipeline(str(root / "pipeline"))
    assert schedule["model"]["class_name"] == type(autofr.reuse.resolve_denoiser(pipe)).__name__
    accounting = autofr.apply_schedule(pipe, str(out))
    steps = schedule["num_inference_steps"]
    images = pipe(
        ["a photo of a cat"], num_inference_steps=steps, output_type="pt", generator=torch.Generator().manual_seed(0)
    ).images
    assert torch.isfinite(images).all() and accounting.runs == 1 and accounting.never_fired == []
    autofr.remove_schedule(pipe)


def test_a_missing_transformers_is_one_line_naming_the_extra(searched, monkeypatch, capsys):
    study, root, tracking = searched
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    code = search_cli.main(overrides(root, study, "study_name=without_transformers", tracking=tracking))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "transformers" in err[0] and "autofr[t2i]" in err[0]


@pytest.mark.parametrize(
    "preset", ["flux_dev", "flux_schnell", "sd35_medium", "qwen_image", "wan21_t2v_1_3b", "sana_1600m"]
)
def test_presets_without_weights_fail_in_one_line(preset, tmp_path, tracking, capsys):
    # (quality.feature=pixels: the Inception weights, also absent here, are checked first and fail alike)
    code = search_cli.main(
        [
            f"study={preset}",
            f"model.path={tmp_path / 'absent' / preset}",
            "model.device=cpu",
            "quality.feature=pixels",
            f"storage.journal_path={tmp_path / 'journal.log'}",
            f"tracking.uri={tracking}",
            f"out_dir={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}",
            "search.progress=false",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no diffusers pipeline at" in err[0]
