"""Feature pyramids (necks) that turn backbone stages into per-level features.

All pyramids take the backbone outputs in stride-ascending order and return
their level features in stride-ascending order (stride 8 first), together with
``out_channels`` and ``strides`` attributes describing them.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import SPP, ConvFactory, ConvPair, DropBlock2d, scale_channels

__all__ = ["YoloV3Pyramid", "AsffPyramid", "TinyPyramid", "upsample_to"]


def upsample_to(x: Tensor, reference: Tensor) -> Tensor:
    """Nearest-neighbour upsampling of ``x`` to the spatial size of ``reference``."""
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


class _FiveConvs(nn.Sequential):
    """Darknet's five alternating CBLs: 1×1 c, 3×3 2c, 1×1 c, 3×3 2c, 1×1 c."""

    def __init__(self, in_channels: int, channels: int, conv: ConvFactory) -> None:
        super().__init__(
            conv(in_channels, channels, 1),
            conv(channels, channels * 2, 3),
            conv(channels * 2, channels, 1),
            conv(channels, channels * 2, 3),
            conv(channels * 2, channels, 1),
        )


class YoloV3Pyramid(nn.Module):
    """Darknet ``yolov3.cfg`` neck (YOLOv3, Redmon & Farhadi 2018, §2.3), up to and including each level's 3×3 branch.

    ``forward([C3, C4, C5])`` returns ``[B8, B16, B32]`` of widths ``(256, 512, 1024)·w``
    at strides 8, 16, 32 (the inputs of the 1×1 output convs).
    """

    strides: Tuple[int, int, int] = (8, 16, 32)

    def __init__(self, in_channels: Sequence[int], conv: ConvFactory, width: float = 1.0) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        w512, w256, w128 = (scale_channels(c, width) for c in (512, 256, 128))
        self.block32 = _FiveConvs(c5, w512, conv)
        self.branch32 = conv(w512, w512 * 2, 3)
        self.lateral16 = conv(w512, w256, 1)
        self.block16 = _FiveConvs(w256 + c4, w256, conv)
        self.branch16 = conv(w256, w256 * 2, 3)
        self.lateral8 = conv(w256, w128, 1)
        self.block8 = _FiveConvs(w128 + c3, w128, conv)
        self.branch8 = conv(w128, w128 * 2, 3)
        self.out_channels: Tuple[int, int, int] = (w128 * 2, w256 * 2, w512 * 2)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        c3, c4, c5 = features
        p5 = self.block32(c5)
        p4 = self.block16(torch.cat([upsample_to(self.lateral16(p5), c4), c4], dim=1))
        p3 = self.block8(torch.cat([upsample_to(self.lateral8(p4), c3), c3], dim=1))
        return [self.branch8(p3), self.branch16(p4), self.branch32(p5)]


class AsffPyramid(nn.Module):
    """The neck of the ASFF models, SPP style as in the official code and its released checkpoints
    (README, "Models"; the no-fusion model is the paper's strong baseline, §3.1).

    ``forward([C3, C4, C5])`` returns ``[L2, L1, L0]`` (stride 8, 16, 32) of widths
    ``(256, 256, 512)·w``. ``dropblocks`` holds one :class:`DropBlock2d` per level,
    stride-ascending, identity unless enabled (ASFF*).
    """

    strides: Tuple[int, int, int] = (8, 16, 32)

    def __init__(
        self,
        in_channels: Sequence[int],
        conv: ConvFactory,
        width: float = 1.0,
        spp: bool = True,
        dropblock_size: int = 3,
        dropblock_keep: float = 1.0,
    ) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        w1024, w512, w256, w128 = (scale_channels(c, width) for c in (1024, 512, 256, 128))
        self.dropblocks = nn.ModuleList(DropBlock2d(dropblock_size, dropblock_keep) for _ in range(3))
        # Level 0 (stride 32).
        self.level0_in = nn.Sequential(ConvPair(c5, w1024, conv), conv(w1024, w512, 1))
        self.spp = SPP() if spp else nn.Identity()
        self.level0_mid = nn.Sequential(conv(w512 * 4 if spp else w512, w512, 1), conv(w512, w1024, 3))
        self.level0_out = conv(w1024, w512, 1)
        # Level 1 (stride 16).
        self.lateral1 = conv(w512, w256, 1)
        self.level1_mid = nn.Sequential(conv(w256 + c4, w256, 1), conv(w256, w512, 3))
        self.level1_out = nn.Sequential(ConvPair(w512, w512, conv), conv(w512, w256, 1))
        # Level 2 (stride 8).
        self.lateral2 = conv(w256, w128, 1)
        self.level2_mid = nn.Sequential(conv(w128 + c3, w128, 1), conv(w128, w256, 3))
        self.level2_out = nn.Sequential(ConvPair(w256, w256, conv), conv(w256, w128, 1), conv(w128, w256, 3))
        self.out_channels: Tuple[int, int, int] = (w256, w256, w512)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        c3, c4, c5 = features
        db8, db16, db32 = self.dropblocks
        l0 = self.level0_out(db32(self.level0_mid(self.spp(self.level0_in(c5)))))
        x = torch.cat([upsample_to(self.lateral1(l0), c4), c4], dim=1)
        l1 = self.level1_out(db16(self.level1_mid(x)))
        x = torch.cat([upsample_to(self.lateral2(l1), c3), c3], dim=1)
        l2 = self.level2_out(db8(self.level2_mid(x)))
        return [l2, l1, l0]


class TinyPyramid(nn.Module):
    """YOLOv3-tiny neck (Darknet's ``yolov3-tiny.cfg``).

    ``forward([T8, T12])`` returns ``[B16, B32]`` of widths ``(256, 512)·w`` at strides 16, 32.
    """

    strides: Tuple[int, int] = (16, 32)

    def __init__(self, in_channels: Sequence[int], conv: ConvFactory, width: float = 1.0) -> None:
        super().__init__()
        t8, t12 = in_channels
        w512, w256, w128 = (scale_channels(c, width) for c in (512, 256, 128))
        self.reduce32 = conv(t12, w256, 1)
        self.branch32 = conv(w256, w512, 3)
        self.lateral16 = conv(w256, w128, 1)
        self.branch16 = conv(w128 + t8, w256, 3)
        self.out_channels: Tuple[int, int] = (w256, w512)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        t8, t12 = features
        t13 = self.reduce32(t12)
        b16 = self.branch16(torch.cat([upsample_to(self.lateral16(t13), t8), t8], dim=1))
        return [b16, self.branch32(t13)]
