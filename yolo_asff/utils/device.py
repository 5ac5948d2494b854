"""Where to run, and what "half" means: one resolver for ``auto``/``cpu``/``cuda[:N]`` names, one fp16 rule.

Every tool and engine part takes a device name (the config's ``runtime.device``, a ``--device`` flag)
through :func:`resolve_device`. "Half" means float16 autocast on a CUDA device
(:func:`fp16_autocast`), never converting the caller's model: the weights stay float32, as PyTorch's
automatic mixed precision recipe keeps them.
"""
from __future__ import annotations

import re
from typing import Optional, Union

import torch

from ..errors import InvalidInputError

__all__ = ["DEVICE_PATTERN", "device_problem", "fp16_autocast", "resolve_device"]

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_problem(name: str) -> Optional[str]:
    """What is wrong with the spelling of a device name (the end of a sentence naming it); None when well formed.

    Checks the words only, not the machine, so that a config written for a GPU loads anywhere.
    """
    if DEVICE_PATTERN.fullmatch(name or ""):
        return None
    return f"must be auto, cpu, cuda or cuda:N (e.g. cuda:0), got '{name}'"


def resolve_device(name: Union[str, torch.device, None], option: str = "device") -> torch.device:
    """``auto`` (CUDA when present, else the CPU; also for None), ``cpu``, ``cuda`` or ``cuda:N`` as a torch.device.

    ``auto`` and ``cuda`` give ``torch.device("cuda")`` without an index: the current GPU (under
    torchrun, :func:`~yolo_asff.engine.dist.init_distributed` picks the process's own). ``option`` names the
    setting in messages (``--device``, ``runtime.device``).

    Raises:
        InvalidInputError: (a ValueError) a malformed name, CUDA asked for where it is not available, or a
            GPU index this machine does not have.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip()
    problem = device_problem(name)
    if problem is not None:
        raise InvalidInputError(f"{option} {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"{option} {name}: CUDA is not available here (no GPU, or a CPU-only PyTorch); use "
                                f"{option} cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidInputError(f"{option} {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def fp16_autocast(device: torch.device, half: bool) -> torch.autocast:
    """The context that runs ``half`` inference: float16 autocast on a CUDA device, a no-op elsewhere (the CPU
    has no fast float16 convolutions; callers warn there)."""
    return torch.autocast(device.type, dtype=torch.float16, enabled=half and device.type == "cuda")
