"""Box geometry on tensors (``x1, y1, x2, y2`` unless the name says otherwise).

The numpy counterpart for the data pipeline is :func:`yolo_asff.data.transforms.box_iou_np`;
NMS is :func:`torchvision.ops.batched_nms` through :mod:`yolo_asff.engine.postprocess`.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["aligned_iou", "batched_iou", "shape_iou", "xyxy_to_cxcywh"]

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


def batched_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix per batch item: ``a`` ``(B, N, 4)``, ``b`` ``(B, M, 4)`` → ``(B, N, M)``."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (_area(a)[:, :, None] + _area(b)[:, None, :] - inter + _EPS)


def shape_iou(wh_a: Tensor, wh_b: Tensor) -> Tensor:
    """IoU of box shapes aligned at a corner (position ignored): ``(N, 2)`` × ``(K, 2)`` → ``(N, K)``."""
    inter = torch.minimum(wh_a[:, None, 0], wh_b[None, :, 0]) * torch.minimum(wh_a[:, None, 1], wh_b[None, :, 1])
    return inter / (wh_a.prod(-1)[:, None] + wh_b.prod(-1)[None, :] - inter + _EPS)


def xyxy_to_cxcywh(boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """Centres ``(..., 2)`` and sizes ``(..., 2)`` of xyxy boxes."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
