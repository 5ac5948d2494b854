"""torch.distributed helpers: set-up from torchrun's environment, rank queries, gathering.

Nothing home-made: processes come from ``torchrun``, communication from
``torch.distributed`` (NCCL on GPUs, gloo on CPUs), replication from DDP.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, List

import torch
import torch.distributed as dist

from ..utils.device import resolve_device

__all__ = [
    "init_distributed", "is_distributed", "get_rank", "get_world_size", "is_main_process",
    "all_gather_objects", "apply_threads", "broadcast_object", "cleanup",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); return this process's device.

    ``device`` is the config's ``runtime.device``, read by :func:`~yolo_asff.utils.device.resolve_device`:
    ``auto`` and ``cuda`` take this process's GPU (``LOCAL_RANK``) when CUDA is present (``auto``: else the
    CPU); ``cuda:N`` takes GPU N on one process, and is overridden by ``LOCAL_RANK`` under torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, "runtime.device")
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None or world > 1 else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not is_distributed():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30), device_id=dev if dev.type == "cuda" else None)
    return dev


def apply_threads(threads: int) -> None:
    """``runtime.threads``: torch's intra-op CPU threads (0 leaves PyTorch's choice). On a shared or small
    machine, more threads than free cores make each step wait on the others: measured here, 2 threads
    trained 19x slower than 1 on an oversubscribed 2-core machine."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without torch.distributed)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
