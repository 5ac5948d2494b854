"""Darknet ``.weights`` and ``.cfg``, as Darknet's own parser reads and writes them: import into and export
from our models.

Darknet stores convolutional layers one after another in file order, each as
(with batch norm) bias β, scale γ, running mean, running variance, kernel, or
(without) bias, kernel, all little-endian float32, after a small header.
:func:`darknet_layers` lists a model's convolutions in that order:

- ``yolov3``: the 52 Darknet-53 convs, then per level (stride 32, 16, 8) its 1×1
  lateral (levels 16 and 8), five CBLs, the 3×3 branch and the output conv: 75 layers;
- ``yolov3_tiny``: 13 layers;
- ASFF models: the 52 backbone convs only (Darknet has nothing for the rest), so an
  ASFF model can start from Darknet's ImageNet backbone ``darknet53.conv.74``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, MissingFileError
from ..models.asff import AsffFusion
from ..models.blocks import SPP, ConvBNAct
from ..models.darknet import Darknet53, TinyDarknet
from ..models.detector import YoloDetector
from ..models.head import YoloHead
from ..models.pyramid import AsffPyramid, TinyPyramid, YoloV3Pyramid
from ..utils.files import atomic_write
from ..utils.logging import get_logger
from ..utils.sizes import parse_size

__all__ = ["darknet_layers", "load_darknet_weights", "save_darknet_weights", "write_darknet_cfg"]

PathLike = Union[str, os.PathLike]
Layer = Tuple[nn.Conv2d, Optional[nn.BatchNorm2d]]

_HINT = ("Check that the file matches the config's model.arch, model.num_classes, model.width and anchors "
         "(Darknet's yolov3.weights and yolov3-tiny.weights are 80-class COCO models; an ASFF model can only "
         "take the backbone, darknet53.conv.74).")


def _cbls(modules: Sequence[nn.Module]) -> List[Layer]:
    """Every ConvBNAct inside ``modules`` (in module order) as (conv, bn)."""
    return [(m.conv, m.bn) for module in modules for m in module.modules() if isinstance(m, ConvBNAct)]


def darknet_layers(model: YoloDetector) -> List[Layer]:
    """The model's convolutions as (conv, bn or None), in Darknet file order (see the module doc)."""
    backbone, pyramid, head = model.backbone, model.pyramid, model.head
    if isinstance(backbone, Darknet53):
        layers = _cbls([backbone])
        # Past the backbone a Darknet file interleaves the neck with plain output convs: only a plain head fits.
        if isinstance(pyramid, YoloV3Pyramid) and isinstance(head, YoloHead):
            p = pyramid
            layers += _cbls([p.block32, p.branch32]) + [(head.convs[2], None)]
            layers += _cbls([p.lateral16, p.block16, p.branch16]) + [(head.convs[1], None)]
            layers += _cbls([p.lateral8, p.block8, p.branch8]) + [(head.convs[0], None)]
        return layers
    if isinstance(backbone, TinyDarknet) and isinstance(pyramid, TinyPyramid) and isinstance(head, YoloHead):
        p = pyramid
        return (_cbls([backbone, p.reduce32, p.branch32]) + [(head.convs[1], None)]
                + _cbls([p.lateral16, p.branch16]) + [(head.convs[0], None)])
    raise InvalidInputError(f"no Darknet layout for a model with a {type(backbone).__name__} backbone")


def _layer_tensors(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]) -> List[torch.Tensor]:
    """The layer's tensors in Darknet's storage order."""
    if bn is not None:
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def _layer_size(layer: Layer) -> int:
    return sum(t.numel() for t in _layer_tensors(*layer))


# ----------------------------------------------------------------------------- .weights


