"""Shared fixtures: a tiny class-conditional pipeline, its full-compute samples, degraded samples."""

import pytest
import torch

from autofr.evaluation import EvalProtocol, generate
from tests.quality.tiny_models import TinyFeatures, real_digits, tiny_class_pipeline

PROXY_STEPS = 20


@pytest.fixture(scope="session")
def tiny_pipe():
    return tiny_class_pipeline()


@pytest.fixture(scope="session")
def proxy_protocol():
    return EvalProtocol(num_samples=16, batch_size=8, num_inference_steps=PROXY_STEPS, num_classes=10, seed=3)


@pytest.fixture(scope="session")
def full_batch(tiny_pipe, proxy_protocol):
    torch.set_num_threads(1)
    return generate(tiny_pipe, proxy_protocol)


@pytest.fixture(scope="session")
def fewer_steps_batches(tiny_pipe, proxy_protocol):
    """Samples from the same noise with fewer steps: degradation growing along the list."""
    torch.set_num_threads(1)
    return [generate(tiny_pipe, proxy_protocol.replace(num_inference_steps=steps)) for steps in (10, 5, 2)]


@pytest.fixture(scope="session")
def tiny_features():
    return TinyFeatures()


@pytest.fixture(scope="session")
def digits():
    return real_digits()[0]
