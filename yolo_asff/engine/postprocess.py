"""From decoded predictions to final detections: score threshold and class-aware NMS.

The one NMS path of the project: the predictor, the evaluator, the demo and the
benchmarks go through :func:`postprocess`; the ONNX export's in-graph NMS
(:class:`yolo_asff.engine.export.DetectorWithNms`) applies the same rules in a traceable
form and is tested against it.

:func:`postprocess_fixed` applies the same rules with fixed shapes only (no ``nonzero``, no
output whose size depends on the data, no host synchronisation), so that forward + decode +
NMS can be captured as one CUDA graph or one compiled graph
(:mod:`yolo_asff.engine.graphed`). It keeps the ``pre_nms_topk`` best-scoring candidates per
image, builds their ``K × K`` IoU matrix and runs greedy NMS as a fixed-point iteration
(:func:`greedy_nms_fixed`); :func:`unpad_detections` turns its padded output into the same
:class:`Detections` as :func:`postprocess`. See ``docs/BENCHMARKS.md`` for what it costs.
"""
from __future__ import annotations

import warnings
from typing import List, NamedTuple, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ..config import TestConfig

__all__ = [
    "DEFAULT_NMS_ITERATIONS",
    "DEFAULT_PRE_NMS_TOPK",
    "Detections",
    "PaddedDetections",
    "greedy_nms_fixed",
    "postprocess",
    "postprocess_fixed",
    "unpad_detections",
]

# The pre-NMS cap of torchvision's one-stage detectors (RetinaNet's and FCOS's ``topk_candidates``).
DEFAULT_PRE_NMS_TOPK = 1000
# Fixed-point rounds run inside the graph; greedy NMS needs as many as the longest chain of
# "a kept box suppresses a box that would have suppressed another" (see greedy_nms_fixed).
# The quickstart checkpoint at test.conf_thresh 0.001 (up to 375 candidates) needed 1 to 8,
# median 4, on 60 built-in validation pictures; twice that costs little (one K×K matrix-vector
# product a round). A result that needed more is flagged and completed exactly.
DEFAULT_NMS_ITERATIONS = 16


