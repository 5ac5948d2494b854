"""The YOLOv3 loss with the ASFF paper's bag of freebies (SPEC section 8), as batch tensor code.

:func:`assign_targets` gives every ground-truth box its anchor, level and cell for the
whole batch at once; :class:`YoloLoss` computes every term from that assignment. There
is no Python loop over images or boxes: the only loop runs over the (three) levels.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.boxes import aligned_iou, max_iou, shape_iou, xyxy_to_cxcywh
from .head import make_grid

__all__ = ["LevelAssignment", "YoloLoss", "assign_targets", "build_loss", "LOSS_TERMS"]

LOSS_TERMS = ("xy", "wh", "iou", "obj", "cls")
_MIN_SIDE = 1e-2  # pixels: keeps log(gt / anchor) finite for degenerate boxes
_MAX_LOG_WH = 10.0  # exp(10) anchors: no real box is larger, and exp never overflows


class LevelAssignment(NamedTuple):
    """The positives of one level, ``P`` of them: indices into ``(B, A, H, W)`` and into the targets."""

    batch: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    target: Tensor


def assign_targets(
    targets: Tensor,
    anchors: Tensor,
    strides: Sequence[int],
    grid_sizes: Sequence[Tuple[int, int]],
    anchor_thresh: Optional[float] = None,
) -> List[LevelAssignment]:
    """Match ground-truth boxes to prediction slots (SPEC section 8).

    Each box goes to the one anchor of all ``L·A`` with the best shape-only IoU, at the
    level owning that anchor, in the cell holding its centre. With ``anchor_thresh``,
    every other anchor whose shape IoU exceeds it takes the box too. When several boxes
    land on the same slot, the last one (in target order) keeps it, as Darknet does.

    Args:
        targets: ``(M, 7)`` rows ``[batch index, class, x1, y1, x2, y2, weight]`` in input pixels.
        anchors: ``(L, A, 2)`` anchor (w, h) in input pixels, stride-ascending levels.
        strides: ``L`` strides.
        grid_sizes: ``L`` (H_l, W_l) feature-map sizes.
        anchor_thresh: optional shape-IoU threshold for extra anchors.

    Returns:
        one :class:`LevelAssignment` per level.
    """
    num_levels, num_anchors, _ = anchors.shape
    device = targets.device
    centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
    ious = shape_iou(sizes.clamp(min=_MIN_SIDE), anchors.reshape(-1, 2).to(targets))  # (M, L·A)
    chosen = torch.zeros_like(ious, dtype=torch.bool)
    if len(targets):
        chosen[torch.arange(len(targets), device=device), ious.argmax(1)] = True
    if anchor_thresh is not None:
        chosen |= ious > anchor_thresh
    gt_index, slot = chosen.nonzero(as_tuple=True)  # sorted by gt index: "last wins" follows target order
    result = []
    for level in range(num_levels):
        h, w = grid_sizes[level]
        on_level = (slot // num_anchors) == level
        t, a = gt_index[on_level], slot[on_level] % num_anchors
        cell = centres[t] / strides[level]
        gx = cell[:, 0].long().clamp(0, w - 1)
        gy = cell[:, 1].long().clamp(0, h - 1)
        b = targets[t, 0].long()
        linear = ((b * num_anchors + a) * h + gy) * w + gx
        unique, inverse = torch.unique(linear, return_inverse=True)
        order = torch.arange(len(linear), device=device)
        last = torch.full((len(unique),), -1, dtype=torch.long, device=device).scatter_reduce(
            0, inverse, order, reduce="amax"
        )
        result.append(LevelAssignment(b[last], a[last], gy[last], gx[last], t[last]))
    return result


def _decode(txywh: Tensor, cell_xy: Tensor, stride: int, anchors_wh: Tensor) -> Tensor:
    """Boxes ``(..., 4)`` xyxy in input pixels from logits ``(..., 4)``, cell (x, y) and anchor (w, h), broadcast."""
    xy = (txywh[..., :2].sigmoid() + cell_xy) * stride
    wh = txywh[..., 2:4].clamp(max=_MAX_LOG_WH).exp() * anchors_wh
    return torch.cat((xy - wh / 2, xy + wh / 2), dim=-1)


def _per_image_boxes(targets: Tensor, batch_size: int) -> Tensor:
    """Ground-truth boxes padded per image: ``(B, G, 4)`` (padding rows are all-zero boxes, IoU 0)."""
    b = targets[:, 0].long()
    counts = torch.bincount(b, minlength=batch_size)
    g = int(counts.max()) if len(targets) else 0
    padded = targets.new_zeros(batch_size, max(g, 1), 4)
    if len(targets):
        order = torch.argsort(b, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(b), device=b.device) - starts[b[order]]
        padded[b[order], slot] = targets[order, 2:6]
    return padded


class YoloLoss(nn.Module):
    """YOLOv3 loss: xy BCE, wh L1, IoU (or GIoU), objectness with the ignore rule, class BCE.

    Args:
        anchors: ``(L, A, 2)`` anchors (w, h) in input pixels, stride-ascending.
        strides: each level's stride.
        num_classes: C.
        ignore_thresh: a non-positive prediction whose box has IoU above this with any
            ground-truth box of its image gets no objectness loss.
        label_smooth: class targets 1 − 1/C for the true class and 1/C for the others.
        iou_type: ``"iou"`` (1 − IoU²) or ``"giou"`` (1 − GIoU).
        weights: weight of each term in :data:`LOSS_TERMS` (missing terms weigh 1).
        anchor_thresh: optional extra-anchor threshold of :func:`assign_targets`.

    ``forward(outputs, targets, image_size)`` takes the model's training output (a list of
    ``(B, A, H_l, W_l, 5 + C)`` logits), targets ``(M, 7)`` ``[batch index, class, x1, y1,
    x2, y2, mixup weight]`` in input pixels and the input ``(h, w)``; it returns the total
    (a scalar, summed over levels and positions and divided by B) and a dict of the
    weighted terms, detached, for logging.
    """

    def __init__(
        self,
        anchors: Tensor,
        strides: Sequence[int],
        num_classes: int,
        ignore_thresh: float = 0.7,
        label_smooth: bool = True,
        iou_type: str = "iou",
        weights: Optional[Mapping[str, float]] = None,
        anchor_thresh: Optional[float] = None,
    ) -> None:
        super().__init__()
        if iou_type not in ("iou", "giou"):
            raise ValueError(f"iou_type must be 'iou' or 'giou', got {iou_type!r}")
        self.register_buffer("anchors", torch.as_tensor(anchors, dtype=torch.float32).clone(), persistent=False)
        self.strides = tuple(int(s) for s in strides)
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.label_smooth = label_smooth and num_classes > 1
        self.giou = iou_type == "giou"
        self.weights = {term: float((weights or {}).get(term, 1.0)) for term in LOSS_TERMS}
        self.anchor_thresh = anchor_thresh

    def _class_targets(self, labels: Tensor) -> Tensor:
        """``(P, C)`` class targets for ``(P,)`` labels (smoothed when configured)."""
        c = self.num_classes
        low, high = (1.0 / c, 1.0 - 1.0 / c) if self.label_smooth else (0.0, 1.0)
        out = torch.full((len(labels), c), low, device=labels.device)
        out[torch.arange(len(labels), device=labels.device), labels] = high
        return out

    def _not_ignored_sparse(self, raw: Tensor, targets: Tensor, stride: int, anchors: Tensor) -> Tensor:
        """``(B, A, H, W)`` bool: False where a prediction's box has IoU > ``ignore_thresh`` with a box of its image.

        Only predictions that can pass are looked at. IoU(p, g) > 0.5 needs p's centre inside g
        (a centre outside leaves at least half of p outside g), and a prediction's centre lies in
        its own cell; so only the cells a ground-truth box overlaps are decoded and compared with
        that box, instead of every prediction with every box (``ignore_thresh`` >= 0.5 only).
        """
        batch_size, num_anchors, h, w, _ = raw.shape
        not_ignored = torch.ones(raw.shape[:4], dtype=torch.bool, device=raw.device)
        if len(targets) == 0:
            return not_ignored
        boxes = targets[:, 2:6]
        lo = (boxes[:, :2] / stride).floor().long()
        hi = (boxes[:, 2:] / stride).ceil().long() - 1
        lo = torch.stack((lo[:, 0].clamp(0, w - 1), lo[:, 1].clamp(0, h - 1)), dim=1)
        hi = torch.stack((hi[:, 0].clamp(0, w - 1), hi[:, 1].clamp(0, h - 1)), dim=1)
        extent = (hi - lo + 1).clamp(min=0)  # cells covered along x and y
        counts = extent.prod(1)
        t = torch.repeat_interleave(torch.arange(len(targets), device=raw.device), counts)  # (K,)
        if len(t) == 0:
            return not_ignored
        offset = torch.arange(len(t), device=raw.device) - (torch.cumsum(counts, 0) - counts)[t]
        gx = lo[t, 0] + offset % extent[t, 0]
        gy = lo[t, 1] + offset // extent[t, 0]
        b = targets[t, 0].long()
        pred = raw[..., :4][b, :, gy, gx]  # (K, A, 4): slice first, so only the box logits are gathered
        cell = torch.stack((gx, gy), dim=1).to(raw.dtype)[:, None, :]
        decoded = _decode(pred, cell, stride, anchors[None])
        hit = aligned_iou(decoded, boxes[t][:, None, :]) > self.ignore_thresh  # (K, A)
        k, a = hit.nonzero(as_tuple=True)
        not_ignored[b[k], a, gy[k], gx[k]] = False
        return not_ignored

    def forward(
        self, outputs: List[Tensor], targets: Tensor, image_size: Tuple[int, int]
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        batch_size = outputs[0].shape[0]
        device = outputs[0].device
        targets = targets.to(device=device, dtype=torch.float32).reshape(-1, 7)
        labels = targets[:, 1].long()
        centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
        sizes = sizes.clamp(min=_MIN_SIDE)
        # SPEC: small boxes weigh up to 2x, a box filling the image 1x.
        scale_weight = 2.0 - sizes.prod(-1) / float(image_size[0] * image_size[1])
        gt_per_image = _per_image_boxes(targets, batch_size)
        grid_sizes = [(o.shape[2], o.shape[3]) for o in outputs]
        assignment = assign_targets(targets, self.anchors, self.strides, grid_sizes, self.anchor_thresh)

        sums = {term: torch.zeros((), device=device) for term in LOSS_TERMS}
        for level, (raw, pos) in enumerate(zip(outputs, assignment)):
            raw = raw.float()
            stride, anchors = self.strides[level], self.anchors[level]
            _, num_anchors, h, w, _ = raw.shape
            with torch.no_grad():
                if self.ignore_thresh >= 0.5:
                    obj_mask = self._not_ignored_sparse(raw, targets, stride, anchors)
                else:
                    boxes = _decode(raw[..., :4], make_grid(h, w, device, raw.dtype), stride,
                                    anchors.view(1, num_anchors, 1, 1, 2))
                    best_iou = max_iou(boxes.view(batch_size, -1, 4), gt_per_image)
                    obj_mask = (best_iou <= self.ignore_thresh).view(batch_size, num_anchors, h, w)
            obj_target = torch.zeros_like(obj_mask, dtype=raw.dtype)
            index = (pos.batch, pos.anchor, pos.gy, pos.gx)
            obj_mask = obj_mask.index_put(index, torch.ones_like(pos.batch, dtype=torch.bool))
            obj_target = obj_target.index_put(index, targets[pos.target, 6])
            obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="none")
            sums["obj"] = sums["obj"] + (obj * obj_mask).sum()
            if len(pos.target) == 0:
                continue

            p = raw[index]  # (P, 5 + C)
            t = pos.target
            weight = scale_weight[t]
            gxy = torch.stack((pos.gx, pos.gy), dim=1).to(raw.dtype)
            xy_target = centres[t] / stride - gxy
            wh_target = torch.log(sizes[t] / anchors[pos.anchor])
            xy_loss = F.binary_cross_entropy_with_logits(p[:, :2], xy_target, reduction="none").sum(1)
            wh_loss = (p[:, 2:4] - wh_target).abs().sum(1)
            boxes = _decode(p[:, :4], gxy, stride, anchors[pos.anchor])
            iou = aligned_iou(boxes, targets[t, 2:6], giou=self.giou)
            iou_loss = 1.0 - iou if self.giou else 1.0 - iou * iou
            cls_loss = F.binary_cross_entropy_with_logits(
                p[:, 5:], self._class_targets(labels[t]), reduction="none"
            ).sum(1)
            sums["xy"] = sums["xy"] + (weight * xy_loss).sum()
            sums["wh"] = sums["wh"] + (weight * wh_loss).sum()
            sums["iou"] = sums["iou"] + (weight * iou_loss).sum()
            sums["cls"] = sums["cls"] + cls_loss.sum()

        terms = {term: self.weights[term] * value / batch_size for term, value in sums.items()}
        total = sum(terms.values())
        return total, {term: value.detach() for term, value in terms.items()}


def build_loss(cfg, model: nn.Module) -> YoloLoss:
    """The loss for ``model`` (its anchors, strides and classes) with ``cfg.train``'s settings."""
    from ..engine.checkpoint import unwrap_model

    head = unwrap_model(model).head
    t = cfg.train
    return YoloLoss(
        head.anchors,
        head.strides,
        head.num_classes,
        ignore_thresh=t.ignore_thresh,
        label_smooth=t.label_smooth,
        iou_type=t.iou_loss,
        weights=t.loss_weights,
        anchor_thresh=t.anchor_thresh,
    ).to(head.anchors.device)
