"""The one checkpoint format: atomic saves and safe loads.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "yolo_asff", "version": 1, "model": state_dict,
     "ema": state_dict | None, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "epoch": int, "iteration": int, "config": dict | None, "class_names": [str] | None,
     "category_ids": [int] | None, "extra": dict}

``config`` (the resolved config) and ``class_names`` make a checkpoint self-contained: the tools
build its model, read its input size and normalisation, and name its classes from it alone.
Whether the weights of a file fit a model is decided above this layer
(:func:`yolo_asff.engine.checkpoint.load_weights_file`).

Only tensors, containers and plain Python values go in, so every file loads with
``torch.load(..., weights_only=True)``: a checkpoint from somebody else cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import YoloAsffError
from ..utils.files import atomic_write
from ..utils.modules import unwrap_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_torch_save",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "yolo_asff"
CHECKPOINT_VERSION = 1
PathLike = Union[str, os.PathLike]


class CheckpointError(YoloAsffError, RuntimeError):
    """A checkpoint file is missing, unreadable or not a checkpoint."""


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` through :func:`~yolo_asff.utils.files.atomic_write`: never half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _state(obj: Any) -> Optional[Dict[str, Any]]:
    return None if obj is None else obj.state_dict()


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    ema: Optional[nn.Module] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Any = None,
    scaler: Any = None,
    epoch: int = 0,
    iteration: int = 0,
    config: Optional[Mapping[str, Any]] = None,
    extra: Optional[Mapping[str, Any]] = None,
    class_names: Optional[List[str]] = None,
    category_ids: Optional[List[int]] = None,
) -> None:
    """Save a checkpoint atomically (see the module docstring for the layout)."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": unwrap_model(model).state_dict(),
        "ema": _state(unwrap_model(ema) if ema is not None else None),
        "optimizer": _state(optimizer),
        "scheduler": _state(scheduler),
        "scaler": _state(scaler),
        "epoch": int(epoch),
        "iteration": int(iteration),
        "config": dict(config) if config is not None else None,
        "class_names": list(class_names) if class_names is not None else None,
        "category_ids": [int(i) for i in category_ids] if category_ids is not None else None,
        "extra": dict(extra or {}),
    }
    atomic_torch_save(checkpoint, path)


def _load_problem(exc: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it unsafely."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds Python objects besides tensors, which are not loaded (unpickling them could run code)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``).

    A bare state_dict (a file holding only ``{name: tensor}``, as many projects
    publish) is returned as ``{"model": state_dict}`` so callers see one layout.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (check the path passed to --weights/--resume)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # the unpickler raises many types for a bad file; all mean the same to a user
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_problem(exc)}. The file is corrupt, truncated, "
                              "or not a PyTorch checkpoint (Darknet .weights files go through load_darknet_weights)."
                              ) from exc
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    raise CheckpointError(f"{path} is not a yolo-asff checkpoint or a state_dict of tensors")

