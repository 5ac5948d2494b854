"""The YOLOv3 loss with the ASFF paper's bag of freebies (SPEC section 8), as batch tensor code.

:func:`assign_targets` gives every ground-truth box its anchor, level and cell for the
whole batch at once; :class:`YoloLoss` computes every term from that assignment. There
is no Python loop over images or boxes: the only loop runs over the (three) levels.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LOSS_TERMS as _ALL_TERMS
from ..utils.boxes import aligned_iou, aligned_shape_iou, max_iou, shape_iou, xyxy_to_cxcywh
from .guided_head import GuidedAnchorHead, predicted_anchor_sizes, slot_anchor_table
from .head import make_grid

__all__ = ["LevelAssignment", "YoloLoss", "GuidedYoloLoss", "assign_targets", "last_wins", "build_loss", "LOSS_TERMS"]

# The config's list (what train.loss_weights may name) is the one source; "guide" is the guided head's own term.
LOSS_TERMS = tuple(term for term in _ALL_TERMS if term != "guide")
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
    dedup: bool = True,
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
        dedup: apply the last-wins rule (off: every (box, anchor) match, in target order,
            for callers that move boxes between slots first, then call :func:`last_wins`).

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
        pos = LevelAssignment(targets[t, 0].long(), a, gy, gx, t)
        result.append(last_wins(pos, (h, w), num_anchors) if dedup else pos)
    return result


def last_wins(pos: LevelAssignment, grid_size: Tuple[int, int], num_slots: int) -> LevelAssignment:
    """Keep one entry per slot ``(batch, anchor, gy, gx)``: the last in ``pos`` order (Darknet's rule).

    ``num_slots`` is the number of anchor slots per cell (the range of ``pos.anchor``).
    """
    h, w = grid_size
    linear = ((pos.batch * num_slots + pos.anchor) * h + pos.gy) * w + pos.gx
    unique, inverse = torch.unique(linear, return_inverse=True)
    order = torch.arange(len(linear), device=linear.device)
    last = torch.full((len(unique),), -1, dtype=torch.long, device=linear.device).scatter_reduce(
        0, inverse, order, reduce="amax"
    )
    return LevelAssignment(*(field[last] for field in pos))


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

    terms: Tuple[str, ...] = LOSS_TERMS

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
        self.weights = {term: float((weights or {}).get(term, 1.0)) for term in self.terms}
        self.anchor_thresh = anchor_thresh

    def _class_targets(self, labels: Tensor) -> Tensor:
        """``(P, C)`` class targets for ``(P,)`` labels (smoothed when configured)."""
        c = self.num_classes
        low, high = (1.0 / c, 1.0 - 1.0 / c) if self.label_smooth else (0.0, 1.0)
        out = torch.full((len(labels), c), low, device=labels.device)
        out[torch.arange(len(labels), device=labels.device), labels] = high
        return out

    def _not_ignored_sparse(self, raw: Tensor, targets: Tensor, stride: int, anchor_map: Tensor) -> Tensor:
        """``(B, A, H, W)`` bool: False where a prediction's box has IoU > ``ignore_thresh`` with a box of its image.

        Only predictions that can pass are looked at. IoU(p, g) > 0.5 needs p's centre inside g
        (a centre outside leaves at least half of p outside g), and a prediction's centre lies in
        its own cell; so only the cells a ground-truth box overlaps are decoded and compared with
        that box, instead of every prediction with every box (``ignore_thresh`` >= 0.5 only).
        ``anchor_map`` is the ``(1 or B, A, 1 or H, 1 or W, 2)`` anchor of every prediction, or ``(A, 2)``.
        """
        batch_size, num_anchors, h, w, _ = raw.shape
        if anchor_map.dim() == 2:
            anchor_map = anchor_map.view(1, num_anchors, 1, 1, 2)
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
        anchors = anchor_map.expand(batch_size, num_anchors, h, w, 2)[b, :, gy, gx]  # (K, A, 2)
        cell = torch.stack((gx, gy), dim=1).to(raw.dtype)[:, None, :]
        decoded = _decode(pred, cell, stride, anchors)
        hit = aligned_iou(decoded, boxes[t][:, None, :]) > self.ignore_thresh  # (K, A)
        k, a = hit.nonzero(as_tuple=True)
        not_ignored[b[k], a, gy[k], gx[k]] = False
        return not_ignored

    # Hooks that a head with other outputs (the guided-anchor head) overrides.

    def _level_inputs(self, outputs: List[Any]) -> List[Tuple[Tensor, Tensor]]:
        """Per level: the ``(B, A, H, W, 5 + C)`` logits and the ``(1, A, 1, 1, 2)`` anchor of every slot."""
        return [(raw.float(), self.anchors[level].view(1, -1, 1, 1, 2)) for level, raw in enumerate(outputs)]

    def _assign(
        self, targets: Tensor, sizes: Tensor, inputs: List[Tuple[Tensor, Tensor]], grid_sizes: List[Tuple[int, int]]
    ) -> Tuple[List[LevelAssignment], Any]:
        """The positives of each level, and whatever :meth:`_extra_terms` needs from the assignment."""
        return assign_targets(targets, self.anchors, self.strides, grid_sizes, self.anchor_thresh), None

    def _extra_terms(self, sums: Dict[str, Tensor], outputs: List[Any], sizes: Tensor, context: Any) -> None:
        """Add head-specific terms to ``sums`` (none for the plain YOLOv3 head)."""

    def forward(
        self, outputs: List[Any], targets: Tensor, image_size: Tuple[int, int]
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        inputs = self._level_inputs(outputs)
        batch_size = inputs[0][0].shape[0]
        device = inputs[0][0].device
        targets = targets.to(device=device, dtype=torch.float32).reshape(-1, 7)
        labels = targets[:, 1].long()
        centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
        sizes = sizes.clamp(min=_MIN_SIDE)
        # SPEC: small boxes weigh up to 2x, a box filling the image 1x.
        scale_weight = 2.0 - sizes.prod(-1) / float(image_size[0] * image_size[1])
        # IoU > ignore_thresh >= 0.5 needs the prediction's centre inside the box: only the cells under a box
        # are checked (_not_ignored_sparse). A lower threshold compares every prediction with every box of its image.
        sparse_ignore = self.ignore_thresh >= 0.5
        gt_per_image = None if sparse_ignore else _per_image_boxes(targets, batch_size)  # (B, G, 4)
        grid_sizes = [(raw.shape[2], raw.shape[3]) for raw, _ in inputs]
        assignment, context = self._assign(targets, sizes, inputs, grid_sizes)

        sums = {term: torch.zeros((), device=device) for term in self.terms}
        for level, ((raw, anchor_map), pos) in enumerate(zip(inputs, assignment)):
            stride = self.strides[level]
            _, num_anchors, h, w, _ = raw.shape
            with torch.no_grad():
                if sparse_ignore:
                    obj_mask = self._not_ignored_sparse(raw, targets, stride, anchor_map)
                else:
                    boxes = _decode(raw[..., :4], make_grid(h, w, device, raw.dtype), stride, anchor_map)
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
            anchors = anchor_map.expand(batch_size, num_anchors, h, w, 2)[index]  # (P, 2)
            t = pos.target
            weight = scale_weight[t]
            gxy = torch.stack((pos.gx, pos.gy), dim=1).to(raw.dtype)
            xy_target = centres[t] / stride - gxy
            wh_target = torch.log(sizes[t] / anchors)
            xy_loss = F.binary_cross_entropy_with_logits(p[:, :2], xy_target, reduction="none").sum(1)
            wh_loss = (p[:, 2:4] - wh_target).abs().sum(1)
            boxes = _decode(p[:, :4], gxy, stride, anchors)
            iou = aligned_iou(boxes, targets[t, 2:6], giou=self.giou)
            iou_loss = 1.0 - iou if self.giou else 1.0 - iou * iou
            cls_loss = F.binary_cross_entropy_with_logits(
                p[:, 5:], self._class_targets(labels[t]), reduction="none"
            ).sum(1)
            sums["xy"] = sums["xy"] + (weight * xy_loss).sum()
            sums["wh"] = sums["wh"] + (weight * wh_loss).sum()
            sums["iou"] = sums["iou"] + (weight * iou_loss).sum()
            sums["cls"] = sums["cls"] + cls_loss.sum()
        self._extra_terms(sums, outputs, sizes, context)

        terms = {term: self.weights[term] * value / batch_size for term, value in sums.items()}
        total = sum(terms.values())
        return total, {term: value.detach() for term, value in terms.items()}


class GuidedYoloLoss(YoloLoss):
    """:class:`YoloLoss` for the guided-anchor head (SPEC section 11).

    ``outputs`` is the head's training output, one
    :class:`~yolo_asff.models.guided_head.GuidedOutput` ``(raw (B, S, H, W, 5 + C), guide
    (B, S, H, W, 2))`` per level, ``S = A + 1`` slots with the anchor-free one last. Each
    slot's anchor is its predicted size (``exp(guide)`` times the base anchor, or times
    ``4·stride`` for the anchor-free slot), detached: the box terms do not train the guide.

    Additions to the YOLOv3 loss:

    - assignment: a box still goes to the best of all base anchors by shape IoU, at that
      anchor's level and cell; it moves to the cell's anchor-free slot when that slot's
      predicted size has a higher shape IoU with it than the best base anchor;
    - wh target: ``log(gt size / predicted anchor of the chosen slot)``; the ignore rule
      decodes every slot with its predicted anchor;
    - ``guide`` term: ``1 − IoU²`` between the predicted anchor size and the box size (both
      centred) at the best anchor's slot and at the anchor-free slot of the box's cell.

    ``anchors`` are the base anchors ``(L, A, 2)``; the other arguments as for :class:`YoloLoss`.
    """

    terms = _ALL_TERMS  # LOSS_TERMS, then "guide"

    def __init__(self, anchors: Tensor, strides: Sequence[int], num_classes: int, **kwargs: Any) -> None:
        super().__init__(anchors, strides, num_classes, **kwargs)
        self.register_buffer("slot_anchors", slot_anchor_table(self.anchors, self.strides), persistent=False)

    def _level_inputs(self, outputs: List[Any]) -> List[Tuple[Tensor, Tensor]]:
        inputs = []
        for level, out in enumerate(outputs):
            base = self.slot_anchors[level].view(1, -1, 1, 1, 2)
            predicted = predicted_anchor_sizes(out.guide.detach(), base, max_log=_MAX_LOG_WH)
            inputs.append((out.raw.float(), predicted))
        return inputs

    def _assign(
        self, targets: Tensor, sizes: Tensor, inputs: List[Tuple[Tensor, Tensor]], grid_sizes: List[Tuple[int, int]]
    ) -> Tuple[List[LevelAssignment], List[LevelAssignment]]:
        """Positives per level (anchor = the chosen slot), and the slots where the guide learns each box."""
        matches = assign_targets(targets, self.anchors, self.strides, grid_sizes, self.anchor_thresh, dedup=False)
        free_slot = self.anchors.shape[1]
        positives, guide_slots = [], []
        for level, ((_, anchor_map), pos) in enumerate(zip(inputs, matches)):
            gt = sizes[pos.target]
            free = torch.full_like(pos.anchor, free_slot)
            free_size = anchor_map[pos.batch, free_slot, pos.gy, pos.gx]  # (P, 2)
            free_better = aligned_shape_iou(gt, free_size) > aligned_shape_iou(gt, self.anchors[level][pos.anchor])
            chosen = pos._replace(anchor=torch.where(free_better, free, pos.anchor))
            positives.append(last_wins(chosen, grid_sizes[level], free_slot + 1))
            # The guide learns each box at its best anchor's slot and at the anchor-free slot.
            at_both = LevelAssignment(*(torch.cat((field, field)) for field in pos))
            at_both = at_both._replace(anchor=torch.cat((pos.anchor, free)))
            guide_slots.append(last_wins(at_both, grid_sizes[level], free_slot + 1))
        return positives, guide_slots

    def _extra_terms(
        self, sums: Dict[str, Tensor], outputs: List[Any], sizes: Tensor, guide_slots: List[LevelAssignment]
    ) -> None:
        for level, (out, pos) in enumerate(zip(outputs, guide_slots)):
            if len(pos.target) == 0:
                # Keep the guide conv in the graph with a zero gradient: under DDP every parameter
                # must receive a gradient in every step, and a batch without boxes would leave it out.
                sums["guide"] = sums["guide"] + 0.0 * out.guide.sum()
                continue
            guide = out.guide.float()[pos.batch, pos.anchor, pos.gy, pos.gx]  # (P, 2)
            predicted = predicted_anchor_sizes(guide, self.slot_anchors[level][pos.anchor], max_log=_MAX_LOG_WH)
            iou = aligned_shape_iou(predicted, sizes[pos.target])
            sums["guide"] = sums["guide"] + (1.0 - iou * iou).sum()


def build_loss(cfg, model: nn.Module) -> YoloLoss:
    """The loss for ``model`` (its head type, anchors, strides and classes) with ``cfg.train``'s settings."""
    from ..engine.checkpoint import unwrap_model

    head = unwrap_model(model).head
    t = cfg.train
    loss_type = GuidedYoloLoss if isinstance(head, GuidedAnchorHead) else YoloLoss
    return loss_type(
        head.anchors,
        head.strides,
        head.num_classes,
        ignore_thresh=t.ignore_thresh,
        label_smooth=t.label_smooth,
        iou_type=t.iou_loss,
        weights=t.loss_weights,
        anchor_thresh=t.anchor_thresh,
    ).to(head.anchors.device)
