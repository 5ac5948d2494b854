"""The official ASFF checkpoints (GOATmessi7/ASFF releases): recognise, convert, compare.

The official code builds its detector as one ``module_list`` wired by index, plus
``level_{0,1,2}_fusion`` / ``level_{0,1,2}_header`` modules (level 0 = stride 32). Its
released files are plain state_dicts (fp16 when trained with ``--half``). Three variants
exist, told apart by their keys (``tests/io/official_asff_state_dicts.txt``; README, "Official ASFF checkpoints"):

========== =================================== ====================================
variant    what                                our config
========== =================================== ====================================
baseline   YOLOv3 + freebies, no fusion        ``configs/official/yolov3_baseline_coco.yaml``
asff       YOLOv3 + ASFF                       ``configs/official/yolov3_asff_coco.yaml``
asff_rfb   YOLOv3 + ASFF* (RFB, DropBlock)      ``configs/official/yolov3_asff_star_coco.yaml``
========== =================================== ====================================

:func:`convert_official_state_dict` renames every tensor onto our modules (and checks
that nothing is left over or missing); :func:`to_official_layout` reorders our decoded
predictions into the official output layout, for comparing the two codes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import YoloAsffError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "OFFICIAL_VARIANTS",
    "OfficialCheckpointError",
    "OfficialConversion",
    "official_config_path",
    "official_key_map",
    "detect_official_variant",
    "unwrap_official_state_dict",
    "looks_official",
    "convert_official_state_dict",
    "to_official_layout",
    "build_official_model",
    "convert_official_checkpoint",
]

# variant -> our config file under configs/official/
OFFICIAL_VARIANTS: Dict[str, str] = {
    "baseline": "yolov3_baseline_coco.yaml",
    "asff": "yolov3_asff_coco.yaml",
    "asff_rfb": "yolov3_asff_star_coco.yaml",
}
_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "official"

_BN_PARTS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# Darknet-53 in the official module_list: downsampling convs and residual stacks (stage, units).
_BACKBONE_CONVS = {0: "backbone.stem", 1: "backbone.stages.0.0", 3: "backbone.stages.1.0",
                   5: "backbone.stages.2.0", 7: "backbone.stages.3.0", 9: "backbone.stages.4.0"}
_BACKBONE_RES = {2: (0, 1), 4: (1, 2), 6: (2, 8), 8: (3, 8), 10: (4, 4)}
# The ASFF pyramid's level 0 (stride 32) is the same in all three variants.
_LEVEL0 = {12: "pyramid.level0_in.1", 14: "pyramid.level0_mid.0", 15: "pyramid.level0_mid.1",
           17: "pyramid.level0_out"}
# Per variant: module_list index -> our CBL; pairs (a one-unit "resblock" without shortcut) -> our ConvPair;
# guided heads inside module_list (baseline only) -> our head level (stride-ascending).
_CBLS = {
    "asff": {**_LEVEL0, 18: "pyramid.lateral1", 20: "pyramid.level1_mid.0", 21: "pyramid.level1_mid.1",
             24: "pyramid.level1_out.1", 25: "pyramid.lateral2", 27: "pyramid.level2_mid.0",
             28: "pyramid.level2_mid.1", 31: "pyramid.level2_out.1", 32: "pyramid.level2_out.2"},
    "baseline": {**_LEVEL0, 18: "fusion.expand32", 20: "pyramid.lateral1", 22: "pyramid.level1_mid.0",
                 23: "pyramid.level1_mid.1", 26: "pyramid.level1_out.1", 27: "fusion.expand16",
                 29: "pyramid.lateral2", 31: "pyramid.level2_mid.0", 32: "pyramid.level2_mid.1",
                 35: "pyramid.level2_out.1", 36: "pyramid.level2_out.2"},
}
_PAIRS = {
    "asff": {11: "pyramid.level0_in.0", 23: "pyramid.level1_out.0", 30: "pyramid.level2_out.0"},
    "baseline": {11: "pyramid.level0_in.0", 25: "pyramid.level1_out.0", 34: "pyramid.level2_out.0"},
}
_MODULE_HEADS = {"asff": {}, "baseline": {19: 2, 28: 1, 37: 0}}
# level_{l}_fusion submodules (paper level l = our fusion.levels[2 - l]).
_FUSION_PARTS = {
    0: {"stride_level_1": "resize.1", "stride_level_2": "resize.2.1", "expand": "expand"},
    1: {"compress_level_0": "resize.0.conv", "stride_level_2": "resize.2", "expand": "expand"},
    2: {"compress_level_0": "resize.0.conv", "expand": "expand"},
}
_RFB_CONVS = {0: 1, 1: 2, 2: 3, 3: 3}  # RFB branch -> number of convs


class OfficialCheckpointError(YoloAsffError, ValueError):
    """A file is not an official ASFF checkpoint we can convert; the message says why and what to do."""


class OfficialConversion(NamedTuple):
    """Result of :func:`convert_official_state_dict`."""

    variant: str  # baseline, asff or asff_rfb
    num_classes: int
    state_dict: Dict[str, Tensor]  # our key names, float32 (num_batches_tracked stays int64)
    source_dtype: torch.dtype  # the floating dtype the file held (float16 for --half releases)


def official_config_path(variant: str) -> Path:
    """Our config file for an official variant."""
    return _CONFIG_DIR / OFFICIAL_VARIANTS[variant]


def _cbl(official: str, ours: str) -> Dict[str, str]:
    table = {f"{official}.conv.weight": f"{ours}.conv.weight"}
    table.update({f"{official}.batch_norm.{p}": f"{ours}.bn.{p}" for p in _BN_PARTS})
    return table


def _pair(official: str, ours: str) -> Dict[str, str]:
    return {**_cbl(f"{official}.module_list.0.0", f"{ours}.reduce"),
            **_cbl(f"{official}.module_list.0.1", f"{ours}.expand")}


def _header(official: str, level: int, rfb: bool) -> Dict[str, str]:
    ours = f"head.levels.{level}"
    table = {}
    for official_name, our_name in (("guide_wh", "guide_wh"), ("Feature_adaption.conv_offset", "adaption.conv_offset"),
                                    ("Feature_adaption.dconv", "adaption.dconv"), ("conv", "conv")):
        for p in ("weight", "bias"):
            table[f"{official}.{official_name}.{p}"] = f"{ours}.{our_name}.{p}"
    if rfb:
        for branch, convs in _RFB_CONVS.items():
            for i in range(convs):
                for p in ("weight", "bias"):
                    table[f"{official}.Feature_adaption.rfb.branch_{branch}.{i}.{p}"] = (
                        f"{ours}.adaption.rfb.branches.{branch}.{i}.{p}")
    return table


def official_key_map(variant: str) -> Dict[str, str]:
    """Every key of an official ``variant`` state_dict → the name of the same tensor in our model."""
    if variant not in OFFICIAL_VARIANTS:
        raise ValueError(f"unknown official variant {variant!r}; one of {sorted(OFFICIAL_VARIANTS)}")
    layout = "baseline" if variant == "baseline" else "asff"
    table: Dict[str, str] = {}
    for index, ours in _BACKBONE_CONVS.items():
        table.update(_cbl(f"module_list.{index}", ours))
    for index, (stage, units) in _BACKBONE_RES.items():
        for unit in range(units):
            official = f"module_list.{index}.module_list.{unit}"
            ours = f"backbone.stages.{stage}.{unit + 1}"
            table.update(_cbl(f"{official}.0", f"{ours}.reduce"))
            table.update(_cbl(f"{official}.1", f"{ours}.expand"))
    for index, ours in _CBLS[layout].items():
        table.update(_cbl(f"module_list.{index}", ours))
    for index, ours in _PAIRS[layout].items():
        table.update(_pair(f"module_list.{index}", ours))
    for index, level in _MODULE_HEADS[layout].items():
        table.update(_header(f"module_list.{index}", level, rfb=False))
    if layout == "asff":
        rfb = variant == "asff_rfb"
        for paper_level, parts in _FUSION_PARTS.items():
            official, ours = f"level_{paper_level}_fusion", f"fusion.levels.{2 - paper_level}"
            for name, our_name in parts.items():
                table.update(_cbl(f"{official}.{name}", f"{ours}.{our_name}"))
            for k in range(3):
                table.update(_cbl(f"{official}.weight_level_{k}", f"{ours}.weight_convs.{k}"))
            for p in ("weight", "bias"):
                table[f"{official}.weight_levels.{p}"] = f"{ours}.weight_logits.{p}"
            table.update(_header(f"level_{paper_level}_header", 2 - paper_level, rfb))
    return table


def unwrap_official_state_dict(obj: Any) -> Dict[str, Tensor]:
    """The plain state_dict inside ``obj``: accepts a ``{'model': ...}`` wrapper and ``module.``
    prefixes (DataParallel / DistributedDataParallel saves)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise OfficialCheckpointError("the file holds no state_dict (expected a mapping of tensor names to tensors)")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise OfficialCheckpointError(f"entry {key!r} is not a tensor; an official checkpoint holds tensors only")
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def looks_official(state: Mapping[str, Any]) -> bool:
    """Whether a (prefix-stripped) state_dict uses the official code's names (``module_list.N``, ``level_N_*``)."""
    return any(re.match(r"(module_list\.\d+\.|level_[012]_(fusion|header)\.)", k) for k in state)


