"""Darknet ``.weights`` and ``.cfg`` (SPEC section 7): import into and export from our models.

Darknet stores convolutional layers one after another in file order, each as
(with batch norm) bias β, scale γ, running mean, running variance, kernel, or
(without) bias, kernel, all little-endian float32, after a small header.
:func:`darknet_layers` lists a model's convolutions in that order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..models.blocks import ConvBNAct, DropBlock2d
from ..models.darknet import Darknet53, TinyDarknet
from ..models.detector import YoloDetector
from ..models.pyramid import AsffPyramid, TinyPyramid, YoloV3Pyramid
from ..utils.files import atomic_write
from ..utils.logging import get_logger

__all__ = ["darknet_layers", "load_darknet_weights", "save_darknet_weights", "write_darknet_cfg"]

PathLike = Union[str, os.PathLike]
Layer = Tuple[nn.Conv2d, Optional[nn.BatchNorm2d]]


def _cbls(modules: Sequence[nn.Module]) -> List[Layer]:
    """Every ConvBNAct inside ``modules`` (in module order) as (conv, bn)."""
    return [(m.conv, m.bn) for module in modules for m in module.modules() if isinstance(m, ConvBNAct)]


def darknet_layers(model: YoloDetector) -> List[Layer]:
    """The model's convolutions as (conv, bn or None), in Darknet file order.

    ``yolov3``: the 52 backbone convs, then per level (stride 32, 16, 8) its lateral
    conv (levels 16 and 8), five CBLs, the 3×3 branch and the output conv: 75 layers.
    ``yolov3_tiny``: 13 layers. ASFF models: the Darknet-53 backbone's 52 only,
    since Darknet has no layers for the rest.
    """
    backbone, pyramid, head = model.backbone, model.pyramid, model.head
    if isinstance(backbone, Darknet53):
        layers = _cbls([backbone])
        if isinstance(pyramid, YoloV3Pyramid):
            p = pyramid
            layers += _cbls([p.block32, p.branch32]) + [(head.convs[2], None)]
            layers += _cbls([p.lateral16, p.block16, p.branch16]) + [(head.convs[1], None)]
            layers += _cbls([p.lateral8, p.block8, p.branch8]) + [(head.convs[0], None)]
        return layers
    if isinstance(backbone, TinyDarknet) and isinstance(pyramid, TinyPyramid):
        p = pyramid
        return (
            _cbls([backbone, p.reduce32, p.branch32]) + [(head.convs[1], None)]
            + _cbls([p.lateral16, p.branch16]) + [(head.convs[0], None)]
        )
    raise ValueError(f"no Darknet layout for a model with a {type(backbone).__name__} backbone")


def _layer_tensors(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]) -> List[torch.Tensor]:
    """The layer's tensors in Darknet's storage order."""
    if bn is not None:
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def _layer_size(layer: Layer) -> int:
    return sum(t.numel() for t in _layer_tensors(*layer))


def _read(path: PathLike) -> Tuple[Tuple[int, int, int], np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Darknet weights not found: {path}")
    with open(path, "rb") as f:
        header = np.fromfile(f, dtype="<i4", count=3)
        if header.size < 3:
            raise ValueError(f"{path}: too short to be a Darknet .weights file (no header)")
        major, minor, revision = (int(v) for v in header)
        seen_dtype = "<u8" if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else "<u4"
        if np.fromfile(f, dtype=seen_dtype, count=1).size != 1:
            raise ValueError(f"{path}: too short to be a Darknet .weights file (no header)")
        values = np.fromfile(f, dtype="<f4")
    return (major, minor, revision), values


def load_darknet_weights(model: YoloDetector, path: PathLike) -> int:
    """Load a Darknet ``.weights`` file into ``model``; returns the number of conv layers loaded.

    A file that holds the model's first k layers exactly (e.g. ``darknet53.conv.74``,
    the ImageNet backbone) loads those k and logs it. Any other size is refused
    before anything is changed, with a message saying what the model needs.
    """
    layers = darknet_layers(model)
    _, values = _read(path)
    boundaries = np.cumsum([0] + [_layer_size(layer) for layer in layers])
    matches = np.nonzero(boundaries == values.size)[0]
    if matches.size == 0 or values.size == 0:
        backbone = sum(_layer_size(layer) for layer in _cbls([model.backbone]))
        raise ValueError(
            f"{path}: holds {values.size:,} weights after the header, which is not the first k layers of this "
            f"model: all {len(layers)} layers need {int(boundaries[-1]):,} and the backbone alone {backbone:,}. "
            f"Check that the file matches the config's model.arch, model.num_classes, model.width and anchors "
            f"(Darknet's yolov3.weights is 80 classes)."
        )
    count = int(matches[0])
    offset = 0
    with torch.no_grad():
        for conv, bn in layers[:count]:
            for tensor in _layer_tensors(conv, bn):
                n = tensor.numel()
                tensor.copy_(torch.from_numpy(values[offset:offset + n].copy()).view_as(tensor))
                offset += n
    log = get_logger("darknet")
    if count < len(layers):
        log.info("%s: loaded %d of %d Darknet layers (a partial file, e.g. backbone only)", path, count, len(layers))
    else:
        log.info("%s: loaded all %d Darknet layers", path, count)
    return count


def save_darknet_weights(model: YoloDetector, path: PathLike, cutoff: Optional[int] = None) -> int:
    """Write ``model`` (or its first ``cutoff`` layers) as a Darknet ``.weights`` file, atomically.

    Returns the number of layers written.
    """
    layers = darknet_layers(model)[:cutoff]

    def write(f) -> None:
        np.array([0, 2, 0], dtype="<i4").tofile(f)
        np.array([0], dtype="<u8").tofile(f)
        for layer in layers:
            for tensor in _layer_tensors(*layer):
                f.write(tensor.detach().float().cpu().numpy().astype("<f4").tobytes())

    atomic_write(path, write)
    return len(layers)


# ----------------------------------------------------------------------------- .cfg writer


class _CfgWriter:
    """Builds a Darknet cfg layer by layer, tracking each layer's index for routes."""

    def __init__(self, model: YoloDetector, input_size: Tuple[int, int]) -> None:
        self.model = model
        h, w = input_size
        self.sections = [f"[net]\nbatch=1\nsubdivisions=1\nwidth={w}\nheight={h}\nchannels=3\n"]
        self.index = -1  # index of the last layer written

    def add(self, text: str) -> int:
        self.sections.append(text)
        self.index += 1
        return self.index

    def conv(self, layer: ConvBNAct) -> int:
        c = layer.conv
        return self.add(
            f"[convolutional]\nbatch_normalize=1\nfilters={c.out_channels}\nsize={c.kernel_size[0]}\n"
            f"stride={c.stride[0]}\npad=1\nactivation=leaky\n"
        )

    def head(self, level: int) -> None:
        head = self.model.head
        conv = head.convs[level]
        self.add(f"[convolutional]\nsize=1\nstride=1\npad=1\nfilters={conv.out_channels}\nactivation=linear\n")
        anchors = head.anchors.reshape(-1, 2).tolist()
        a = head.num_anchors
        mask = ",".join(str(level * a + k) for k in range(a))
        anchor_text = ",  ".join(f"{w:g},{h:g}" for w, h in anchors)
        self.add(
            f"[yolo]\nmask={mask}\nanchors={anchor_text}\nclasses={head.num_classes}\nnum={len(anchors)}\n"
            "jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=0\n"
        )

    def text(self) -> str:
        return "\n".join(self.sections)


