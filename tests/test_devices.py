import pytest
import torch

from autofr import ConfigError
from autofr.devices import check_device_dtype, resolve_device, resolve_dtype


def test_the_cpu_runs_the_usual_dtypes():
    for name in ("float32", "float16", "bfloat16", "torch.float64"):
        device, dtype = check_device_dtype("cpu", name)
        assert device == torch.device("cpu") and dtype.is_floating_point
    assert check_device_dtype(torch.device("cpu"), torch.bfloat16) == (torch.device("cpu"), torch.bfloat16)


@pytest.mark.parametrize("device, fragment", [("gpu", "is not a torch device"), ("cuda:x", "is not a torch device")])
def test_a_device_name_torch_does_not_know(device, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_what_to_use():
    with pytest.raises(ConfigError, match=r"device 'cuda' is not available: .*use model.device=cpu") as error:
        resolve_device("cuda")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_index_past_the_last_device():
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_dtypes_that_cannot_hold_or_run_a_model():
    with pytest.raises(ConfigError, match="not a torch dtype"):
        resolve_dtype("half-ish")
    with pytest.raises(ConfigError, match="not a torch dtype"):
        resolve_dtype("cuda")  # a torch attribute, but not a dtype
    with pytest.raises(ConfigError, match="floating-point"):
        resolve_dtype(torch.int32)
    with pytest.raises(ConfigError, match=r"float8_e5m2 cannot run on cpu .*: use model.dtype=float32"):
        check_device_dtype("cpu", "float8_e5m2")
