"""The official ASFF head: guided anchoring with a deformable feature adaption (ASFF paper, section 3.1).

Each cell has ``A + 1`` prediction slots: one per anchor of its level and one anchor-free
slot. A 1×1 ``guide`` conv predicts a log-size correction per slot, so slot k's anchor is
``exp(guide_k) · anchor_k`` (``exp(guide) · 4·stride`` for the anchor-free slot). The
guide's output, detached, also drives the sampling offsets of a 3×3 deformable conv
(``torchvision.ops.DeformConv2d``, one offset group per slot) that adapts the features to
the predicted shapes before the 1×1 output conv (guided anchoring: Wang et al., "Region Proposal
by Guided Anchoring", 2019). The released ASFF checkpoints need this head; it can be trained
from scratch too (see :class:`~yolo_asff.models.loss.GuidedYoloLoss`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from .blocks import RFB, init_prior_bias
from .head import DenseHead, HeadOutput, to_slots

__all__ = [
    "GuidedAnchorHead", "GuidedLevel", "FeatureAdaption", "guided_output", "slot_anchor_table", "predicted_anchor_sizes",
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


def guided_output(raw: Tensor, guide: Tensor, slot_base: Tensor) -> HeadOutput:
    """One level's :class:`~yolo_asff.models.head.HeadOutput` from its logits and guide.

    ``raw`` ``(B, S, H, W, 5 + C)`` and ``guide`` ``(B, S, H, W, 2)`` as the level conv gives them;
    ``slot_base`` ``(1, S, 1, 1, 2)`` the level's row of :func:`slot_anchor_table`. The anchors are
    the predicted sizes, detached: the box terms of the loss do not train the guide, its own
    ``guide`` term does (through ``guide``).
    """
    return HeadOutput(raw, predicted_anchor_sizes(guide.detach(), slot_base), guide)


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

    ``forward(x)`` with ``x`` ``(B, C, H, W)`` returns ``(raw (B, S, H, W, 5 + C), guide (B, S, H, W, 2))``.
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

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        guide = self.guide_wh(x)
        raw = self.conv(self.adaption(x, guide))
        return to_slots(raw, self.num_slots), to_slots(guide, self.num_slots)


class GuidedAnchorHead(DenseHead):
    """Guided-anchor heads for every level (the official ASFF head).

    Args:
        in_channels: channel count of each level, stride-ascending.
        strides: each level's stride.
        anchors: ``(L, A, 2)`` base anchors (w, h) in input pixels, one row per level.
        num_classes: number of object classes C.
        rfb: put an :class:`~yolo_asff.models.blocks.RFB` block in each feature adaption (ASFF*).
        prior_prob: initial objectness and class probability.

    ``forward(features)`` takes ``L`` maps ``(B, in_channels[l], H_l, W_l)`` and returns one
    :class:`~yolo_asff.models.head.HeadOutput` per level (:func:`guided_output`: ``S = A + 1``
    slots, the anchor-free one last; ``anchors`` the predicted sizes ``(B, S, H_l, W_l, 2)``;
    ``guide`` the log-size corrections). :meth:`~yolo_asff.models.head.DenseHead.decode` turns
    them into ``(B, N, 5 + C)`` with ``N = Σ S·H_l·W_l`` in (level, slot, y, x) order, levels
    stride-ascending like every head of this package.
    """

    guided = True
    extra_slots = 1  # the anchor-free slot

    def build_levels(self, in_channels: Sequence[int], rfb: bool, prior_prob: float) -> None:
        self.register_buffer("slot_anchors", slot_anchor_table(self.anchors, self.strides), persistent=False)
        self.levels = nn.ModuleList(
            GuidedLevel(c, self.num_anchors, self.num_classes, rfb, prior_prob) for c in in_channels
        )

    def forward(self, features: List[Tensor]) -> List[HeadOutput]:
        return [
            guided_output(*level(x), self.slot_anchors[i].view(1, -1, 1, 1, 2))
            for i, (level, x) in enumerate(zip(self.levels, features))
        ]
