"""Adaptively Spatial Feature Fusion (Liu et al., 2019) and the paper's no-fusion baseline.

Inside this module levels are numbered as in the paper: level 0 is stride 32,
level 1 stride 16, level 2 stride 8. The public ``forward`` takes and returns
lists in stride-ascending order like every other part of the detector.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvFactory, scale_channels
from .pyramid import upsample_to

__all__ = ["AsffLevel", "AsffFusion", "LevelExpand"]

# Per output level (paper order): the width the three inputs are resized to, and the output width.
_INTER_WIDTHS = (512, 256, 256)
_OUT_WIDTHS = (1024, 512, 256)


class _Upsample(nn.Module):
    """Optional 1×1 CBL, then nearest upsampling to the target map's size."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        return upsample_to(self.conv(x), target)


class AsffLevel(nn.Module):
    """Fusion for one output level ``level`` (0 = stride 32) of the paper (§3.2).

    ``forward(x0, x1, x2)`` takes the pyramid maps of levels 0, 1, 2
    (``(B, 512w, H/32, W/32)``, ``(B, 256w, H/16, W/16)``, ``(B, 256w, H/8, W/8)``) and returns
    ``(fused, weights)``: ``fused`` of shape ``(B, out_width, h, w)`` at this level's
    resolution and ``weights`` of shape ``(B, 3, h, w)``, the softmax weights α, β, γ
    given to levels 0, 1, 2 at each position (they sum to 1, shared by all channels).
    """

    def __init__(
        self,
        level: int,
        in_channels: Sequence[int],
        conv: ConvFactory,
        width: float = 1.0,
        weight_channels: int = 16,
    ) -> None:
        super().__init__()
        if level not in (0, 1, 2):
            raise ValueError(f"ASFF level must be 0, 1 or 2, got {level}")
        self.level = level
        c0, c1, c2 = in_channels
        inter = scale_channels(_INTER_WIDTHS[level], width)
        self.out_channels = scale_channels(_OUT_WIDTHS[level], width)
        if level == 0:
            resize = [nn.Identity(), conv(c1, inter, 3, 2), nn.Sequential(nn.MaxPool2d(3, 2, 1), conv(c2, inter, 3, 2))]
        elif level == 1:
            resize = [_Upsample(conv(c0, inter, 1)), nn.Identity(), conv(c2, inter, 3, 2)]
        else:
            resize = [_Upsample(conv(c0, inter, 1)), _Upsample(nn.Identity()), nn.Identity()]
        self.resize = nn.ModuleList(resize)
        self.weight_convs = nn.ModuleList(conv(inter, weight_channels, 1) for _ in range(3))
        self.weight_logits = nn.Conv2d(3 * weight_channels, 3, 1)
        self.expand = conv(inter, self.out_channels, 3)

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor) -> Tuple[Tensor, Tensor]:
        inputs = (x0, x1, x2)
        target = inputs[self.level]
        resized = []
        for module, x in zip(self.resize, inputs):
            resized.append(module(x, target) if isinstance(module, _Upsample) else module(x))
        logits = self.weight_logits(torch.cat([wc(r) for wc, r in zip(self.weight_convs, resized)], dim=1))
        weights = F.softmax(logits, dim=1)  # Eq. (2): α, β, γ from their logits, summing to 1 at each position
        fused = resized[0] * weights[:, 0:1] + resized[1] * weights[:, 1:2] + resized[2] * weights[:, 2:3]  # Eq. (1)
        return self.expand(fused), weights


class AsffFusion(nn.Module):
    """ASFF over the three levels of the ASFF pyramid (ASFF paper §3.2: feature resizing, then Eq. (1)
    with the softmax weights of Eq. (2)).

    ``forward([L2, L1, L0], return_weights=False)`` (stride-ascending) returns the fused
    maps ``[F8, F16, F32]`` of widths ``(256, 512, 1024)·w`` and, with ``return_weights``,
    also the weight maps, one ``(B, 3, h, w)`` tensor per level, stride-ascending;
    channel k of each is the weight of paper level k (stride 32, 16, 8 for k = 0, 1, 2).
    """

    def __init__(self, in_channels: Sequence[int], conv: ConvFactory, width: float = 1.0, weight_channels: int = 16):
        super().__init__()
        c8, c16, c32 = in_channels
        paper_in = (c32, c16, c8)
        # Stored stride-ascending: levels[0] produces stride 8 (paper level 2).
        self.levels = nn.ModuleList(AsffLevel(lvl, paper_in, conv, width, weight_channels) for lvl in (2, 1, 0))
        self.out_channels: Tuple[int, int, int] = tuple(m.out_channels for m in self.levels)

    def forward(self, features: List[Tensor], return_weights: bool = False):
        l2, l1, l0 = features
        fused, weights = [], []
        for module in self.levels:
            out, w = module(l0, l1, l2)
            fused.append(out)
            weights.append(w)
        return (fused, weights) if return_weights else fused


class LevelExpand(nn.Module):
    """The paper's baseline in place of ASFF (README, "Models"): L0 → CBL(3,1,1024), L1 → CBL(3,1,512), L2 as is.

    Same interface as :class:`AsffFusion`; the weight-map list is empty.
    """

    def __init__(self, in_channels: Sequence[int], conv: ConvFactory, width: float = 1.0) -> None:
        super().__init__()
        c8, c16, c32 = in_channels
        w1024, w512 = scale_channels(1024, width), scale_channels(512, width)
        self.expand16 = conv(c16, w512, 3)
        self.expand32 = conv(c32, w1024, 3)
        self.out_channels: Tuple[int, int, int] = (c8, w512, w1024)

    def forward(self, features: List[Tensor], return_weights: bool = False):
        l2, l1, l0 = features
        out = [l2, self.expand16(l1), self.expand32(l0)]
        return (out, []) if return_weights else out
