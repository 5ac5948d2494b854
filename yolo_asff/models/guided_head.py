"""The official ASFF head: guided anchoring with a deformable feature adaption (SPEC section 11).

Each cell has ``A + 1`` prediction slots: one per anchor of its level and one anchor-free
slot. A 1×1 ``guide`` conv predicts a log-size correction per slot, so slot k's anchor is
``exp(guide_k) · anchor_k`` (``exp(guide) · 4·stride`` for the anchor-free slot). The
guide's output, detached, also drives the sampling offsets of a 3×3 deformable conv
(``torchvision.ops.DeformConv2d``, one offset group per slot) that adapts the features to
the predicted shapes before the 1×1 output conv. The released ASFF checkpoints need this
head; it can be trained from scratch too (see :class:`~yolo_asff.models.loss.GuidedYoloLoss`).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from .blocks import RFB, init_prior_bias
from .head import anchor_table, decode_level

__all__ = [
    "GuidedAnchorHead", "GuidedLevel", "FeatureAdaption", "GuidedOutput", "slot_anchor_table", "predicted_anchor_sizes",
]

FREE_SLOT_SCALE = 4.0  # the anchor-free slot's base size is this many strides


def slot_anchor_table(anchors: Tensor, strides: Sequence[int]) -> Tensor:
    """``(L, A + 1, 2)`` base size (w, h) of every slot: the ``(L, A, 2)`` anchors, then 4·stride (anchor-free)."""
    free = torch.tensor([[FREE_SLOT_SCALE * s] * 2 for s in strides], dtype=anchors.dtype, device=anchors.device)
    return torch.cat((anchors, free[:, None]), dim=1)


def predicted_anchor_sizes(guide: Tensor, slot_base: Tensor, max_log: Optional[float] = None) -> Tensor:
    """Predicted anchor (w, h) in input pixels: ``exp(guide) · slot_base``, in float32.

    Args:
        guide: ``(..., 2)`` log-size corrections, e.g. ``(B, S, H, W, 2)`` or ``(P, 2)`` gathered slots.
        slot_base: base sizes broadcastable to ``guide``: ``(1, S, 1, 1, 2)``, or ``(P, 2)``
            (rows of :func:`slot_anchor_table`).
        max_log: clamp the log-size from above first (the loss does, so that ``exp`` cannot
            overflow on a diverging guide; decoding does not).
    """
    guide = guide.float()  # in half precision (autocast), exp would overflow above ~11
    if max_log is not None:
        guide = guide.clamp(max=max_log)
    return guide.exp() * slot_base


class GuidedOutput(NamedTuple):
    """One level's training output of :class:`GuidedAnchorHead`.

    ``raw``: ``(B, S, H, W, 5 + C)`` logits ``tx, ty, tw, th, objectness, classes`` per slot;
    ``guide``: ``(B, S, H, W, 2)`` log-size corrections (w, h) of each slot's anchor.
    ``S = A + 1`` slots, the anchor-free one last.
    """

    raw: Tensor
    guide: Tensor


class FeatureAdaption(nn.Module):
    """Optional RFB block, then a 3×3 deformable conv whose offsets come from the detached guide.

    ``forward(x, guide)`` with ``x`` ``(B, C, H, W)`` and ``guide`` ``(B, 2S, H, W)`` returns
    ``(B, C, H, W)``. The offsets conv is grouped per slot (2 → 18 channels each: a (dy, dx)
    pair per kernel tap), matching torchvision's offset layout with ``S`` offset groups.
    """

    def __init__(self, channels: int, num_slots: int, rfb: bool = False) -> None:
        super().__init__()
        self.rfb = RFB(channels) if rfb else None
        self.conv_offset = nn.Conv2d(2 * num_slots, 2 * 9 * num_slots, 1, groups=num_slots)
        self.dconv = DeformConv2d(channels, channels, 3, padding=1, bias=True)
        # Small random offsets as in guided anchoring (Wang et al., 2019): start close to a plain conv.
        nn.init.normal_(self.conv_offset.weight, std=0.1)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:
        if self.rfb is not None:
            x = self.rfb(x)
        # The guide is trained by its own shape loss only, not through the features it steers.
        offset = self.conv_offset(guide.detach())
        # torchvision's deform_conv2d needs one dtype for input, offset and weight.
        return self.dconv(x, offset.to(x.dtype))


class GuidedLevel(nn.Module):
    """The head of one level: guide conv, feature adaption, output conv.

    ``forward(x)`` with ``x`` ``(B, C, H, W)`` returns a :class:`GuidedOutput`.
    """

    def __init__(self, channels: int, num_slots: int, num_classes: int, rfb: bool, prior_prob: float) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.num_outputs = 5 + num_classes
        self.guide_wh = nn.Conv2d(channels, 2 * num_slots, 1)
        self.adaption = FeatureAdaption(channels, num_slots, rfb)
        self.conv = nn.Conv2d(channels, num_slots * self.num_outputs, 1)
        nn.init.zeros_(self.guide_wh.weight)  # every slot starts at its base anchor
        nn.init.zeros_(self.guide_wh.bias)
        init_prior_bias(self.conv.bias, num_slots, self.num_outputs, prior_prob)

    def forward(self, x: Tensor) -> GuidedOutput:
        guide = self.guide_wh(x)
        y = self.conv(self.adaption(x, guide))
        b, _, h, w = y.shape
        raw = y.view(b, self.num_slots, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous()
        guide = guide.view(b, self.num_slots, 2, h, w).permute(0, 1, 3, 4, 2).contiguous()
        return GuidedOutput(raw, guide)


class GuidedAnchorHead(nn.Module):
    """Guided-anchor heads for every level (the official ASFF head).

    Args:
        in_channels: channel count of each level, stride-ascending.
        strides: each level's stride.
        anchors: ``(L, A, 2)`` base anchors (w, h) in input pixels, one row per level.
        num_classes: number of object classes C.
        rfb: put an :class:`~yolo_asff.models.blocks.RFB` block in each feature adaption (ASFF*).
        prior_prob: initial objectness and class probability.

    ``forward(features)`` takes ``L`` maps ``(B, in_channels[l], H_l, W_l)`` and returns one
    :class:`GuidedOutput` per level (``S = A + 1`` slots). :meth:`decode` turns them into
    ``(B, N, 5 + C)`` with ``N = Σ S·H_l·W_l`` in (level, slot, y, x) order, levels
    stride-ascending like every head of this package.
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
        self.num_anchors = anchors.shape[1] + 1  # prediction slots per cell: the anchors and the anchor-free one
        self.num_outputs = 5 + num_classes
        # Anchors live in the config, not in checkpoints: they must not override a config change.
        self.register_buffer("anchors", anchors, persistent=False)
        self.register_buffer("slot_anchors", slot_anchor_table(anchors, self.strides), persistent=False)
        self.levels = nn.ModuleList(
            GuidedLevel(c, self.num_anchors, num_classes, rfb, prior_prob) for c in in_channels
        )

    def forward(self, features: List[Tensor]) -> List[GuidedOutput]:
        return [level(x) for level, x in zip(self.levels, features)]

    def predicted_anchors(self, guide: Tensor, level: int) -> Tensor:
        """``(B, S, H, W, 2)`` anchor (w, h) of every slot in input pixels, from a level's guide logits."""
        return predicted_anchor_sizes(guide, self.slot_anchors[level].view(1, -1, 1, 1, 2))

    def decode(self, outputs: List[GuidedOutput]) -> Tensor:
        """Per-level outputs → ``(B, N, 5 + C)``: ``x1, y1, x2, y2`` in input pixels, objectness, class probabilities."""
        decoded = [
            decode_level(out.raw, self.predicted_anchors(out.guide, i), self.strides[i]).flatten(1, 3)
            for i, out in enumerate(outputs)
        ]
        return torch.cat(decoded, dim=1)