def _read(path: PathLike) -> np.ndarray:
    """The float32 values after the header of a ``.weights`` file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Darknet weights file not found: {path}")
    with open(path, "rb") as f:
        header = np.fromfile(f, dtype="<i4", count=3)
        if header.size < 3:
            raise InvalidInputError(f"{path}: too short to be a Darknet .weights file (no header)")
        major, minor = int(header[0]), int(header[1])
        seen_dtype = "<u8" if major * 10 + minor >= 2 else "<u4"
        if np.fromfile(f, dtype=seen_dtype, count=1).size != 1:
            raise InvalidInputError(f"{path}: too short to be a Darknet .weights file (no header)")
        start = f.tell()
        rest = path.stat().st_size - start
        if rest % 4:
            raise InvalidInputError(f"{path}: {rest} bytes after the {start}-byte header is not a whole number of "
                             "float32 values; the file is damaged or not a Darknet .weights file")
        return np.fromfile(f, dtype="<f4")


def _matching_classes(model: YoloDetector, layers: List[Layer], size: int) -> Optional[int]:
    """The class count for which a complete file of ``size`` values would fit this model, if any."""
    heads = [conv for conv, bn in layers if bn is None]
    if not heads:
        return None
    fixed = sum(_layer_size(layer) for layer in layers if layer[1] is not None)
    per_output = model.head.num_anchors * sum(conv.in_channels + 1 for conv in heads)
    outputs, rest = divmod(size - fixed, per_output)
    classes = outputs - 5
    return classes if rest == 0 and classes >= 1 and classes != model.head.num_classes else None


def _count_layers(model: YoloDetector, layers: List[Layer], size: int, path: PathLike) -> int:
    """How many whole layers ``size`` values make, or a ValueError saying why they do not fit."""
    boundaries = np.cumsum([0] + [_layer_size(layer) for layer in layers])
    if size > 0 and size in boundaries:
        return int(np.searchsorted(boundaries, size))
    total = int(boundaries[-1])
    if size == 0:
        where = "it holds no layers at all"
    elif size > total:
        where = f"{size - total:,} values more than the model has layers for"
    else:
        k = int(np.searchsorted(boundaries, size))  # the file stops inside layer k (1-based)
        where = f"it stops in the middle of layer {k} of {len(layers)}, {int(boundaries[k]) - size:,} values short"
    fits = _matching_classes(model, layers, size)
    guess = f" The file's size fits this model with num_classes={fits}." if fits is not None else ""
    raise InvalidInputError(
        f"{path}: the model needs {total:,} values for its {len(layers)} Darknet layers (or a prefix of whole "
        f"layers, e.g. a backbone-only file); the file holds {size:,} after the header: {where}.{guess} {_HINT}"
    )


def load_darknet_weights(model: YoloDetector, path: PathLike) -> int:
    """Load a Darknet ``.weights`` file into ``model``; returns the number of conv layers loaded.

    A file that holds the model's first k layers exactly (e.g. ``darknet53.conv.74``,
    the ImageNet backbone) loads those k and logs it. Any other size is refused
    before anything is changed, with a message saying what the model needs. The
    model's tensors keep their dtype and device.
    """
    layers = darknet_layers(model)
    values = torch.from_numpy(_read(path))
    count = _count_layers(model, layers, values.numel(), path)
    offset = 0
    with torch.no_grad():
        for layer in layers[:count]:
            for tensor in _layer_tensors(*layer):
                n = tensor.numel()
                tensor.copy_(values[offset:offset + n].view_as(tensor))
                offset += n
    log = get_logger("darknet")
    if count < len(layers):
        log.info("%s: loaded %d of %d Darknet layers (a partial file, e.g. backbone only); the rest keep "
                 "their initialisation", path, count, len(layers))
    else:
        log.info("%s: loaded all %d Darknet layers", path, count)
    return count


def save_darknet_weights(model: YoloDetector, path: PathLike, cutoff: Optional[int] = None) -> int:
    """Write ``model`` (or its first ``cutoff`` layers) as a Darknet ``.weights`` file, atomically.

    Header: major 0, minor 2, revision 0, a 64-bit images-seen counter of 0.
    Returns the number of layers written.
    """
    layers = darknet_layers(model)
    if cutoff is not None:
        if not 0 <= cutoff <= len(layers):
            raise InvalidInputError(f"cutoff={cutoff}: this model has {len(layers)} Darknet layers")
        layers = layers[:cutoff]

    def write(f: BinaryIO) -> None:
        f.write(np.array([0, 2, 0], dtype="<i4").tobytes() + np.array([0], dtype="<u8").tobytes())
        for layer in layers:
            for tensor in _layer_tensors(*layer):
                f.write(tensor.detach().float().cpu().numpy().astype("<f4", copy=False).tobytes())

    atomic_write(path, write)
    return len(layers)


# ----------------------------------------------------------------------------- .cfg writer


class _CfgWriter:
    """Builds a Darknet cfg section by section, tracking each layer's index for routes."""

    def __init__(self, model: YoloDetector, input_size: Tuple[int, int], thresh: float) -> None:
        self.head_module = model.head
        self.thresh = thresh
        h, w = input_size
        self.sections = [f"[net]\nbatch=1\nsubdivisions=1\nwidth={w}\nheight={h}\nchannels=3\n"]
        self.index = -1  # index of the last layer written (the [net] section has none)

    def add(self, text: str) -> int:
        self.sections.append(text)
        self.index += 1
        return self.index

    def conv(self, layer: ConvBNAct) -> int:
        c = layer.conv
        return self.add(f"[convolutional]\nbatch_normalize=1\nfilters={c.out_channels}\nsize={c.kernel_size[0]}\n"
                        f"stride={c.stride[0]}\npad=1\nactivation=leaky\n")

    def head(self, level: int) -> None:
        """Output conv and [yolo] section of level ``level`` (stride-ascending index)."""
        head = self.head_module
        self.add(f"[convolutional]\nsize=1\nstride=1\npad=1\nfilters={head.convs[level].out_channels}\n"
                 "activation=linear\n")
        anchors = head.anchors.reshape(-1, 2).tolist()
        a = head.num_anchors
        mask = ",".join(str(level * a + k) for k in range(a))
        anchor_text = ",  ".join(f"{w:g},{h:g}" for w, h in anchors)
        # OpenCV's reader zeroes class scores <= `thresh` (its default 0.2); Darknet ignores the key.
        self.add(f"[yolo]\nmask={mask}\nanchors={anchor_text}\nclasses={head.num_classes}\nnum={len(anchors)}\n"
                 f"jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=0\nthresh={self.thresh:g}\n")

    def text(self) -> str:
        return "\n".join(self.sections)


