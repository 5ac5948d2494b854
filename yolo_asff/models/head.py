"""YOLOv3 detection heads and box decoding."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from .blocks import RFB, init_prior_bias

__all__ = ["YoloHead", "make_grid", "decode_level", "anchor_table"]


def anchor_table(anchors: Tensor, num_levels: int) -> Tensor:
    """``anchors`` as a float32 ``(L, A, 2)`` tensor of (w, h) per level, or a ValueError."""
    anchors = torch.as_tensor(anchors, dtype=torch.float32)
    if anchors.dim() != 3 or anchors.shape[0] != num_levels or anchors.shape[2] != 2:
        raise ValueError(f"anchors must have shape (levels={num_levels}, A, 2), got {tuple(anchors.shape)}")
    return anchors


def make_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cell offsets ``(1, 1, H, W, 2)`` holding (x, y) = (column, row)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys), dim=-1).view(1, 1, height, width, 2)


def decode_level(raw: Tensor, anchors: Tensor, stride: int) -> Tensor:
    """Decode one level's raw outputs into boxes and probabilities.

    Args:
        raw: ``(B, A, H, W, 5 + C)`` logits ``tx, ty, tw, th, objectness, classes``.
        anchors: ``(A, 2)`` anchor (w, h) in input pixels, or a ``(B, A, H, W, 2)`` map of
            per-position anchors (the guided-anchor head's predicted sizes).
        stride: the level's stride in input pixels.

    Returns:
        ``(B, A, H, W, 5 + C)``: ``x1, y1, x2, y2`` in input pixels, then objectness
        and class probabilities (sigmoids). Computed in float32.
    """
    raw = raw.float()
    _, num_anchors, h, w, _ = raw.shape
    grid = make_grid(h, w, raw.device, raw.dtype)
    xy = (raw[..., :2].sigmoid() + grid) * stride
    if anchors.dim() == 2:
        anchors = anchors.view(1, num_anchors, 1, 1, 2)
    wh = raw[..., 2:4].exp() * anchors.to(raw)
    return torch.cat((xy - wh / 2, xy + wh / 2, raw[..., 4:].sigmoid()), dim=-1)


class YoloHead(nn.Module):
    """One plain 1×1 output conv per level (optionally after an RFB block), with decoding.

    Args:
        in_channels: channel count of each level, stride-ascending.
        strides: each level's stride.
        anchors: ``(L, A, 2)`` anchors (w, h) in input pixels, one row per level.
        num_classes: number of object classes C.
        rfb: put an :class:`RFB` block before each output conv (ASFF*).
        prior_prob: initial objectness and class probability.

    ``forward(features)`` takes ``L`` maps ``(B, in_channels[l], H_l, W_l)`` and returns
    the raw predictions, a list of ``(B, A, H_l, W_l, 5 + C)`` tensors; :meth:`decode`
    turns them into ``(B, N, 5 + C)`` with ``N = Σ A·H_l·W_l`` in (level, anchor, y, x) order.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        anchors: Tensor,
        num_classes: int,
        rfb: bool = False,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        anchors = anchor_table(anchors, len(in_channels))
        self.strides = tuple(int(s) for s in strides)
        self.num_classes = num_classes
        self.num_anchors = anchors.shape[1]
        self.num_outputs = 5 + num_classes
        # Anchors live in the config, not in checkpoints: they must not override a config change.
        self.register_buffer("anchors", anchors, persistent=False)
        self.rfbs = nn.ModuleList(RFB(c) if rfb else nn.Identity() for c in in_channels)
        self.convs = nn.ModuleList(nn.Conv2d(c, self.num_anchors * self.num_outputs, 1) for c in in_channels)
        for conv in self.convs:
            init_prior_bias(conv.bias, self.num_anchors, self.num_outputs, prior_prob)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        outputs = []
        for x, rfb, conv in zip(features, self.rfbs, self.convs):
            y = conv(rfb(x))
            b, _, h, w = y.shape
            outputs.append(y.view(b, self.num_anchors, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return outputs

    def decode(self, raw: List[Tensor]) -> Tensor:
        """Raw per-level predictions → ``(B, N, 5 + C)`` decoded (see :func:`decode_level`)."""
        decoded = [
            decode_level(r, self.anchors[i], self.strides[i]).flatten(1, 3) for i, r in enumerate(raw)
        ]
        return torch.cat(decoded, dim=1)