def detect_official_variant(state: Mapping[str, Tensor]) -> str:
    """``baseline``, ``asff`` or ``asff_rfb`` from the keys of an official state_dict, or raise."""
    if "level_0_fusion.weight_levels.weight" in state and "level_0_header.conv.weight" in state:
        return "asff_rfb" if any(".Feature_adaption.rfb." in k for k in state) else "asff"
    if "module_list.19.guide_wh.weight" in state and "module_list.37.conv.weight" in state:
        return "baseline"
    if looks_official(state):
        raise OfficialCheckpointError(
            "the keys look like the official ASFF code's, but not like any of its three released models "
            "(no level_0_fusion/level_0_header for ASFF, no module_list.19 guided head for the baseline); "
            "only yolov3_baseline, yolov3_asff and yolov3_asff_rfb checkpoints can be converted")
    raise OfficialCheckpointError(
        f"not an official ASFF checkpoint: its first key is {next(iter(state))!r}, where an official file "
        "starts with module_list.0.conv.weight")


def _num_classes(state: Mapping[str, Tensor], variant: str) -> int:
    key = "module_list.19.conv.weight" if variant == "baseline" else "level_0_header.conv.weight"
    channels = state[key].shape[0]
    slots = state[key.replace("conv.weight", "guide_wh.weight")].shape[0] // 2
    if channels % slots or channels // slots <= 5:
        raise OfficialCheckpointError(f"{key} has {channels} output channels, not {slots} × (5 + classes)")
    return channels // slots - 5