def _check_expressible(model: YoloDetector) -> None:
    """Raise a ValueError naming every feature of ``model`` that a Darknet cfg cannot describe."""
    problems = []
    if isinstance(model.pyramid, AsffPyramid):
        problems.append("the ASFF pyramid (model.arch='yolov3_asff')")
        if isinstance(model.pyramid.spp, SPP):
            problems.append("its SPP block (model.spp)")
    if model.fusion is not None:
        fused = isinstance(model.fusion, AsffFusion)
        problems.append("ASFF fusion (model.fusion)" if fused else "the no-fusion baseline's level expansion")
    if not isinstance(model.head, YoloHead):
        problems.append("the guided-anchor head (model.head='guided')")
    elif any(not isinstance(rfb, nn.Identity) for rfb in model.head.rfbs):
        problems.append("RFB blocks before the heads (model.rfb)")
    acts = {type(m.act).__name__ for m in model.modules() if isinstance(m, ConvBNAct)
            and not (isinstance(m.act, nn.LeakyReLU) and m.act.negative_slope == 0.1)}
    if acts:
        problems.append(f"activation {', '.join(sorted(acts))} (model.act; Darknet's 'leaky' is LeakyReLU(0.1))")
    if problems:
        raise InvalidInputError(f"Darknet cannot express this model's features: {'; '.join(problems)}. Only yolov3 and "
                         "yolov3_tiny with the leaky activation and no RFB can be written as a .cfg.")


