"""Small building blocks shared by the backbone, pyramids, fusion and heads.

Every "CBL" (conv, batch norm, leaky ReLU: Darknet's convolutional layer with ``batch_normalize=1``)
is a :class:`ConvBNAct`. Modules that build several of
them take a :data:`ConvFactory` so that normalisation and activation settings are
chosen once, from config, rather than hard-coded in each module.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvBNAct",
    "ConvFactory",
    "make_conv_factory",
    "scale_channels",
    "ResidualUnit",
    "ConvPair",
    "SPP",
    "DropBlock2d",
    "RFB",
    "init_prior_bias",
]

_ACTIVATIONS = {
    "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
}


def scale_channels(channels: int, width: float) -> int:
    """Channel count for a width multiplier, rounded to a multiple of 8 (at least 8).

    ``width == 1`` returns ``channels`` unchanged so the full models keep the
    exact published layer shapes.
    """
    if width == 1.0:
        return channels
    return max(8, int(round(channels * width / 8.0)) * 8)


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding) → BatchNorm2d → activation: CBL(k, s, c), Darknet's
    convolutional layer with ``batch_normalize=1``.

    Shapes: ``(B, in_channels, H, W) → (B, out_channels, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        act: str = "leaky",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = _ACTIVATIONS[act]()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


ConvFactory = Callable[..., ConvBNAct]
"""``conv(in_channels, out_channels, kernel_size=1, stride=1) -> ConvBNAct``."""


def make_conv_factory(act: str = "leaky", bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> ConvFactory:
    """A :class:`ConvBNAct` constructor with the normalisation and activation settings bound."""
    return partial(ConvBNAct, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)


class ResidualUnit(nn.Module):
    """Darknet residual unit on ``c`` channels: CBL(1, 1, c/2) → CBL(3, 1, c), added to the input."""

    def __init__(self, channels: int, conv: ConvFactory) -> None:
        super().__init__()
        self.reduce = conv(channels, channels // 2, 1)
        self.expand = conv(channels // 2, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.reduce(x))


class ConvPair(nn.Module):
    """``pair(c)``: CBL(1, 1, c/2) → CBL(3, 1, c), without a residual add."""

    def __init__(self, in_channels: int, channels: int, conv: ConvFactory) -> None:
        super().__init__()
        self.reduce = conv(in_channels, channels // 2, 1)
        self.expand = conv(channels // 2, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.reduce(x))


class SPP(nn.Module):
    """Spatial pyramid pooling: ``concat(x, maxpool5, maxpool9, maxpool13)``, stride 1, size kept.

    Shapes: ``(B, C, H, W) → (B, 4C, H, W)``.
    """

    def __init__(self, kernel_sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.kernel_sizes]
        return torch.cat([x, *pooled], dim=1)


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al., 2018): drops contiguous ``block_size²`` squares of a feature map.

    Identity in eval mode, when ``keep_prob >= 1`` or ``block_size < 1``. Both
    attributes may be changed between iterations (the ASFF* schedule grows the
    block size with the epochs). Shapes: ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, block_size: int = 3, keep_prob: float = 1.0) -> None:
        super().__init__()
        self.block_size = block_size
        self.keep_prob = keep_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.keep_prob >= 1.0 or self.block_size < 1:
            return x
        b, c, h, w = x.shape
        bs = min(self.block_size, h, w)
        # Seed rate chosen so that the expected dropped fraction is 1 - keep_prob
        # once every seed has grown into a full block (seeds only where a block fits).
        gamma = (1.0 - self.keep_prob) / (bs * bs) * (h * w) / ((h - bs + 1) * (w - bs + 1))
        seeds = (torch.rand(b, c, h - bs + 1, w - bs + 1, device=x.device) < gamma).to(x.dtype)
        # A pixel is dropped when a seed (a block's top-left corner) lies within bs-1 above/left of it.
        blocks = F.max_pool2d(F.pad(seeds, (bs - 1, bs - 1, bs - 1, bs - 1)), kernel_size=bs, stride=1)
        keep = 1.0 - blocks
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, keep_prob={self.keep_prob}"


class RFB(nn.Module):
    """Receptive Field Block (Liu, Huang, Wang, ECCV 2018) as ASFF* uses it before each head (ASFF paper §4,
    ASFF*; the branch layout of the official code, whose released ASFF* checkpoint holds it).

    Four branches of plain biased convs (no BN, no activation) on ``i = C / 4``
    channels, concatenated back to ``C``. Shapes: ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inter = channels // 4

        def conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)

        self.branches = nn.ModuleList(
            [
                nn.Sequential(conv(channels, inter, 1)),
                nn.Sequential(conv(channels, inter, 1), conv(inter, inter, 3)),
                nn.Sequential(conv(channels, inter, 1), conv(inter, inter, 3), conv(inter, inter, 3, 2)),
                nn.Sequential(conv(channels, inter, 1), conv(inter, inter, 5), conv(inter, inter, 3, 3)),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def init_prior_bias(bias: Tensor, num_anchors: int, num_outputs: int, prior_prob: float) -> None:
    """Set an output conv's bias so objectness and class probabilities start at ``prior_prob``.

    ``bias`` has ``num_anchors * num_outputs`` entries laid out as (anchor, output), the
    outputs being ``tx, ty, tw, th, objectness, classes...``. Starting from a small
    probability keeps the first iterations' objectness loss from being dominated by
    the many negatives (Lin et al., focal loss paper).
    """
    prior = -math.log((1.0 - prior_prob) / prior_prob)
    with torch.no_grad():
        b = bias.view(num_anchors, num_outputs)
        b[:, :4] = 0.0
        b[:, 4:] = prior

