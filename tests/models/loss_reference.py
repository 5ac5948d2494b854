"""A plain-loop implementation of the YOLOv3 loss, for cross-checking and benchmarking only (test code).

It walks images and boxes one by one in Python, as the official ASFF code does (IoU of an
image's predictions with its boxes in one call, the assignment box by box), and builds
dense target tensors that the loss formulas then read. ``tests/models/test_loss.py`` checks that it and
:class:`~yolo_asff.models.loss.YoloLoss` agree; ``scripts/bench_loss.py`` times both.
It reads raw logits ``(B, A, H, W, 5 + C)`` per level and the loss's own anchors (the plain head).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from yolo_asff.models.head import make_grid
from yolo_asff.models.loss import LOSS_TERMS, YoloLoss, _decode
from yolo_asff.utils.boxes import aligned_iou

__all__ = ["reference_assign", "reference_loss"]


def _shape_iou(w1: float, h1: float, w2: float, h2: float) -> float:
    inter = min(w1, w2) * min(h1, h2)
    return inter / (w1 * h1 + w2 * h2 - inter + 1e-9)


def reference_assign(
    targets: Tensor, anchors: Tensor, strides: Sequence[int], grid_sizes: Sequence[Tuple[int, int]],
    anchor_thresh: Optional[float] = None,
) -> List[Dict[Tuple[int, int, int, int], int]]:
    """:func:`~yolo_asff.models.loss.assign_targets`, box by box: per level, slot (b, a, gy, gx) → target row."""
    num_levels, num_anchors, _ = anchors.shape
    flat = [tuple(a) for a in anchors.reshape(-1, 2).tolist()]
    owners: List[Dict[Tuple[int, int, int, int], int]] = [{} for _ in range(num_levels)]
    for index, r in enumerate(targets.tolist()):
        gw, gh = max(r[4] - r[2], 1e-2), max(r[5] - r[3], 1e-2)
        ious = [_shape_iou(gw, gh, aw, ah) for aw, ah in flat]
        best = max(range(len(ious)), key=lambda k: ious[k])
        for k in range(len(ious)):
            if k != best and (anchor_thresh is None or ious[k] <= anchor_thresh):
                continue
            level = k // num_anchors
            h, w = grid_sizes[level]
            gx = min(max(int((r[2] + r[4]) / 2 / strides[level]), 0), w - 1)
            gy = min(max(int((r[3] + r[5]) / 2 / strides[level]), 0), h - 1)
            owners[level][(int(r[0]), k % num_anchors, gy, gx)] = index  # a later box overwrites
    return owners


def reference_loss(
    loss: YoloLoss, outputs: List[Tensor], targets: Tensor, image_size: Tuple[int, int]
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The loss of ``loss`` (its settings) computed with Python loops over images and boxes."""
    batch_size = outputs[0].shape[0]
    num_anchors = loss.anchors.shape[1]
    anchors = loss.anchors.tolist()
    rows = targets.tolist()
    area = float(image_size[0] * image_size[1])
    sums = {term: torch.zeros(()) for term in LOSS_TERMS}
    grid_sizes = [(o.shape[2], o.shape[3]) for o in outputs]
    owners = reference_assign(targets, loss.anchors, loss.strides, grid_sizes, loss.anchor_thresh)
    for level, raw in enumerate(outputs):
        raw = raw.float()
        stride = loss.strides[level]
        _, _, h, w, _ = raw.shape
        grid = make_grid(h, w, raw.device, raw.dtype)
        boxes = _decode(raw[..., :4], grid, stride, loss.anchors[level].view(1, num_anchors, 1, 1, 2))
        obj_target = torch.zeros(raw.shape[:4])
        obj_mask = torch.ones(raw.shape[:4], dtype=torch.bool)
        slot_owner = owners[level]
        for b in range(batch_size):  # per image, IoU of all its predictions with its boxes, as the official code
            gts = torch.tensor([r[2:6] for r in rows if int(r[0]) == b]).reshape(-1, 4)
            if len(gts):
                with torch.no_grad():
                    best = box_iou(boxes[b].reshape(-1, 4), gts).amax(1).view(num_anchors, h, w)
                obj_mask[b] = best <= loss.ignore_thresh
        for (b, a, gy, gx), index in slot_owner.items():
            r = rows[index]
            obj_target[b, a, gy, gx] = r[6]
            obj_mask[b, a, gy, gx] = True
            gw, gh = max(r[4] - r[2], 1e-2), max(r[5] - r[3], 1e-2)
            weight = 2.0 - gw * gh / area
            p = raw[b, a, gy, gx]
            xy_t = torch.tensor([(r[2] + r[4]) / 2 / stride - gx, (r[3] + r[5]) / 2 / stride - gy])
            aw, ah = anchors[level][a]
            wh_t = torch.tensor([math.log(gw / aw), math.log(gh / ah)])
            sums["xy"] = sums["xy"] + weight * F.binary_cross_entropy_with_logits(p[:2], xy_t, reduction="sum")
            sums["wh"] = sums["wh"] + weight * (p[2:4] - wh_t).abs().sum()
            iou = aligned_iou(boxes[b, a, gy, gx], torch.tensor(r[2:6]), giou=loss.giou)
            sums["iou"] = sums["iou"] + weight * ((1 - iou) if loss.giou else (1 - iou * iou))
            cls_t = loss._class_targets(torch.tensor([int(r[1])]))[0]
            sums["cls"] = sums["cls"] + F.binary_cross_entropy_with_logits(p[5:], cls_t, reduction="sum")
        obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="none")
        sums["obj"] = sums["obj"] + (obj * obj_mask).sum()
    terms = {term: loss.weights[term] * value / batch_size for term, value in sums.items()}
    return sum(terms.values()), {term: value.detach() for term, value in terms.items()}