def convert_official_state_dict(
    obj: Any, expected_shapes: Optional[Mapping[str, Sequence[int]]] = None
) -> OfficialConversion:
    """Rename an official ASFF state_dict onto our model.

    Args:
        obj: the loaded file: a state_dict, optionally with ``module.`` prefixes or in a
            ``{'model': state_dict}`` wrapper; fp16 or fp32.
        expected_shapes: our model's ``{name: shape}``; when given, every converted tensor must
            have exactly that shape (the caller builds the model from :func:`official_config_path`).

    Raises:
        OfficialCheckpointError: naming the first unexpected key, the first missing one, or the
            first tensor of the wrong shape.
    """
    state = unwrap_official_state_dict(obj)
    variant = detect_official_variant(state)
    table = official_key_map(variant)
    for key in state:
        if key not in table:
            raise OfficialCheckpointError(
                f"unexpected key {key!r} for an official {variant} checkpoint ({len(state)} keys, "
                f"{len(table)} expected): the file is from another model or a modified official code")
    missing = [key for key in table if key not in state]
    if missing:
        raise OfficialCheckpointError(
            f"the official {variant} checkpoint lacks {len(missing)} tensors, first {missing[0]!r}: "
            "the file is truncated or from another model")
    floats = [v.dtype for v in state.values() if v.is_floating_point()]
    source_dtype = floats[0] if floats else torch.float32
    converted: Dict[str, Tensor] = {}
    for key, value in state.items():
        ours = table[key]
        if expected_shapes is not None and tuple(expected_shapes[ours]) != tuple(value.shape):
            raise OfficialCheckpointError(
                f"{key} has shape {tuple(value.shape)}, but {ours} of the {variant} model needs "
                f"{tuple(expected_shapes[ours])}")
        converted[ours] = value.float() if value.is_floating_point() else value.clone()
    return OfficialConversion(variant, _num_classes(state, variant), converted, source_dtype)