def _darknet53_body(cfg: _CfgWriter, model: YoloDetector) -> None:
    """Darknet-53 with [shortcut]s, then the yolov3 neck and heads with [route]/[upsample]."""
    backbone, p = model.backbone, model.pyramid
    cfg.conv(backbone.stem)
    stage_out = []
    for stage in backbone.stages:
        cfg.conv(stage[0])
        for unit in stage[1:]:
            cfg.conv(unit.reduce)
            cfg.conv(unit.expand)
            cfg.add("[shortcut]\nfrom=-3\nactivation=linear\n")
        stage_out.append(cfg.index)
    levels = [(None, None, p.block32, p.branch32, 2), (p.lateral16, stage_out[3], p.block16, p.branch16, 1),
              (p.lateral8, stage_out[2], p.block8, p.branch8, 0)]
    block_end = -1
    for lateral, skip, block, branch, level in levels:
        if lateral is not None:
            cfg.add(f"[route]\nlayers={block_end}\n")
            cfg.conv(lateral)
            cfg.add("[upsample]\nstride=2\n")
            cfg.add(f"[route]\nlayers=-1, {skip}\n")
        for layer in block:
            block_end = cfg.conv(layer)
        cfg.conv(branch)
        cfg.head(level)


def _tiny_body(cfg: _CfgWriter, model: YoloDetector) -> None:
    """The yolov3-tiny trunk with its max-pools, then its two-level neck and heads."""
    backbone, p = model.backbone, model.pyramid
    t8 = -1
    for i, layer in enumerate(backbone.convs):
        cfg.conv(layer)
        if i < 5:
            t8 = cfg.index
            cfg.add("[maxpool]\nsize=2\nstride=2\n")
        elif i == 5:
            cfg.add("[maxpool]\nsize=2\nstride=1\n")  # keeps the size (pads right and bottom)
    t13 = cfg.conv(p.reduce32)
    cfg.conv(p.branch32)
    cfg.head(1)
    cfg.add(f"[route]\nlayers={t13}\n")
    cfg.conv(p.lateral16)
    cfg.add("[upsample]\nstride=2\n")
    cfg.add(f"[route]\nlayers=-1, {t8}\n")
    cfg.conv(p.branch16)
    cfg.head(0)


def write_darknet_cfg(model: YoloDetector, path: PathLike, input_size: Union[int, Tuple[int, int]] = (416, 416),
                      thresh: float = 0.0) -> None:
    """Write a Darknet ``.cfg`` describing ``model`` (``yolov3`` or ``yolov3_tiny``), atomically.

    ``input_size`` is (height, width) (or one int) for the [net] section. ``thresh``
    goes into each [yolo] section: OpenCV's reader zeroes class scores at or below it;
    0 keeps them all, like our decoder. Together with :func:`save_darknet_weights` it
    gives files that Darknet and OpenCV's ``cv2.dnn.readNetFromDarknet`` read.
    Raises ValueError naming the feature when the model has parts Darknet lacks.
    """
    _check_expressible(model)
    size = parse_size(input_size, "input_size")
    cfg = _CfgWriter(model, size, thresh)
    if isinstance(model.backbone, Darknet53) and isinstance(model.pyramid, YoloV3Pyramid):
        _darknet53_body(cfg, model)
    elif isinstance(model.backbone, TinyDarknet) and isinstance(model.pyramid, TinyPyramid):
        _tiny_body(cfg, model)
    else:
        raise InvalidInputError(f"no Darknet cfg layout for a {type(model.backbone).__name__} + "
                         f"{type(model.pyramid).__name__} model")
    text = cfg.text().encode()
    atomic_write(path, lambda f: f.write(text))
