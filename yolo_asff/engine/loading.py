"""A model ready to run from a weights file: the config from the checkpoint itself, or checked against it.

Every tool that runs a trained model (evaluation, the demo, export, benchmarks) goes through
:func:`model_for_weights`: a yolo-asff checkpoint carries its resolved config and class names, so
``--weights`` alone is enough; a config given as well must build the same model (the differing keys
are named), and the input size and normalisation the model was trained with are used unless the
command line sets them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from torch import nn

from ..config import Config, ConfigError, config_from_dict, load_config
from ..io.checkpoint import load_checkpoint
from ..models import build_model
from . import dist
from .anchors import checkpoint_anchors
from .checkpoint import WeightsLoad, is_darknet_file, load_weights_file

__all__ = ["ARCHITECTURE_KEYS", "LoadedModel", "model_for_weights", "opts_keys"]

# model.* keys that change the network (its tensors or what it computes); the others train it.
ARCHITECTURE_KEYS = ("arch", "head", "num_classes", "anchors", "fusion", "fusion_channels", "spp", "rfb", "width",
                     "act")
# What the model was trained to see: used from the checkpoint unless the command line sets them.
TRAINED_INPUT_KEYS = ("test.img_size", "data.letterbox", "data.mean", "data.std")


@dataclass
class LoadedModel:
    """What :func:`model_for_weights` gives: the config, the model with its weights, and the class names."""

    cfg: Config
    model: nn.Module
    weights: Optional[WeightsLoad]
    class_names: Optional[List[str]]
    notes: List[str] = field(default_factory=list)
    category_ids: Optional[List[int]] = None  # the dataset's own category id of each class, where known


def opts_keys(opts: Sequence[str]) -> List[str]:
    """The dotted keys that ``--opts key=value`` items set."""
    return [opt.partition("=")[0].strip() for opt in opts]


def _differences(saved: Mapping[str, Any], cfg: Config) -> Dict[str, tuple]:
    mine = cfg.to_dict()["model"]
    return {f"model.{k}": (saved.get(k), mine.get(k)) for k in ARCHITECTURE_KEYS
            if k in saved and saved.get(k) != mine.get(k)}


def _use_trained_inputs(cfg: Config, saved: Mapping[str, Any], explicit: Sequence[str]) -> List[str]:
    """Set the input size and normalisation the checkpoint was trained with, unless given on the command line."""
    notes = []
    for key in TRAINED_INPUT_KEYS:
        section, name = key.split(".")
        trained = (saved.get(section) or {}).get(name)
        current = getattr(getattr(cfg, section), name)
        if trained is None or key in explicit or trained == current:
            continue
        setattr(getattr(cfg, section), name, trained)
        notes.append(f"{key}: {trained} as the checkpoint was trained (the config says {current}; set it with "
                     "--opts to choose)")
    return notes


def model_for_weights(
    weights: Optional[Union[str, os.PathLike]],
    config: Optional[Union[str, os.PathLike]] = None,
    opts: Sequence[str] = (),
    strict: bool = True,
) -> LoadedModel:
    """Build the model a weights file holds and load it.

    Args:
        weights: a yolo-asff checkpoint, a Darknet file or an official ASFF release; None builds the
            config's model with fresh weights (smoke tests).
        config: a config file or shipped config name; optional for a yolo-asff checkpoint, which
            holds its own.
        opts: ``--opts`` overrides (and tool flags turned into them); the keys they set are never
            replaced by the checkpoint's.
        strict: refuse weights that leave any tensor of the model unloaded (see
            :func:`~yolo_asff.engine.checkpoint.load_weights_file`).

    Raises:
        ConfigError: no config to be had (a Darknet file or a bare state_dict without ``--config``), or
            a config that builds another model than the checkpoint's (naming the differing keys).
        CheckpointError: the weights are missing, unreadable or do not fit.
    """
    given = load_config(config, opts) if config is not None else None  # a wrong config is found first
    saved, names, checkpoint, category_ids, workdir = None, None, None, None, None
    if weights is not None and not is_darknet_file(weights):
        checkpoint = load_checkpoint(weights)
        saved = checkpoint.get("config") if isinstance(checkpoint.get("config"), Mapping) else None
        names = checkpoint.get("class_names") if isinstance(checkpoint.get("class_names"), list) else None
        category_ids = checkpoint.get("category_ids") if isinstance(checkpoint.get("category_ids"), list) else None
        workdir = (checkpoint.get("extra") or {}).get("workdir")
    notes: List[str] = []
    if config is None:
        if saved is None:
            raise ConfigError(f"--config is needed: {weights} holds no config (only yolo-asff checkpoints carry "
                              "their own)" if weights else "--config is needed when no --weights are given")
        cfg = config_from_dict(saved, opts, source=f"{weights} (its saved config)")
        notes += _data_from_workdir(cfg, workdir, opts_keys(opts))
    else:
        cfg = given
        if saved is not None:
            notes += checkpoint_anchors(cfg, saved.get("model") or {})
            differ = _differences(saved.get("model") or {}, cfg)
            if differ:
                listed = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} in the config" for k, (a, b) in differ.items())
                raise ConfigError(f"{config} builds another model than {weights} holds ({listed}). Leave out "
                                  "--config to use the checkpoint's own, or pass the config it was trained with")
            notes += _use_trained_inputs(cfg, saved, opts_keys(opts))
    dist.apply_threads(cfg.runtime.threads)
    model = build_model(cfg)
    loaded = (load_weights_file(model, weights, strict=strict, model_cfg=cfg.to_dict()["model"], checkpoint=checkpoint)
              if weights else None)
    if names is None and saved is not None:
        names = (saved.get("data") or {}).get("class_names")
    return LoadedModel(cfg, model, loaded, list(names) if names else None, notes, category_ids)


def _data_from_workdir(cfg: Config, workdir: Optional[str], explicit: Sequence[str]) -> List[str]:
    """A checkpoint's relative ``data.root`` meant a folder under where it was trained: use that one when it is
    there (run from another folder, the tool would read, or for the built-in data generate, somewhere else)."""
    root = Path(cfg.data.root)
    if workdir is None or root.is_absolute() or "data.root" in explicit:
        return []
    trained = Path(workdir) / root
    if not trained.exists() or trained.resolve() == root.resolve():
        return []
    cfg.data.root = str(trained)
    return [f"data.root: {trained} (the checkpoint's {root}, where it was trained)"]
