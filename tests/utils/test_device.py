"""The one device resolver and the one meaning of half (yolo_asff/utils/device.py)."""
from __future__ import annotations

import pytest
import torch

from yolo_asff.errors import InvalidInputError
from yolo_asff.utils.device import device_problem, fp16_autocast, resolve_device


def test_device_names():
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "CPU", ""):
        assert device_problem(bad) is not None
    with pytest.raises(InvalidInputError, match="--device must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu", "--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_cuda_without_a_gpu_says_so():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(InvalidInputError, match=f"runtime.device {name}: CUDA is not available"):
            resolve_device(name, "runtime.device")


def test_half_is_autocast_on_cuda_only():
    cpu = fp16_autocast(torch.device("cpu"), True)
    with cpu:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    if torch.cuda.is_available():
        with fp16_autocast(torch.device("cuda"), True):
            assert (torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")).dtype == torch.float16
