"""``build_model(cfg)``: the one road from a config to a detector."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch

from ..config import AUTO_ANCHORS, CHOICES
from ..utils.logging import get_logger
from .asff import AsffFusion, LevelExpand
from .blocks import make_conv_factory
from .darknet import Darknet53, TinyDarknet
from .detector import YoloDetector
from .guided_head import GuidedAnchorHead
from .head import YoloHead
from .pyramid import AsffPyramid, TinyPyramid, YoloV3Pyramid

__all__ = ["build_model", "default_anchors", "ARCHITECTURES", "HEADS"]

# The config validates these choices; build_model checks them again for configs built without it.
ARCHITECTURES = CHOICES["model.arch"]
HEADS = CHOICES["model.head"]

# (w, h) in input pixels, smallest first: YOLOv3's k-means anchors (Redmon & Farhadi 2018, §2.3; Darknet's
# yolov3.cfg) and YOLOv3-tiny's (Darknet's yolov3-tiny.cfg).
YOLOV3_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
TINY_ANCHORS = [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
# The official ASFF code's set for its guided-anchor head (README, "Official ASFF checkpoints"): the ninth
# differs from YOLOv3's.
OFFICIAL_ASFF_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [42, 119], [116, 90], [156, 198], [121, 240]]


def default_anchors(arch: str, head: str = "yolov3") -> List[List[float]]:
    """The published anchors of an architecture and head, smallest first."""
    if arch == "yolov3_tiny":
        table = TINY_ANCHORS
    else:
        table = OFFICIAL_ASFF_ANCHORS if head == "guided" else YOLOV3_ANCHORS
    return [list(a) for a in table]


def _anchor_tensor(anchors: Optional[Sequence[Sequence[float]]], arch: str, head: str, levels: int) -> torch.Tensor:
    # "auto" is fitted when training starts (engine/anchors.py); a model built before that has the default.
    given = anchors is not None and anchors != AUTO_ANCHORS
    table = torch.tensor(anchors if given else default_anchors(arch, head), dtype=torch.float32)
    if table.dim() != 2 or table.shape[1] != 2 or table.shape[0] % levels:
        raise ValueError(f"model.anchors: need a list of [w, h] pairs divisible into {levels} levels")
    return table.view(levels, -1, 2)


def build_model(cfg: Any) -> YoloDetector:
    """Build the detector described by ``cfg.model`` (a :class:`~yolo_asff.config.Config`),
    or by ``cfg`` itself when it is a model section."""
    m = getattr(cfg, "model", cfg)
    if m.arch not in ARCHITECTURES:
        raise ValueError(f"model.arch: unknown architecture {m.arch!r}; choose one of {ARCHITECTURES}")
    if m.head not in HEADS:
        raise ValueError(f"model.head: unknown head {m.head!r}; choose one of {HEADS}")
    conv = make_conv_factory(m.act, m.bn_eps, m.bn_momentum)
    fusion = None
    if m.arch == "yolov3_tiny":
        backbone = TinyDarknet(conv, m.width)
        pyramid = TinyPyramid(backbone.out_channels, conv, m.width)
        head_channels = pyramid.out_channels
    else:
        backbone = Darknet53(conv, m.width)
        if m.arch == "yolov3":
            pyramid = YoloV3Pyramid(backbone.out_channels, conv, m.width)
        else:
            keep = m.dropblock_keep if m.dropblock else 1.0
            pyramid = AsffPyramid(backbone.out_channels, conv, m.width, m.spp, m.dropblock_size, keep)
            if m.fusion:
                fusion = AsffFusion(pyramid.out_channels, conv, m.width, m.fusion_channels)
            else:
                fusion = LevelExpand(pyramid.out_channels, conv, m.width)
        head_channels = fusion.out_channels if fusion is not None else pyramid.out_channels
    anchors = _anchor_tensor(m.anchors, m.arch, m.head, len(pyramid.strides))
    head_type = GuidedAnchorHead if m.head == "guided" else YoloHead
    head = head_type(head_channels, pyramid.strides, anchors, m.num_classes, m.rfb, m.prior_prob)
    model = YoloDetector(backbone, pyramid, head, fusion)
    if m.norm == "syncbn" and torch.distributed.is_available() and torch.distributed.is_initialized():
        # In a single process SyncBN is plain BN, so it is only swapped in under torch.distributed; and
        # PyTorch's SyncBN runs on GPUs only (NCCL), so processes on CPUs (gloo) keep per-process BN.
        if torch.distributed.get_backend() == "nccl":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            get_logger("model").warning("model.norm=syncbn needs GPUs (the NCCL backend); with the %s backend "
                                        "each process keeps its own BatchNorm statistics",
                                        torch.distributed.get_backend())
    return model
