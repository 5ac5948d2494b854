"""Whether weights fit a model, and loading them: one rule, strict or lenient.

:func:`load_weights_file` fills a model from any weights file the package reads: a checkpoint in the
one format (:mod:`yolo_asff.io.checkpoint`) or a bare state_dict, a Darknet file
(:mod:`yolo_asff.io.darknet`) or an official ASFF release (:mod:`yolo_asff.io.official`). It is strict
for everything that runs a model (evaluation, demo, export, benchmark), lenient only for fine-tuning.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..io import official
from ..io.checkpoint import CheckpointError, load_checkpoint
from ..io.darknet import darknet_layers, load_darknet_weights
from ..utils.logging import get_logger
from ..utils.modules import unwrap_model

__all__ = [
    "LoadReport",
    "load_model_weights",
    "WeightsLoad",
    "is_darknet_file",
    "preferred_weights_key",
    "load_weights_file",
    "WeightsMismatchError",
]

PathLike = Union[str, os.PathLike]


class WeightsMismatchError(CheckpointError):
    """Weights that leave tensors of the model unloaded, given where the whole model must come from them."""


_NAMES_SHOWN = 5  # names in a message: a handful, then a count


@dataclass
class LoadReport:
    """What :func:`load_model_weights` did: names of tensors loaded and skipped."""

    loaded: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    @property
    def unloaded(self) -> List[str]:
        """Tensors of the model these weights did not fill (``num_batches_tracked`` counters aside)."""
        missing = [n for n in self.missing if not n.endswith("num_batches_tracked")]
        return self.shape_mismatch + missing

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} tensors"
        if self.shape_mismatch:
            text += f"; skipped {len(self.shape_mismatch)} of another shape: {_few(self.shape_mismatch)}"
        if self.missing:
            text += f"; {len(self.missing)} not in the checkpoint (kept as initialised)"
        if self.unexpected:
            text += f"; {len(self.unexpected)} in the checkpoint but not in the model (ignored)"
        return text


def _few(names: List[str], width: int = 60) -> str:
    """At most a handful of names (each cut to ``width`` characters), then how many more."""
    shown = ", ".join(n[:width] for n in names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


_MODEL_KEYS = ("arch", "head", "num_classes", "width", "fusion", "rfb")


def describe_model(model_cfg: Optional[Mapping[str, Any]]) -> str:
    """``yolov3_asff (head yolov3), 6 classes, width 0.125, fusion on, rfb off`` from a config's model section."""
    if not model_cfg:
        return "unknown (no config in the file)"
    m = dict(model_cfg)
    return (f"{m.get('arch')} (head {m.get('head', 'yolov3')}), {m.get('num_classes')} classes, width "
            f"{m.get('width', 1.0):g}, fusion {'on' if m.get('fusion', True) else 'off'}, "
            f"rfb {'on' if m.get('rfb') else 'off'}")


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
    get_logger("checkpoint").debug("weights: %s", report.summary())  # callers say what they make of it
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
    config: Optional[Dict[str, Any]] = None  # the checkpoint's own config (yolo-asff checkpoints)
    state_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # of a file without a config
    class_names: Optional[List[str]] = None  # the checkpoint's class names (yolo-asff checkpoints)

    def summary(self) -> str:
        """One line: where the weights came from and what was loaded."""
        if self.source == "darknet":
            return f"{self.darknet_layers} Darknet layers"
        return f"{self.source} weights: {self.report.summary()}"


def load_weights_file(
    model: nn.Module, path: PathLike, strict: bool = True, model_cfg: Optional[Mapping[str, Any]] = None,
    checkpoint: Optional[Mapping[str, Any]] = None,
) -> WeightsLoad:
    """Fill ``model`` from a weights file: a Darknet file, a checkpoint / state_dict (its EMA weights when it
    has them), or an official ASFF release (converted on the fly).

    The one rule for whether weights fit: with ``strict`` (everything that runs a model: evaluation, the
    demo, export, benchmarks), weights that leave any tensor of the model unloaded are refused; without
    it (fine-tuning from another dataset's model or an ImageNet backbone) the tensors that fit are loaded
    and the rest are named in the log.

    Args:
        model_cfg: the ``model`` section the model was built from, for the message (what the file holds
            against what the config asks for).
        checkpoint: ``path`` already read with :func:`load_checkpoint` (not read again).

    Raises:
        WeightsMismatchError: ``strict`` and the weights do not cover the model. The message (under 600
            characters) names the checkpoint's model and class count against the config's, a handful of
            tensor names and how many more.
        CheckpointError: the file is missing, unreadable or not weights.
    """
    if is_darknet_file(path):
        loaded = WeightsLoad("darknet", darknet_layers=load_darknet_weights(unwrap_model(model), path))
        total = len(darknet_layers(unwrap_model(model)))
        if strict and loaded.darknet_layers < total:
            raise WeightsMismatchError(
                f"{path} holds {loaded.darknet_layers} of this model's {total} Darknet layers (a backbone such as "
                "darknet53.conv.74 is for fine-tuning with train --weights, not for running a model)")
        return loaded
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path)
    key = preferred_weights_key(checkpoint)
    state = _strip_prefixes(checkpoint[key])
    saved = checkpoint.get("config") if isinstance(checkpoint.get("config"), Mapping) else None
    names = checkpoint.get("class_names") if isinstance(checkpoint.get("class_names"), list) else None
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
        loaded = WeightsLoad(f"official {converted.variant}", hint=hint,
                             report=load_model_weights(model, {"model": converted.state_dict}))
    else:
        loaded = WeightsLoad(key, report=load_model_weights(model, checkpoint, key=key), config=saved,
                             class_names=names, state_shapes={} if saved else {k: tuple(v.shape) for k, v in
                                                                              state.items() if "head" in k})
    if strict and loaded.report.unloaded:
        raise WeightsMismatchError(_mismatch_message(path, loaded, model_cfg))
    return loaded


def _guess(shapes: Mapping[str, Tuple[int, ...]]) -> str:
    """What a state_dict without a config holds, as far as its output convs tell (3 anchors per cell)."""
    outputs = [s[0] for k, s in shapes.items() if re.fullmatch(r"head\.convs\.\d+\.bias", k)]
    if outputs and len(set(outputs)) == 1 and outputs[0] % 3 == 0 and outputs[0] // 3 > 5:
        return f"no config, but output convs for {outputs[0] // 3 - 5} classes"
    return "no config"


def _mismatch_message(path: PathLike, loaded: WeightsLoad, model_cfg: Optional[Mapping[str, Any]]) -> str:
    report = loaded.report
    unloaded = report.unloaded
    total = len(report.loaded) + len(unloaded)
    holds = describe_model(loaded.config.get("model")) if loaded.config else (loaded.source if loaded.hint else
                                                                               _guess(loaded.state_shapes))
    wants = describe_model(model_cfg) if model_cfg is not None else "this model"
    advice = loaded.hint or ("Leave out --config to use the checkpoint's own, or pass the config it was trained "
                             "with" if loaded.config else "Pass the config it was trained with")
    return (f"{path} does not fit the model: {len(unloaded)} of {total} tensors would stay unloaded (e.g. "
            f"{_few(unloaded, width=36)}). The file holds {holds}; the config asks for {wants}. {advice}")
