"""The one checkpoint format: atomic saves, safe loads, tolerant weight loading.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "yolo_asff", "version": 1, "model": state_dict,
     "ema": state_dict | None, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "epoch": int, "iteration": int, "config": dict | None, "extra": dict}

Only tensors, containers and plain Python values go in, so every file loads with
``torch.load(..., weights_only=True)``: a checkpoint from somebody else cannot run code.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import YoloAsffError
from ..io import official
from ..io.darknet import load_darknet_weights
from ..utils.files import atomic_write
from ..utils.logging import get_logger

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "LoadReport",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "atomic_torch_save",
    "unwrap_model",
    "WeightsLoad",
    "is_darknet_file",
    "preferred_weights_key",
    "load_weights_file",
]

CHECKPOINT_FORMAT = "yolo_asff"
CHECKPOINT_VERSION = 1
PathLike = Union[str, os.PathLike]


class CheckpointError(YoloAsffError, RuntimeError):
    """A checkpoint file is missing, unreadable or not a checkpoint."""


@dataclass
class LoadReport:
    """What :func:`load_model_weights` did: names of tensors loaded and skipped."""

    loaded: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} tensors"
        if self.shape_mismatch:
            text += f"; skipped {len(self.shape_mismatch)} of another shape: {', '.join(self.shape_mismatch)}"
        if self.missing:
            text += f"; {len(self.missing)} not in the checkpoint (kept as initialised)"
        if self.unexpected:
            text += f"; {len(self.unexpected)} in the checkpoint but not in the model (ignored)"
        return text


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


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
        "extra": dict(extra or {}),
    }
    atomic_torch_save(checkpoint, path)


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
        raise CheckpointError(
            f"cannot read checkpoint {path}: {exc}. The file is corrupt, truncated, or not a PyTorch "
            "checkpoint (Darknet .weights files go through load_darknet_weights)."
        ) from exc
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    raise CheckpointError(f"{path} is not a yolo-asff checkpoint or a state_dict of tensors")


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from every key."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_model_weights(
    model: nn.Module, source: Union[PathLike, Mapping[str, Any]], key: str = "model"
) -> LoadReport:
    """Load every tensor of a checkpoint that fits ``model``; report the rest.

    ``source`` is a checkpoint path, a checkpoint dict or a state_dict. ``key``
    picks ``"model"`` or ``"ema"`` weights from a checkpoint. Tensors whose shape
    differs (e.g. output convs after a change of class count) are skipped and
    named in the report and the log, so fine-tuning on another dataset just works.
    """
    if isinstance(source, (str, os.PathLike)):
        source = load_checkpoint(source)
    state = source.get(key) if isinstance(source.get(key), Mapping) else source
    if state is None or not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint has no {key!r} weights")
    state = _strip_prefixes(state)
    target = unwrap_model(model).state_dict()
    report = LoadReport()
    to_load = {}
    for name, tensor in state.items():
        if name not in target:
            report.unexpected.append(name)
        elif target[name].shape != tensor.shape:
            report.shape_mismatch.append(name)
        else:
            to_load[name] = tensor
            report.loaded.append(name)
    report.missing = [name for name in target if name not in state]
    unwrap_model(model).load_state_dict(to_load, strict=False)
    log = get_logger("checkpoint")
    log.info("weights: %s", report.summary())
    return report


_DARKNET_NAME = re.compile(r"\.(weights|conv\.\d+)$", re.IGNORECASE)


def is_darknet_file(path: PathLike) -> bool:
    """Whether ``path`` is named like a Darknet weights file (``*.weights``, ``darknet53.conv.74``)."""
    return bool(_DARKNET_NAME.search(Path(path).name))


def preferred_weights_key(checkpoint: Mapping[str, Any]) -> str:
    """``"ema"`` when the checkpoint holds EMA weights (the better model), else ``"model"``."""
    return "ema" if isinstance(checkpoint.get("ema"), Mapping) and checkpoint["ema"] else "model"


@dataclass
class WeightsLoad:
    """What :func:`load_weights_file` loaded: ``source`` is ``darknet``, ``ema``, ``model`` or
    ``official <variant>`` (a release of the official ASFF code, converted on the fly)."""

    source: str
    report: Optional[LoadReport] = None  # checkpoints: tensors loaded and skipped
    darknet_layers: int = 0  # Darknet files: layers loaded
    hint: str = ""  # what to do when the weights do not fit the model


def load_weights_file(model: nn.Module, path: PathLike) -> WeightsLoad:
    """Fill ``model`` from a weights file: a Darknet file, a checkpoint / state_dict (its EMA weights
    when it has them), or an official ASFF release (converted on the fly). Tensors of another shape
    are skipped and reported; each caller decides whether that is acceptable (fine-tuning) or not
    (evaluation)."""
    if is_darknet_file(path):
        return WeightsLoad("darknet", darknet_layers=load_darknet_weights(unwrap_model(model), path))
    checkpoint = load_checkpoint(path)
    key = preferred_weights_key(checkpoint)
    state = _strip_prefixes(checkpoint[key])
    if official.looks_official(state):
        try:
            converted = official.convert_official_state_dict(state)
        except official.OfficialCheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        config = Path("configs", "official", official.OFFICIAL_VARIANTS[converted.variant])
        classes = f" --opts model.num_classes={converted.num_classes}" if converted.num_classes != 80 else ""
        hint = f"{path} is an official ASFF {converted.variant} checkpoint: use --config {config}{classes}"
        get_logger("checkpoint").info("%s: official ASFF %s checkpoint (%s), converted on the fly",
                                      path, converted.variant, str(converted.source_dtype).replace("torch.", ""))
        report = load_model_weights(model, {"model": converted.state_dict})
        return WeightsLoad(f"official {converted.variant}", report=report, hint=hint)
    return WeightsLoad(key, report=load_model_weights(model, checkpoint, key=key))
