"""The YOLOv3 loss with the ASFF paper's bag of freebies (section 3.1), as fixed-shape batch tensor code.

The loss reads the heads' common output (:class:`~yolo_asff.models.head.HeadOutput`: logits, the
anchor of every slot, and a guide for the guided-anchor head) and computes every term with
tensors whose shapes follow from the batch's shapes alone (B, the grids, the number of boxes M
and an upper bound G on the boxes of one image), never from their values. There is no
``nonzero``, ``unique`` or host read, so a call with the targets on the device never waits for
it, and ``torch.compile`` traces the loss as one graph. The only loop runs over the levels.

- Assignment: each box is a candidate for all ``L·A`` anchors, a fixed ``(M, L·A)`` match mask
  (the best anchor by shape IoU, and every anchor above ``anchor_thresh``).
- Darknet's rule that the last box wins a shared slot: per level, every candidate's match order
  is scattered with ``amax`` into a dense winner map over the ``B·S·H·W`` slots; a candidate is
  a positive when it won its slot. Every candidate's terms are computed and masked by that.
- The ignore rule: the best IoU of every prediction with the boxes of its image, padded to G.

:func:`assign_targets` is the same assignment in index form (readable, with host syncs): the
anchor recall checks use it, and the tests check that the loss picks the same positives.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LOSS_TERMS as _ALL_TERMS
from ..utils.boxes import aligned_iou, aligned_shape_iou, max_iou, shape_iou, xyxy_to_cxcywh
from ..utils.modules import unwrap_model
from .guided_head import predicted_anchor_sizes, slot_anchor_table
from .head import HeadOutput, make_grid

__all__ = [
    "LevelAssignment", "LevelMatch", "YoloLoss", "GuidedYoloLoss", "assign_targets", "last_wins", "anchor_matches",
    "match_level", "box_cells", "boxes_per_image", "padded_boxes", "build_loss", "LOSS_TERMS",
]

# The config's list (what train.loss_weights may name) is the one source; "guide" is the guided head's own term.
LOSS_TERMS = tuple(term for term in _ALL_TERMS if term != "guide")
_MIN_SIDE = 1e-2  # pixels: keeps log(gt / anchor) finite for degenerate boxes
_MAX_LOG_WH = 10.0  # exp(10) anchors: no real box is larger, and exp never overflows
# Pixels. A predicted anchor (guided head) is capped here so that a diverging guide keeps log and exp
# finite; no input this package takes comes near it.
_MAX_ANCHOR_SIDE = 1e6
# (prediction, box) pairs per max_iou call: on a CPU its intermediates fit in L2; on a GPU 128 MB each.
_CPU_IOU_CHUNK = 1 << 18
_GPU_IOU_CHUNK = 1 << 25


class LevelAssignment(NamedTuple):
    """The positives of one level, ``P`` of them: indices into ``(B, S, H, W)`` and into the targets."""

    batch: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    target: Tensor


def anchor_matches(sizes: Tensor, anchors: Tensor, anchor_thresh: Optional[float] = None) -> Tensor:
    """``(M, L, A)`` bool: which anchors each box is matched to (YOLOv3's rule, ASFF paper section 3.1).

    Each box goes to the one anchor of all ``L·A`` with the best shape-only IoU; with
    ``anchor_thresh``, every other anchor whose shape IoU exceeds it takes the box too.
    ``sizes`` ``(M, 2)`` box (w, h), ``anchors`` ``(L, A, 2)`` (w, h), both in input pixels.
    """
    ious = shape_iou(sizes.clamp(min=_MIN_SIDE), anchors.reshape(-1, 2).to(sizes))  # (M, L·A)
    flat = torch.arange(ious.shape[1], device=sizes.device)
    matched = flat == ious.argmax(1, keepdim=True)
    if anchor_thresh is not None:
        matched = matched | (ious > anchor_thresh)
    return matched.view(-1, *anchors.shape[:2])


def box_cells(centres: Tensor, stride: int, grid_size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """``(gy, gx)``, each ``(M,)`` long: the cell of a level holding each box centre (clamped into the grid)."""
    h, w = grid_size
    cell = centres / stride
    return cell[:, 1].long().clamp(0, h - 1), cell[:, 0].long().clamp(0, w - 1)


def assign_targets(
    targets: Tensor,
    anchors: Tensor,
    strides: Sequence[int],
    grid_sizes: Sequence[Tuple[int, int]],
    anchor_thresh: Optional[float] = None,
) -> List[LevelAssignment]:
    """Match ground-truth boxes to prediction slots, in index form (host syncs: not for the training step).

    Each box goes to the one anchor of all ``L·A`` with the best shape-only IoU, at the
    level owning that anchor, in the cell holding its centre. With ``anchor_thresh``,
    every other anchor whose shape IoU exceeds it takes the box too. When several boxes
    land on the same slot, the last one (in target order) keeps it, as Darknet does.
    :class:`YoloLoss` makes the same choice in fixed shape (:func:`match_level`).

    Args:
        targets: ``(M, 7)`` rows ``[batch index, class, x1, y1, x2, y2, weight]`` in input pixels.
        anchors: ``(L, A, 2)`` anchor (w, h) in input pixels, stride-ascending levels.
        strides: ``L`` strides.
        grid_sizes: ``L`` (H_l, W_l) feature-map sizes.
        anchor_thresh: optional shape-IoU threshold for extra anchors.

    Returns:
        one :class:`LevelAssignment` per level.
    """
    num_anchors = anchors.shape[1]
    centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
    matched = anchor_matches(sizes, anchors, anchor_thresh)
    result = []
    for level, (stride, grid_size) in enumerate(zip(strides, grid_sizes)):
        t, a = matched[:, level].nonzero(as_tuple=True)  # sorted by target: "last wins" follows target order
        gy, gx = box_cells(centres[t], stride, grid_size)
        result.append(last_wins(LevelAssignment(targets[t, 0].long(), a, gy, gx, t), grid_size, num_anchors))
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


class LevelMatch(NamedTuple):
    """One level's candidates in fixed shape: each of the ``M`` boxes × ``K`` candidate slots.

    ``batch``, ``gy``, ``gx``: ``(M,)`` each box's image and cell; ``slot``: ``(M, K)`` the slot
    of each candidate; ``index``: ``(M, K)`` its flat index into ``(B, S, H, W)``; ``won``:
    ``(M, K)`` bool, the candidate is matched and owns its slot (the last box wins); ``winner``:
    ``(B·S·H·W,)`` the match order of each slot's owner, ``-1`` where no box is assigned.
    """

    batch: Tensor
    gy: Tensor
    gx: Tensor
    slot: Tensor
    index: Tensor
    won: Tensor
    winner: Tensor

    def positives(self) -> LevelAssignment:
        """The won candidates in index form, ordered by box then candidate (a host sync: for tests and inspection)."""
        m, k = self.won.nonzero(as_tuple=True)
        return LevelAssignment(self.batch[m], self.slot[m, k], self.gy[m], self.gx[m], m)


def match_level(
    matched: Tensor, slot: Tensor, order: Tensor, batch: Tensor, cells: Tuple[Tensor, Tensor],
    shape: Tuple[int, int, int, int],
) -> LevelMatch:
    """Which candidates win their slots, with Darknet's rule that the last box wins, in fixed shape.

    Args:
        matched: ``(M, K)`` bool, the candidates that take part.
        slot: ``(M, K)`` the slot each candidate would fill.
        order: ``(M, K)`` distinct non-negative match orders: where candidates share a slot, the
            highest order wins it.
        batch: ``(M,)`` each box's image; ``cells``: ``(gy, gx)`` each ``(M,)``, its cell.
        shape: ``(B, S, H, W)`` of the level's slots.

    Every candidate's order is scattered with ``amax`` into a dense winner map over the slots,
    then each candidate reads back whether its own order is the one that won.
    """
    _, s, h, w = shape
    gy, gx = cells
    index = ((batch[:, None] * s + slot) * h + gy[:, None]) * w + gx[:, None]  # flat into (B, S, H, W)
    order = torch.where(matched, order, -1)
    winner = torch.full((shape[0] * s * h * w,), -1, dtype=order.dtype, device=order.device)
    winner = winner.scatter_reduce(0, index.flatten(), order.flatten(), reduce="amax")
    won = matched & (winner[index] == order)
    return LevelMatch(batch, gy, gx, slot, index, won, winner)


def boxes_per_image(targets: Tensor, batch_size: int) -> Tensor:
    """``(B,)`` long: how many rows of ``targets`` ``(M, 7)`` each image has (fixed shape, unlike ``bincount``)."""
    b = targets[:, 0].long()
    return torch.zeros(batch_size, dtype=torch.long, device=b.device).index_add(0, b, torch.ones_like(b))


def padded_boxes(targets: Tensor, batch_size: int, max_boxes: int) -> Tensor:
    """Each image's ground-truth boxes ``(B, G, 4)`` xyxy, ``G = max(max_boxes, 1)``, padded with all-zero boxes (IoU 0).

    ``targets`` ``(M, 7)`` rows ``[batch index, class, x1, y1, x2, y2, weight]``, in any image order;
    ``max_boxes`` must be at least the box count of every image (boxes beyond it are left out).
    Fixed shape: the rank of each box within its image comes from a stable sort and a cumulative count.
    """
    g = max(int(max_boxes), 1)
    b = targets[:, 0].long()
    order = torch.argsort(b, stable=True)
    counts = boxes_per_image(targets, batch_size)
    starts = torch.cumsum(counts, 0) - counts
    b_sorted = b[order]
    rank = torch.arange(len(b), device=b.device) - starts[b_sorted]
    # A box past G goes to one spare row, dropped below: no out-of-range write, and no check that would sync.
    row = torch.where(rank < g, b_sorted * g + rank, batch_size * g)
    padded = targets.new_zeros(batch_size * g + 1, 4).index_put((row,), targets[order, 2:6])
    return padded[:-1].view(batch_size, g, 4)


def _decode(txywh: Tensor, cell_xy: Tensor, stride: int, anchors_wh: Tensor) -> Tensor:
    """Boxes ``(..., 4)`` xyxy in input pixels from logits ``(..., 4)``, cell (x, y) and anchor (w, h), broadcast."""
    xy = (txywh[..., :2].sigmoid() + cell_xy) * stride
    wh = txywh[..., 2:4].clamp(max=_MAX_LOG_WH).exp() * anchors_wh
    return torch.cat((xy - wh / 2, xy + wh / 2), dim=-1)


def _masked_sum(mask: Tensor, values: Tensor) -> Tensor:
    """Sum of ``values`` where ``mask``; ``where`` (not a product) so an unmatched candidate's inf or nan stays out."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()


class _GroundTruth(NamedTuple):
    """Per-box quantities of the ``M`` targets, and each image's boxes padded to ``G``."""

    boxes: Tensor  # (M, 4) xyxy, input pixels
    centres: Tensor  # (M, 2)
    sizes: Tensor  # (M, 2), at least _MIN_SIDE
    scale_weight: Tensor  # (M,)
    weight: Tensor  # (M,) mixup weight: the objectness target
    classes: Tensor  # (M, C) class targets
    per_image: Tensor  # (B, G, 4)


def _anchor_map(out: HeadOutput) -> Tensor:
    """The output's anchors in float32, capped at :data:`_MAX_ANCHOR_SIDE` (broadcastable to ``(B, S, H, W, 2)``)."""
    return out.anchors.float().clamp(max=_MAX_ANCHOR_SIDE)


def _anchors_at(anchor_map: Tensor, shape: Sequence[int], batch: Tensor, slot: Tensor,
                cells: Tuple[Tensor, Tensor]) -> Tensor:
    """``(M, K, 2)`` the anchor (w, h) of each box's ``slot`` ``(M, K)`` at its image and cell, from an
    :func:`_anchor_map` over slots of ``shape`` ``(B, S, H, W)`` (indexing the broadcast map: a fixed anchor
    table is never expanded)."""
    gy, gx = cells
    return anchor_map.expand(*shape, 2)[batch[:, None], slot, gy[:, None], gx[:, None]]


class YoloLoss(nn.Module):
    """YOLOv3 loss: xy BCE, wh L1, IoU (or GIoU), objectness with the ignore rule, class BCE.

    Args:
        anchors: ``(L, A, 2)`` anchors (w, h) in input pixels, stride-ascending: the anchors the
            boxes are matched to (the heads' base anchors).
        strides: each level's stride.
        num_classes: C.
        ignore_thresh: a non-positive prediction whose box has IoU above this with any
            ground-truth box of its image gets no objectness loss.
        label_smooth: class targets 1 − 1/C for the true class and 1/C for the others.
        iou_type: ``"iou"`` (1 − IoU²) or ``"giou"`` (1 − GIoU).
        weights: weight of each term in :attr:`terms` (missing terms weigh 1).
        anchor_thresh: optional extra-anchor threshold (see :func:`anchor_matches`).

    ``forward(outputs, targets, image_size, max_boxes=None)`` takes the head's training output
    (one :class:`~yolo_asff.models.head.HeadOutput` per level, without a guide: a guided head
    needs :class:`GuidedYoloLoss`), targets ``(M, 7)`` ``[batch index, class, x1, y1, x2, y2,
    mixup weight]`` in input pixels, the input ``(h, w)``, and ``max_boxes``, an upper bound on
    the boxes of any one image (the collate's ``batch["max_boxes"]``); without it the loss
    counts them, one host synchronisation. It returns the total (a scalar, summed over levels
    and positions and divided by B) and a dict of the weighted terms, detached, for logging.
    With ``targets`` and ``max_boxes`` given the call makes no host synchronisation.
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
        """``(M, C)`` class targets for ``(M,)`` labels (smoothed when configured)."""
        c = self.num_classes
        low, high = (1.0 / c, 1.0 - 1.0 / c) if self.label_smooth else (0.0, 1.0)
        hit = labels[:, None] == torch.arange(c, device=labels.device)
        return torch.where(hit, high, low).float()

    def _not_ignored(self, raw: Tensor, anchors: Tensor, stride: int, gt_per_image: Tensor) -> Tensor:
        """``(B, S, H, W)`` bool: False where a prediction's box has IoU > ``ignore_thresh`` with a box of its image.

        ``anchors`` broadcastable to ``(B, S, H, W, 2)``, ``gt_per_image`` ``(B, G, 4)`` (:func:`padded_boxes`).
        """
        b, s, h, w, _ = raw.shape
        with torch.no_grad():
            boxes = _decode(raw[..., :4], make_grid(h, w, raw.device, raw.dtype), stride, anchors).view(b, -1, 4)
            # A few images at a time: on a CPU the (G, N) intermediates then stay in cache (2-3x faster, measured);
            # on a GPU they stay within memory when an image has hundreds of boxes. The chunks follow from the
            # shapes alone (no host read); a batch that fits is one call.
            budget = _CPU_IOU_CHUNK if boxes.device.type == "cpu" else _GPU_IOU_CHUNK
            step = max(1, budget // (boxes.shape[1] * gt_per_image.shape[1]))
            best_iou = torch.cat([max_iou(boxes[i:i + step], gt_per_image[i:i + step]) for i in range(0, b, step)])
        return (best_iou <= self.ignore_thresh).view(b, s, h, w)

    def match(self, outputs: Sequence[HeadOutput], targets: Tensor) -> List[Tuple[LevelMatch, Optional[LevelMatch]]]:
        """Per level: the positives, and (outputs with a guide) the slots where the guide learns each box.

        ``targets`` ``(M, 7)`` as for ``forward``, float32 on the outputs' device. Positives: each
        box's matched anchors (:func:`anchor_matches`) at its cell, ``K = A`` candidates per box;
        with a guide, a candidate moves to the cell's anchor-free slot when that slot's predicted
        size fits the box better (see :class:`GuidedYoloLoss`). Guide slots: ``K = 2A``
        candidates, each matched anchor's slot and then the anchor-free slot of the cell.
        """
        centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
        sizes = sizes.clamp(min=_MIN_SIDE)
        batch = targets[:, 0].long()
        matched = anchor_matches(sizes, self.anchors, self.anchor_thresh)  # (M, L, A)
        num_boxes, _, num_anchors = matched.shape
        anchor = torch.arange(num_anchors, device=targets.device).expand(num_boxes, num_anchors)
        # Match order = the row-major position in (box, anchor): a later box wins a shared slot.
        order = torch.arange(num_boxes * num_anchors, device=targets.device).view(num_boxes, num_anchors)
        result: List[Tuple[LevelMatch, Optional[LevelMatch]]] = []
        for level, out in enumerate(outputs):
            shape = tuple(out.raw.shape[:4])
            cells = box_cells(centres, self.strides[level], shape[2:])
            on_level = matched[:, level]
            if out.guide is None:
                result.append((match_level(on_level, anchor, order, batch, cells, shape), None))
                continue
            free = torch.full_like(anchor, num_anchors)  # the anchor-free slot comes after the anchors
            free_size = _anchors_at(_anchor_map(out), shape, batch, free[:, :1], cells)[:, 0]  # (M, 2)
            free_better = aligned_shape_iou(sizes, free_size)[:, None] > aligned_shape_iou(
                sizes[:, None], self.anchors[level][None]
            )
            positives = match_level(on_level, torch.where(free_better, free, anchor), order, batch, cells, shape)
            # The guide learns each box at its best anchor's slot and at the anchor-free slot; the free-slot
            # candidates come after all others in the order, as Darknet's rule then reads them.
            guide_slots = match_level(
                on_level.repeat(1, 2), torch.cat((anchor, free), 1), torch.cat((order, order + order.numel()), 1),
                batch, cells, shape,
            )
            result.append((positives, guide_slots))
        return result

    def _box_terms(self, p: Tensor, anchors: Tensor, match: LevelMatch, stride: int, gt: _GroundTruth) -> Dict[str, Tensor]:
        """Sums of the xy, wh, IoU and class terms over the won candidates of one level.

        ``p`` ``(M, K, 5 + C)`` the candidates' logits, ``anchors`` ``(M, K, 2)`` their slots' anchors.
        """
        gxy = torch.stack((match.gx, match.gy), dim=1).to(p.dtype)[:, None, :]  # (M, 1, 2)
        xy_target = (gt.centres[:, None] / stride - gxy).expand_as(p[..., :2])
        wh_target = torch.log(gt.sizes[:, None] / anchors)
        xy_loss = F.binary_cross_entropy_with_logits(p[..., :2], xy_target, reduction="none").sum(-1)
        wh_loss = (p[..., 2:4] - wh_target).abs().sum(-1)
        iou = aligned_iou(_decode(p[..., :4], gxy, stride, anchors), gt.boxes[:, None], giou=self.giou)
        iou_loss = 1.0 - iou if self.giou else 1.0 - iou * iou
        cls_loss = F.binary_cross_entropy_with_logits(
            p[..., 5:], gt.classes[:, None].expand_as(p[..., 5:]), reduction="none"
        ).sum(-1)
        weight = gt.scale_weight[:, None]
        return {
            "xy": _masked_sum(match.won, weight * xy_loss),
            "wh": _masked_sum(match.won, weight * wh_loss),
            "iou": _masked_sum(match.won, weight * iou_loss),
            "cls": _masked_sum(match.won, cls_loss),
        }

    def _objectness(self, raw: Tensor, anchor_map: Tensor, match: LevelMatch, stride: int, gt: _GroundTruth) -> Tensor:
        """Sum of one level's objectness BCE: positives (target: their box's mixup weight) and the
        negatives the ignore rule keeps (target 0)."""
        not_ignored = self._not_ignored(raw, anchor_map, stride, gt.per_image)
        positive = (match.winner >= 0).view(not_ignored.shape)
        # One candidate owns each positive slot: adding every candidate's masked weight writes the owner's.
        weight = torch.where(match.won, gt.weight[:, None], 0.0)
        obj_target = raw.new_zeros(match.winner.shape).index_add(0, match.index.flatten(), weight.flatten())
        # raw[..., 4] as it is (no flatten): its gradient then adds in place to the box terms' one (measured).
        obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target.view(not_ignored.shape), reduction="none")
        return (obj * (not_ignored | positive)).sum()

    def _guide_term(self, guide: Tensor, match: LevelMatch, level: int, sizes: Tensor) -> Tensor:
        """Sum of ``1 − IoU²`` between each won slot's predicted anchor and its box's size (both centred)."""
        logits = guide.float().reshape(-1, 2)[match.index]  # (M, K, 2)
        predicted = predicted_anchor_sizes(logits, self.slot_anchors[level][match.slot], max_log=_MAX_LOG_WH)
        iou = aligned_shape_iou(predicted, sizes[:, None])
        return _masked_sum(match.won, 1.0 - iou * iou)

    def _ground_truth(self, targets: Tensor, batch_size: int, image_size: Tuple[int, int],
                      max_boxes: Optional[int]) -> _GroundTruth:
        centres, sizes = xyxy_to_cxcywh(targets[:, 2:6])
        sizes = sizes.clamp(min=_MIN_SIDE)
        # YOLOv3's box weight: small boxes weigh up to 2x, a box filling the image 1x.
        scale_weight = 2.0 - sizes.prod(-1) / float(image_size[0] * image_size[1])
        if max_boxes is None:  # one host read; the collate counts on the host instead (batch["max_boxes"])
            max_boxes = int(boxes_per_image(targets, batch_size).max())
        return _GroundTruth(
            targets[:, 2:6], centres, sizes, scale_weight, targets[:, 6], self._class_targets(targets[:, 1].long()),
            padded_boxes(targets, batch_size, max_boxes),
        )

    def forward(
        self, outputs: Sequence[HeadOutput], targets: Tensor, image_size: Tuple[int, int],
        max_boxes: Optional[int] = None,
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        if any(out.guide is not None for out in outputs) and "guide" not in self.terms:
            raise ValueError("the head's outputs carry a guide (guided-anchor head): use GuidedYoloLoss (build_loss)")
        batch_size = outputs[0].raw.shape[0]
        targets = targets.to(device=outputs[0].raw.device, dtype=torch.float32).reshape(-1, 7)
        gt = self._ground_truth(targets, batch_size, image_size, max_boxes)

        sums = {term: torch.zeros((), device=targets.device) for term in self.terms}
        for level, (out, (positives, guide_slots)) in enumerate(zip(outputs, self.match(outputs, targets))):
            raw = out.raw.float()
            stride = self.strides[level]
            anchor_map = _anchor_map(out)
            sums["obj"] = sums["obj"] + self._objectness(raw, anchor_map, positives, stride, gt)
            where = (positives.batch[:, None], positives.slot, positives.gy[:, None], positives.gx[:, None])
            p = raw[where]  # (M, A, 5 + C)
            anchors = _anchors_at(anchor_map, raw.shape[:4], positives.batch, positives.slot,
                                  (positives.gy, positives.gx))  # (M, A, 2)
            for term, value in self._box_terms(p, anchors, positives, stride, gt).items():
                sums[term] = sums[term] + value
            if guide_slots is not None:
                sums["guide"] = sums["guide"] + self._guide_term(out.guide, guide_slots, level, gt.sizes)

        terms = {term: self.weights[term] * value / batch_size for term, value in sums.items()}
        total = sum(terms.values())
        return total, {term: value.detach() for term, value in terms.items()}


class GuidedYoloLoss(YoloLoss):
    """:class:`YoloLoss` for the guided-anchor head (ASFF paper, section 3.1; guided anchoring: Wang et al. 2019).

    ``outputs`` is the guided head's training output: per level a
    :class:`~yolo_asff.models.head.HeadOutput` with ``S = A + 1`` slots (the anchor-free one
    last), ``anchors`` the predicted sizes (``exp(guide)`` times the base anchor, or times
    ``4·stride`` for the anchor-free slot), detached, and ``guide`` the log-size corrections.
    Where an output carries no guide the loss is :class:`YoloLoss`'s.

    Additions to the YOLOv3 loss:

    - assignment: a box still goes to the best of all base anchors by shape IoU, at that
      anchor's level and cell; it moves to the cell's anchor-free slot when that slot's
      predicted size has a higher shape IoU with it than the base anchor;
    - wh target: ``log(gt size / predicted anchor of the chosen slot)``; the ignore rule
      decodes every slot with its predicted anchor;
    - ``guide`` term: ``1 − IoU²`` between the predicted anchor size and the box size (both
      centred) at the best anchor's slot and at the anchor-free slot of the box's cell.

    ``anchors`` are the base anchors ``(L, A, 2)``; the other arguments as for :class:`YoloLoss`.
    """

    terms = _ALL_TERMS  # LOSS_TERMS, then "guide"

    def __init__(self, anchors: Tensor, strides: Sequence[int], num_classes: int, **kwargs) -> None:
        super().__init__(anchors, strides, num_classes, **kwargs)
        self.register_buffer("slot_anchors", slot_anchor_table(self.anchors, self.strides), persistent=False)


def build_loss(cfg, model: nn.Module) -> YoloLoss:
    """The loss for ``model``'s head (its anchors, strides, classes, and whether it has a guide) with ``cfg.train``'s settings.

    ``model`` is the detector, or a DistributedDataParallel / DataParallel / torch.compile wrapper of it.
    """
    head = unwrap_model(model).head
    t = cfg.train
    loss_type = GuidedYoloLoss if head.guided else YoloLoss
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