def _check_expressible(model: YoloDetector) -> None:
    if isinstance(model.pyramid, AsffPyramid):
        raise ValueError("Darknet cannot express the ASFF pyramid/fusion (SPP-style neck, softmax fusion); "
                         "only yolov3 and yolov3_tiny can be written as a .cfg")
    if any(not isinstance(rfb, nn.Identity) for rfb in model.head.rfbs):
        raise ValueError("Darknet cannot express the RFB blocks before the heads (model.rfb)")
    for m in model.modules():
        if isinstance(m, ConvBNAct) and not (isinstance(m.act, nn.LeakyReLU) and m.act.negative_slope == 0.1):
            raise ValueError("Darknet's 'leaky' is LeakyReLU(0.1); this model uses another activation (model.act)")
        if isinstance(m, DropBlock2d):
            raise ValueError("unexpected DropBlock layer for a Darknet export")


def write_darknet_cfg(model: YoloDetector, path: PathLike, input_size: Union[int, Tuple[int, int]] = (416, 416)) -> None:
    """Write a Darknet ``.cfg`` describing ``model`` (``yolov3`` or ``yolov3_tiny``).

    Together with :func:`save_darknet_weights` it gives files that Darknet and
    OpenCV's ``cv2.dnn.readNetFromDarknet`` read.
    """
    _check_expressible(model)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    cfg = _CfgWriter(model, size)
    backbone, p = model.backbone, model.pyramid
    if isinstance(backbone, Darknet53):
        cfg.conv(backbone.stem)
        stage_out = []
        for stage in backbone.stages:
            cfg.conv(stage[0])
            for unit in stage[1:]:
                cfg.conv(unit.reduce)
                cfg.conv(unit.expand)
                cfg.add("[shortcut]\nfrom=-3\nactivation=linear\n")
            stage_out.append(cfg.index)
        c3, c4 = stage_out[2], stage_out[3]
        levels = [(None, None, p.block32, p.branch32, 2), (p.lateral16, c4, p.block16, p.branch16, 1),
                  (p.lateral8, c3, p.block8, p.branch8, 0)]
        block_end = None
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
    else:
        for i, layer in enumerate(backbone.convs):
            cfg.conv(layer)
            if i < 5:
                t8 = cfg.index
                cfg.add("[maxpool]\nsize=2\nstride=2\n")
            elif i == 5:
                cfg.add("[maxpool]\nsize=2\nstride=1\n")
        t13 = cfg.conv(p.reduce32)
        cfg.conv(p.branch32)
        cfg.head(1)
        cfg.add(f"[route]\nlayers={t13}\n")
        cfg.conv(p.lateral16)
        cfg.add("[upsample]\nstride=2\n")
        cfg.add(f"[route]\nlayers=-1, {t8}\n")
        cfg.conv(p.branch16)
        cfg.head(0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(cfg.text())
