"""Box geometry on tensors (``x1, y1, x2, y2`` unless the name says otherwise).

The numpy counterpart for the data pipeline is :func:`yolo_asff.data.transforms.box_iou_np`;
NMS is :func:`torchvision.ops.batched_nms` through :mod:`yolo_asff.engine.postprocess`.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["aligned_iou", "aligned_shape_iou", "max_iou", "shape_iou", "xyxy_to_cxcywh"]

_EPS = 1e-9


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def aligned_iou(a: Tensor, b: Tensor, giou: bool = False) -> Tensor:
    """IoU (or GIoU) of matching rows: ``a`` and ``b`` ``(..., 4)`` → ``(...)``. Differentiable."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = _area(a) + _area(b) - inter
    iou = inter / (union + _EPS)
    if not giou:
        return iou
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + _EPS)


def max_iou(boxes: Tensor, gts: Tensor) -> Tensor:
    """Each box's best IoU with the ground truth of its batch item.

    ``boxes`` ``(B, N, 4)``, ``gts`` ``(B, G, 4)`` (all-zero padding rows have IoU 0) → ``(B, N)``.
    Works on one coordinate plane at a time, in place where it can: the ``(B, G, N)``
    intermediates stay few and contiguous along N, which is what makes this fast on CPUs.
    """
    bx1, by1, bx2, by2 = (boxes[..., i].unsqueeze(1) for i in range(4))  # (B, 1, N)
    gx1, gy1, gx2, gy2 = (gts[..., i].unsqueeze(2) for i in range(4))  # (B, G, 1)
    inter = torch.minimum(bx2, gx2).sub_(torch.maximum(bx1, gx1)).clamp_(min=0)
    inter.mul_(torch.minimum(by2, gy2).sub_(torch.maximum(by1, gy1)).clamp_(min=0))  # (B, G, N)
    union = ((bx2 - bx1) * (by2 - by1) + (gx2 - gx1) * (gy2 - gy1)).sub_(inter).add_(_EPS)
    return inter.div_(union).amax(1)


def shape_iou(wh_a: Tensor, wh_b: Tensor) -> Tensor:
    """IoU of box shapes aligned at a corner (position ignored): ``(N, 2)`` × ``(K, 2)`` → ``(N, K)``."""
    inter = torch.minimum(wh_a[:, None, 0], wh_b[None, :, 0]) * torch.minimum(wh_a[:, None, 1], wh_b[None, :, 1])
    return inter / (wh_a.prod(-1)[:, None] + wh_b.prod(-1)[None, :] - inter + _EPS)


def aligned_shape_iou(wh_a: Tensor, wh_b: Tensor) -> Tensor:
    """IoU of the shapes of matching rows (position ignored): ``(..., 2)`` and ``(..., 2)`` → ``(...)``. Differentiable."""
    inter = torch.minimum(wh_a[..., 0], wh_b[..., 0]) * torch.minimum(wh_a[..., 1], wh_b[..., 1])
    return inter / (wh_a.prod(-1) + wh_b.prod(-1) - inter + _EPS)


def xyxy_to_cxcywh(boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """Centres ``(..., 2)`` and sizes ``(..., 2)`` of xyxy boxes."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
