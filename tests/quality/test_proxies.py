import pytest
import torch

from autofr.errors import QualityError
from autofr.evaluation import SampleBatch, generate
from autofr.quality import build_measure

PAIRED = ("latent_mse", "psnr", "ssim")


def proxies(reference, features):
    measures = {name: build_measure(name, reference=reference) for name in PAIRED}
    measures["kid_small"] = build_measure("kid_small", feature=features, reference=reference)
    return measures


def test_every_proxy_is_perfect_for_the_full_compute_output(full_batch, tiny_features):
    for name, measure in proxies(full_batch, tiny_features).items():
        assert measure.score(full_batch) == 0.0, name
    assert build_measure("psnr", reference=full_batch).score(full_batch) == 0.0


def test_every_proxy_grows_with_fewer_steps(full_batch, fewer_steps_batches, tiny_features):
    for name, measure in proxies(full_batch, tiny_features).items():
        values = [measure.score(batch) for batch in fewer_steps_batches]
        assert 0 < values[0] < values[1] < values[2], (name, values)


def test_every_proxy_grows_with_the_uniform_reuse_interval(tiny_pipe, proxy_protocol, full_batch, tiny_features):
    ReuseSchedule = pytest.importorskip("autofr.schedule").ReuseSchedule
    torch.set_num_threads(1)
    batches = [
        generate(
            tiny_pipe, proxy_protocol, schedule=ReuseSchedule.uniform(tiny_pipe, proxy_protocol.num_inference_steps, m)
        )
        for m in (1, 2, 4)
    ]
    for name, measure in proxies(full_batch, tiny_features).items():
        values = [measure.score(batch) for batch in batches]
        assert values[0] < 1e-9 and values[0] < values[1] < values[2], (name, values)


def test_psnr_reports_decibels_and_a_lower_is_better_objective(full_batch, fewer_steps_batches):
    psnr = build_measure("psnr", reference=full_batch, max_db=60.0)
    psnr.update(fewer_steps_batches[0])
    report = psnr.report()
    assert 0 < report["psnr_db"] < 60
    assert report["psnr"] == pytest.approx(60 - report["psnr_db"])


def test_paired_updates_in_pieces_equal_one_update(full_batch, fewer_steps_batches):
    candidate = fewer_steps_batches[1]
    whole = build_measure("ssim", reference=full_batch).score(candidate)
    pieces = build_measure("ssim", reference=full_batch)
    for start in (0, 5, 11):
        stop = {0: 5, 5: 11, 11: 16}[start]
        pieces.update(SampleBatch(candidate.images[start:stop], candidate.latents[start:stop]))
    assert pieces.compute() == pytest.approx(whole, abs=1e-12)


def test_a_candidate_from_another_protocol_is_rejected(full_batch):
    measure = build_measure("latent_mse", reference=full_batch)
    with pytest.raises(QualityError, match="same evaluation protocol"):
        measure.update(SampleBatch(full_batch.images[:, :, :8], full_batch.latents[:, :, :8]))
    with pytest.raises(QualityError, match="SampleBatch"):
        measure.update(full_batch.images)