class Detections(NamedTuple):
    """Detections of one image: ``boxes`` ``(N, 4)`` x1, y1, x2, y2; ``scores`` ``(N,)``; ``labels`` ``(N,)`` int64.

    Sorted by descending score. Coordinates are in whatever frame the decoded input was
    (input pixels from the model; original-image pixels after un-letterboxing).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def _check_decoded(decoded: Tensor) -> None:
    if decoded.dim() != 3 or decoded.shape[-1] < 6:
        raise ValueError(f"decoded predictions must be (B, N, 5 + C), got {tuple(decoded.shape)}")


def _best_class(decoded: Tensor) -> Tuple[Tensor, Tensor]:
    """Score ``(B, N)`` = objectness × probability of the best class, and that class ``(B, N)``."""
    return (decoded[..., 4:5] * decoded[..., 5:]).max(dim=-1)


def postprocess(
    decoded: Tensor,
    conf_thresh: float = TestConfig.conf_thresh,
    nms_thresh: float = TestConfig.nms_thresh,
    max_det: int = TestConfig.max_det,
) -> List[Detections]:
    """Threshold and class-aware NMS over a batch of decoded predictions.

    Args:
        decoded: ``(B, N, 5 + C)`` rows ``x1, y1, x2, y2, objectness, class probabilities``
            (the model's eval-mode output).
        conf_thresh: keep boxes whose score = objectness × class probability of their best
            class is above this (one candidate per box: its best class, as in the ONNX NMS).
        nms_thresh: IoU above which a lower-scoring box of the same class is suppressed.
        max_det: most detections kept per image.
        (The defaults are the config's ``test.conf_thresh``, ``test.nms_thresh``, ``test.max_det``.)

    Returns:
        one :class:`Detections` per image. One ``batched_nms`` call covers the whole batch
        (image index × classes form the groups), on the tensor's device, with no Python loop
        over classes or images before the final split.
    """
    _check_decoded(decoded)
    decoded = decoded.float()
    batch, _, width = decoded.shape
    num_classes = width - 5
    best, cls = _best_class(decoded)  # (B, N)
    img, box = (best > conf_thresh).nonzero(as_tuple=True)
    scores, cls = best[img, box], cls[img, box]
    boxes = decoded[img, box, :4]
    # One group per (image, class): boxes of different images or classes never suppress each other.
    keep = batched_nms(boxes, scores, img * num_classes + cls, nms_thresh)
    # batched_nms orders equal scores one way on its single-call path and arbitrarily on its
    # per-class path (many candidates): order by score, then candidate, so that ties come out
    # the same on both, and as postprocess_fixed gives them.
    keep = keep.sort().values
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    img, boxes, scores, cls = img[keep], boxes[keep], scores[keep], cls[keep]
    # keep is sorted by score; a stable sort by image keeps that order within each image.
    order = torch.sort(img, stable=True).indices
    img, boxes, scores, cls = img[order], boxes[order], scores[order], cls[order]
    counts = torch.bincount(img, minlength=batch).tolist()
    out = []
    for b_boxes, b_scores, b_cls in zip(boxes.split(counts), scores.split(counts), cls.split(counts)):
        out.append(Detections(b_boxes[:max_det], b_scores[:max_det], b_cls[:max_det].long()))
    return out


class PaddedDetections(NamedTuple):
    """Detections of a batch in fixed shapes: the output of :func:`postprocess_fixed`.

    With ``D = max_det`` and ``K`` the pre-NMS cap:

    - ``boxes`` ``(B, D, 4)`` x1, y1, x2, y2; ``scores`` ``(B, D)``; ``labels`` ``(B, D)`` int64:
      row ``k < count[b]`` of image ``b`` is its k-th detection by descending score, the
      rows after it are zeros;
    - ``count`` ``(B,)`` int64: detections kept, at most ``D``;
    - ``candidates`` ``(B,)`` int64: boxes above ``conf_thresh`` before the cap (above ``K``,
      the lowest-scoring ones were never considered);
    - ``converged`` ``(B,)`` bool: the in-graph NMS reached its fixed point, so the result is
      greedy NMS's; where False, :func:`unpad_detections` completes it exactly from:
    - ``top_boxes`` ``(B, K, 4)``, ``top_scores`` ``(B, K)``, ``top_labels`` ``(B, K)``,
      ``top_valid`` ``(B, K)`` bool: the K best candidates by descending score.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    count: Tensor
    candidates: Tensor
    converged: Tensor
    top_boxes: Tensor
    top_scores: Tensor
    top_labels: Tensor
    top_valid: Tensor


def _nms_iou_matrix(boxes: Tensor) -> Tensor:
    """IoU of every pair of ``(B, K, 4)`` boxes → ``(B, K, K)``, in torchvision's NMS arithmetic.

    The same operations as ``torchvision.ops.nms`` (areas ``(x2 − x1)(y2 − y1)``, the overlap's
    sides clamped at 0, ``inter / (area_i + area_j − inter)``, no epsilon), so that an IoU
    near the threshold is decided the same way; hence not :mod:`yolo_asff.utils.boxes`.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)  # (B, K) each
    area = (x2 - x1) * (y2 - y1)
    # In place where it can: four (B, K, K) temporaries instead of a dozen (eager CPU runs are memory-bound).
    w = torch.minimum(x2[:, :, None], x2[:, None, :]).sub_(torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_(min=0)
    h = torch.minimum(y2[:, :, None], y2[:, None, :]).sub_(torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_(min=0)
    inter = w.mul_(h)
    return inter.div_((area[:, :, None] + area[:, None, :]).sub_(inter))


def greedy_nms_fixed(
    boxes: Tensor, labels: Tensor, valid: Tensor, iou_thresh: float, iterations: int = DEFAULT_NMS_ITERATIONS
) -> Tuple[Tensor, Tensor]:
    """Class-aware greedy NMS of score-sorted candidates with fixed shapes and no host synchronisation.

    Args:
        boxes: ``(B, K, 4)`` x1, y1, x2, y2, each image's candidates sorted by descending
            score (ties: the order greedy NMS is to visit them in).
        labels: ``(B, K)`` classes; boxes of different classes never suppress each other.
        valid: ``(B, K)`` bool: which candidates exist (the rest are padding).
        iou_thresh: a candidate is suppressed by a kept, earlier one of its class with IoU
            above this (``torchvision.ops.nms``'s rule).
        iterations: fixed-point rounds; the result is checked after ``iterations + 1``.

    Returns:
        ``keep`` ``(B, K)`` bool and ``converged`` ``(B,)`` bool.

    Why it is greedy NMS: with ``S[j, i]`` = "j comes before i, same class, IoU > threshold",
    greedy NMS keeps ``i`` iff it is valid and no kept ``j`` has ``S[j, i]``:
    ``keep = F(keep)`` with ``F(x) = valid ∧ ¬(Sᵀ x)``. ``S`` is strictly upper triangular,
    so by induction over ``i`` this equation has exactly one solution, greedy's. Iterating
    ``F`` from ``valid`` makes entry ``i`` right once the entries before it are, so round
    ``t`` is right on at least the first ``t`` candidates (``K`` rounds always suffice), and
    in practice after as many rounds as the longest chain of suppressions that matter. Two
    equal consecutive rounds are a fixed point, hence greedy's result: ``converged``.
    A fixed number of rounds keeps every shape and the launch sequence static.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    k = boxes.shape[1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)  # [j, i]: j before i
    # Padding gets a group of its own (-1 - position), so one comparison says "same class, both valid".
    group = torch.where(valid, labels, -1 - torch.arange(k, device=labels.device))
    suppresses = (_nms_iou_matrix(boxes) > iou_thresh).logical_and_(earlier).logical_and_(
        group[:, :, None] == group[:, None, :])  # (B, K, K) [b, j, i]
    # One round is a (1, K) × (K, K) product counting the kept boxes that suppress each box: a matrix
    # product runs at full speed on any device, where a boolean any() over K² elements does not.
    suppresses = suppresses.float()  # 0/1; sums up to K are exact in float32
    keep = valid
    previous = keep
    with torch.autocast(boxes.device.type, enabled=False):  # the products stay float32 under a caller's autocast
        for _ in range(iterations + 1):
            previous = keep
            hits = torch.bmm(previous.float()[:, None, :], suppresses)[:, 0]  # (B, K)
            keep = valid & (hits == 0)
    return keep, (keep == previous).all(dim=1)


def _top_candidates(decoded: Tensor, conf_thresh: float, k: int) -> Tuple[Tensor, ...]:
    """The ``k`` best-scoring boxes per image, in greedy NMS's visiting order.

    Returns ``boxes (B, k, 4)``, ``scores (B, k)``, ``labels (B, k)``, ``valid (B, k)`` and
    ``candidates (B,)``, the number above ``conf_thresh``.
    """
    best, cls = _best_class(decoded)  # (B, N)
    passed = best > conf_thresh
    # Below-threshold boxes sort last (scores are ≥ 0). A stable sort puts equal scores in box
    # order, the order in which torchvision's nms visits the candidates postprocess gives it.
    key = torch.where(passed, best, torch.full_like(best, -1.0))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :k]  # (B, k)
    boxes = decoded[..., :4].gather(1, order[..., None].expand(-1, -1, 4))
    return boxes, best.gather(1, order), cls.gather(1, order), passed.gather(1, order), passed.sum(dim=1)


def _first_kept(values: Tensor, keep: Tensor, max_det: int) -> Tensor:
    """Rows of ``values`` ``(B, K, ...)`` where ``keep``, in order, packed into ``(B, max_det, ...)``, zeros after."""
    rank = keep.long().cumsum(dim=1) - 1
    slot = torch.where(keep & (rank < max_det), rank, torch.full_like(rank, max_det))  # max_det: a discarded slot
    slot = slot.view(*slot.shape, *([1] * (values.dim() - 2))).expand_as(values)
    out = values.new_zeros(values.shape[0], max_det + 1, *values.shape[2:])
    return out.scatter(1, slot, values)[:, :max_det]


def postprocess_fixed(
    decoded: Tensor,
    conf_thresh: float = TestConfig.conf_thresh,
    nms_thresh: float = TestConfig.nms_thresh,
    max_det: int = TestConfig.max_det,
    pre_nms_topk: int = DEFAULT_PRE_NMS_TOPK,
    iterations: int = DEFAULT_NMS_ITERATIONS,
) -> PaddedDetections:
    """:func:`postprocess`'s rules with fixed shapes: capturable in a CUDA graph, no host sync.

    Args:
        decoded: ``(B, N, 5 + C)`` rows ``x1, y1, x2, y2, objectness, class probabilities``.
        conf_thresh, nms_thresh, max_det: as in :func:`postprocess`.
        pre_nms_topk: K, the most candidates per image that NMS considers: the K highest
            scores above ``conf_thresh``. With at most K candidates the result is
            :func:`postprocess`'s exactly (``torchvision.ops.batched_nms``); with more, the
            lower-scoring ones are dropped before NMS, which changes the result only where
            fewer than ``max_det`` detections survive among the top K (``candidates`` says
            when: :func:`unpad_detections` warns). Cost grows as K² per image.
        iterations: rounds of :func:`greedy_nms_fixed` in the graph.

    Returns:
        :class:`PaddedDetections` on ``decoded``'s device.
    """
    _check_decoded(decoded)
    if pre_nms_topk < 1 or max_det < 1:
        raise ValueError(f"pre_nms_topk and max_det must be at least 1, got {pre_nms_topk} and {max_det}")
    decoded = decoded.float()
    k = min(pre_nms_topk, decoded.shape[1])
    boxes, scores, labels, valid, candidates = _top_candidates(decoded, conf_thresh, k)
    keep, converged = greedy_nms_fixed(boxes, labels, valid, nms_thresh, iterations)
    return PaddedDetections(
        _first_kept(boxes, keep, max_det), _first_kept(scores, keep, max_det), _first_kept(labels, keep, max_det),
        keep.sum(dim=1).clamp(max=max_det), candidates, converged, boxes, scores, labels, valid,
    )


def _exact_nms(padded: PaddedDetections, b: int, nms_thresh: float, max_det: int) -> Detections:
    """Image ``b`` of ``padded`` by ``batched_nms`` over its top-K candidates (they are in visiting order)."""
    valid = padded.top_valid[b]
    boxes, scores, labels = padded.top_boxes[b][valid], padded.top_scores[b][valid], padded.top_labels[b][valid]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_det]
    return Detections(boxes[keep].cpu(), scores[keep].cpu(), labels[keep].long().cpu())


def unpad_detections(padded: PaddedDetections, nms_thresh: float) -> List[Detections]:
    """:func:`postprocess_fixed`'s output as one :class:`Detections` per image, on the CPU.

    One device→host copy for the whole batch. An image whose in-graph NMS did not converge
    (a chain of suppressions longer than its rounds) is redone with ``torchvision.ops.batched_nms``
    over its top-K candidates, so the result is always greedy NMS's. Warns (RuntimeWarning)
    when an image had more candidates than the pre-NMS cap K.

    Args:
        padded: the fixed-shape detections.
        nms_thresh: the IoU threshold they were made with (for the exact completion).
    """
    batch, max_det = padded.scores.shape
    rows = torch.cat([padded.boxes, padded.scores[..., None], padded.labels[..., None].float()], dim=-1)
    meta = torch.stack([padded.count, padded.candidates, padded.converged.long()], dim=1).float()
    host = torch.cat([rows.float().flatten(1), meta], dim=1).cpu()  # (B, D·6 + 3): the one host sync
    rows, meta = host[:, :-3].view(batch, max_det, 6), host[:, -3:].long()
    cap = padded.top_scores.shape[1]
    out = []
    for b in range(batch):
        count, candidates, converged = meta[b].tolist()
        if candidates > cap:
            warnings.warn(f"{candidates} boxes above the score threshold, more than the pre-NMS cap of {cap}: "
                          "the lowest-scoring ones were not considered (raise pre_nms_topk or conf_thresh)",
                          RuntimeWarning, stacklevel=2)
        if not converged:
            out.append(_exact_nms(padded, b, nms_thresh, max_det))
            continue
        r = rows[b, :count]
        out.append(Detections(r[:, :4].clone(), r[:, 4].clone(), r[:, 5].long()))
    return out