def to_official_layout(decoded: Tensor, grid_sizes: Sequence[Tuple[int, int]], num_slots: int) -> Tensor:
    """Our decoded predictions in the official code's output layout.

    Args:
        decoded: ``(B, N, 5 + C)`` from our guided model in eval mode: ``x1, y1, x2, y2``,
            objectness, class probabilities; levels stride-ascending.
        grid_sizes: ``(H_l, W_l)`` per level, stride-ascending.
        num_slots: prediction slots per cell (4 for the official head).

    Returns:
        ``(B, N, 5 + C)`` with ``cx, cy, w, h`` first and the levels stride-descending
        (level 0 = stride 32 first), each in (slot, y, x) order: what the official model returns.
    """
    counts = [num_slots * h * w for h, w in grid_sizes]
    if sum(counts) != decoded.shape[1]:
        raise ValueError(f"{decoded.shape[1]} predictions do not match grids {list(grid_sizes)} × {num_slots} slots")
    parts: List[Tensor] = list(decoded.split(counts, dim=1))[::-1]
    out = torch.cat(parts, dim=1)  # a new tensor: decoded is left as it was
    xy1, xy2 = out[..., 0:2].clone(), out[..., 2:4]  # xy1 is overwritten below before its last use
    out[..., 0:2] = (xy1 + xy2) / 2
    out[..., 2:4] = xy2 - xy1
    return out


def build_official_model(variant: str, num_classes: int = 80) -> Tuple[Any, Any]:
    """``(config, model)`` of an official variant, from its config file in ``configs/official``."""
    from ..config import load_config
    from ..models import build_model

    path = official_config_path(variant)
    if not path.is_file():
        raise OfficialCheckpointError(f"the config of the official {variant} model is missing: {path} "
                                      "(it ships in the repository's configs/ folder)")
    cfg = load_config(path, [f"model.num_classes={num_classes}"])
    return cfg, build_model(cfg)


def convert_official_checkpoint(src: Any, dst: Any) -> Tuple[OfficialConversion, Path]:
    """Convert an official checkpoint file into a yolo-asff checkpoint (float32, config inside).

    Writes ``dst`` atomically and the model's config as ``dst`` with a ``.yaml`` suffix;
    returns the conversion (variant, classes, source dtype) and the config path.
    """
    from ..config import dump_config

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise OfficialCheckpointError(f"file not found: {src}")
    try:
        state = unwrap_official_state_dict(load_checkpoint(src))  # weights_only=True: the file cannot run code
    except CheckpointError as exc:
        raise OfficialCheckpointError(str(exc)) from exc
    # The variant and class count read from the keys pick the model whose shapes every tensor must have.
    variant = detect_official_variant(state)
    cfg, model = build_official_model(variant, _num_classes(state, variant))
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    converted = convert_official_state_dict(state, expected_shapes=expected)
    model.load_state_dict(converted.state_dict, strict=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, config=cfg.to_dict(), extra={
        "converted_from": str(src), "official_variant": converted.variant,
        "source_dtype": str(converted.source_dtype).replace("torch.", ""),
    })
    config_path = dst.with_suffix(".yaml")
    dump_config(cfg, config_path)
    return converted, config_path
