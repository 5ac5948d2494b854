"""YOLOv3 detection heads: the output contract every head follows, the shared base, and box decoding.

Every head returns, per level (stride-ascending), one :class:`HeadOutput`: its raw logits, the
anchor size every prediction slot decodes with, and, for a head that predicts its anchors (the
guided-anchor head), the guide logits that train them. The loss
(:class:`~yolo_asff.models.loss.YoloLoss`) and :meth:`DenseHead.decode` read only this record,
so neither needs to know which head made it (as torchvision's RetinaNet hands its head outputs
and anchors to ``compute_loss``).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .blocks import RFB, init_prior_bias

__all__ = ["HeadOutput", "DenseHead", "YoloHead", "make_grid", "decode_level", "anchor_table", "to_slots"]


class HeadOutput(NamedTuple):
    """One level's output of a detection head.

    ``raw``: ``(B, S, H, W, 5 + C)`` logits ``tx, ty, tw, th, objectness, classes`` of every slot
    (``S`` prediction slots per cell); any float dtype (float16 under autocast).

    ``anchors``: the (w, h) in input pixels each slot decodes with, float32, broadcastable to
    ``(B, S, H, W, 2)``: ``(1, S, 1, 1, 2)`` for fixed anchors, ``(B, S, H, W, 2)`` for predicted
    ones. Never carries a gradient: the box terms of the loss do not train an anchor.

    ``guide``: ``None``, or ``(B, S, H, W, 2)`` log-size corrections of predicted anchors (the
    guided-anchor head), with their gradient: the loss's ``guide`` term trains them.
    """

    raw: Tensor
    anchors: Tensor
    guide: Optional[Tensor] = None


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


def to_slots(y: Tensor, num_slots: int) -> Tensor:
    """A conv output ``(B, S·n, H, W)`` laid out (slot, channel) as ``(B, S, H, W, n)``, contiguous."""
    b, _, h, w = y.shape
    return y.view(b, num_slots, -1, h, w).permute(0, 1, 3, 4, 2).contiguous()


def decode_level(raw: Tensor, anchors: Tensor, stride: int) -> Tensor:
    """Decode one level's raw outputs into boxes and probabilities (YOLOv3's box formula).

    Args:
        raw: ``(B, S, H, W, 5 + C)`` logits ``tx, ty, tw, th, objectness, classes``.
        anchors: ``(S, 2)`` anchor (w, h) in input pixels, or any map broadcastable to
            ``(B, S, H, W, 2)`` (:attr:`HeadOutput.anchors`).
        stride: the level's stride in input pixels.

    Returns:
        ``(B, S, H, W, 5 + C)``: ``x1, y1, x2, y2`` in input pixels, then objectness
        and class probabilities (sigmoids). Computed in float32.
    """
    raw = raw.float()
    _, num_slots, h, w, _ = raw.shape
    grid = make_grid(h, w, raw.device, raw.dtype)
    xy = (raw[..., :2].sigmoid() + grid) * stride
    if anchors.dim() == 2:
        anchors = anchors.view(1, num_slots, 1, 1, 2)
    wh = raw[..., 2:4].exp() * anchors.to(raw)
    return torch.cat((xy - wh / 2, xy + wh / 2, raw[..., 4:].sigmoid()), dim=-1)


class DenseHead(nn.Module):
    """What every head shares: the anchor table, strides, class count, slot count and decoding.

    Args:
        in_channels: channel count of each level, stride-ascending.
        strides: each level's stride.
        anchors: ``(L, A, 2)`` anchors (w, h) in input pixels, one row per level.
        num_classes: number of object classes C.
        rfb: put an :class:`RFB` block before each level's output (ASFF*).
        prior_prob: initial objectness and class probability.

    A subclass sets ``extra_slots`` (prediction slots per cell beyond the ``A`` anchors: 1 for the
    guided head's anchor-free slot) and ``guided`` (whether its outputs carry a guide: the loss
    then needs its ``guide`` term), and builds its layers in :meth:`build_levels`.

    Attributes: ``anchors`` (a non-persistent buffer), ``strides``, ``num_classes``,
    ``num_anchors`` (slots per cell, ``S = A + extra_slots``), ``num_outputs`` (``5 + C``).
    """

    guided = False
    extra_slots = 0

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
        self.num_anchors = anchors.shape[1] + self.extra_slots
        self.num_outputs = 5 + num_classes
        # Anchors live in the config, not in checkpoints: they must not override a config change.
        self.register_buffer("anchors", anchors, persistent=False)
        self.build_levels(in_channels, rfb, prior_prob)

    def build_levels(self, in_channels: Sequence[int], rfb: bool, prior_prob: float) -> None:
        """Create the per-level layers (called once by ``__init__``, after the attributes above)."""
        raise NotImplementedError(f"{type(self).__name__} must define build_levels")

    def decode(self, outputs: Sequence[HeadOutput]) -> Tensor:
        """Per-level outputs → ``(B, N, 5 + C)`` with ``N = Σ S·H_l·W_l`` in (level, slot, y, x) order:
        ``x1, y1, x2, y2`` in input pixels, objectness, class probabilities (see :func:`decode_level`)."""
        decoded = [decode_level(out.raw, out.anchors, stride).flatten(1, 3) for out, stride in zip(outputs, self.strides)]
        return torch.cat(decoded, dim=1)


class YoloHead(DenseHead):
    """One plain 1×1 output conv per level (optionally after an RFB block): YOLOv3's head.

    Args:
        in_channels: channel count of each level, stride-ascending.
        strides: each level's stride.
        anchors: ``(L, A, 2)`` anchors (w, h) in input pixels, one row per level.
        num_classes: number of object classes C.
        rfb: put an :class:`RFB` block before each output conv (ASFF*).
        prior_prob: initial objectness and class probability.

    ``forward(features)`` takes ``L`` maps ``(B, in_channels[l], H_l, W_l)`` and returns one
    :class:`HeadOutput` per level: ``raw`` ``(B, A, H_l, W_l, 5 + C)``, ``anchors`` the level's
    row of the table as ``(1, A, 1, 1, 2)``, no guide. :meth:`~DenseHead.decode` turns them
    into ``(B, N, 5 + C)``.
    """

    def build_levels(self, in_channels: Sequence[int], rfb: bool, prior_prob: float) -> None:
        self.rfbs = nn.ModuleList(RFB(c) if rfb else nn.Identity() for c in in_channels)
        self.convs = nn.ModuleList(nn.Conv2d(c, self.num_anchors * self.num_outputs, 1) for c in in_channels)
        for conv in self.convs:
            init_prior_bias(conv.bias, self.num_anchors, self.num_outputs, prior_prob)

    def forward(self, features: List[Tensor]) -> List[HeadOutput]:
        return [
            HeadOutput(to_slots(conv(rfb(x)), self.num_anchors), self.anchors[level].view(1, -1, 1, 1, 2))
            for level, (x, rfb, conv) in enumerate(zip(features, self.rfbs, self.convs))
        ]
