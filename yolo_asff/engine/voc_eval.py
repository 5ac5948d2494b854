"""The Pascal VOC detection metric on arrays: per-class AP (VOC2007 11-point and VOC2010+ area), mAP.

The protocol is the VOC devkit's (``VOCevaldet`` / py-faster-rcnn's ``voc_eval``):

- detections of a class are taken in descending score order over the whole set;
- each is compared with the ground-truth box of its class in its image that it overlaps
  most (IoU); above the IoU threshold it is a true positive if that box is not taken yet,
  a false positive (a duplicate) if it is, and *neither* if that box is ``difficult``;
  below the threshold (or with no box of its class in the image) it is a false positive.
  A detection never falls back to its second-best box;
- recall counts the non-difficult boxes only.

Boxes are continuous 0-based coordinates (our records hold VOC's 1-based inclusive
``xmin..xmax`` as ``xmin - 1 .. xmax``), so the IoU is the plain continuous one: the
devkit's ``+ 1`` is already in the coordinates.

Because a detection's box is its best-IoU box whatever was matched before, matching needs
no sequential state: the first detection (in score order) above the threshold on a box is
its true positive, the later ones duplicates. That makes it one sort and one ``np.unique``
per class and threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.transforms import box_iou_np

__all__ = ["IOU_THRESHOLDS", "VocMetrics", "voc_ap", "voc_evaluate"]

# The COCO thresholds 0.50:0.05:0.95 (rounded: linspace's 0.7000000000000001 would matter at a tie).
IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


@dataclass
class VocMetrics:
    """Per-class AP of a VOC-protocol evaluation.

    Attributes:
        iou_thresholds: ``(T,)`` the thresholds of ``ap`` (``ap[:, 0]`` is IoU 0.5).
        ap: ``(C, T)`` area-under-curve AP (VOC2010+) per class and threshold.
        ap07: ``(C, T)`` 11-point AP (VOC2007) per class and threshold.
        num_gt: ``(C,)`` non-difficult ground-truth boxes per class. Classes without
            any have AP NaN and are left out of the means.
    """

    iou_thresholds: np.ndarray
    ap: np.ndarray
    ap07: np.ndarray
    num_gt: np.ndarray

    def _mean(self, values: np.ndarray) -> float:
        valid = self.num_gt > 0
        return float(values[valid].mean()) if valid.any() else float("nan")

    def _column(self, iou: float) -> int:
        hits = np.flatnonzero(np.isclose(self.iou_thresholds, iou))
        if not hits.size:
            raise KeyError(f"IoU {iou} was not evaluated; thresholds: {self.iou_thresholds.tolist()}")
        return int(hits[0])

    def ap_at(self, iou: float = 0.5, use_07_metric: bool = False) -> np.ndarray:
        """``(C,)`` AP per class at one IoU threshold (NaN for classes without ground truth)."""
        return (self.ap07 if use_07_metric else self.ap)[:, self._column(iou)]

    def map_at(self, iou: float = 0.5, use_07_metric: bool = False) -> float:
        """mAP at one IoU threshold over the classes that have ground truth."""
        return self._mean(self.ap_at(iou, use_07_metric))

    def map_coco(self, use_07_metric: bool = False) -> float:
        """mAP averaged over all thresholds (0.5:0.95 by default) with the VOC matching protocol."""
        ap = self.ap07 if use_07_metric else self.ap
        return self._mean(ap.mean(axis=1))


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP of one precision/recall curve.

    Args:
        recall, precision: ``(D,)`` cumulative values, detections in descending score order.
        use_07_metric: VOC2007's mean of the best precision at recall ≥ 0, 0.1, …, 1 (11
            points); otherwise the area under the monotone (right-to-left maximum) precision
            envelope, VOC2010 onwards.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        points = np.linspace(0.0, 1.0, 11)
        reached = recall[None, :] >= points[:, None]  # (11, D)
        best = np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0)
        return float(best.mean())
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _best_overlaps(
    det_image: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
    gt_image: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
):
    """For every detection, its best-IoU ground-truth box of the same class in its image.

    Returns ``(iou (D,), gt_index (D,))``; ``iou`` is -1 and ``gt_index`` -1 where the image
    has no box of the detection's class. Ties go to the first box, as with ``np.argmax``.
    """
    iou = np.full(len(det_boxes), -1.0)
    index = np.full(len(det_boxes), -1, np.int64)
    gt_order = np.argsort(gt_image, kind="stable")
    gt_sorted = gt_image[gt_order]
    det_order = np.argsort(det_image, kind="stable")
    images, starts = np.unique(det_image[det_order], return_index=True)
    for image, det_idx in zip(images, np.split(det_order, starts[1:])):
        lo, hi = np.searchsorted(gt_sorted, image, "left"), np.searchsorted(gt_sorted, image, "right")
        if lo == hi:
            continue
        gt_idx = gt_order[lo:hi]
        overlaps = box_iou_np(det_boxes[det_idx], gt_boxes[gt_idx])  # (d, g)
        overlaps[det_labels[det_idx][:, None] != gt_labels[gt_idx][None, :]] = -1.0
        best = overlaps.argmax(axis=1)
        iou[det_idx] = overlaps[np.arange(len(det_idx)), best]
        index[det_idx] = np.where(iou[det_idx] >= 0, gt_idx[best], -1)
    return iou, index


def _class_ap(
    scores: np.ndarray, iou: np.ndarray, gt_index: np.ndarray, gt_difficult: np.ndarray, num_gt: int,
    thresholds: np.ndarray,
):
    """AP (area, 11-point) ``(T,)`` each for one class's detections (any order)."""
    order = np.argsort(-scores, kind="stable")
    iou, gt_index = iou[order], gt_index[order]
    ap, ap07 = np.zeros(len(thresholds)), np.zeros(len(thresholds))
    # Whether each detection's best box is difficult does not depend on the threshold (-1: no box, masked by hit).
    on_difficult = gt_difficult[np.maximum(gt_index, 0)]
    for t, thresh in enumerate(thresholds):
        hit = iou > thresh
        difficult = hit & on_difficult
        counted = ~difficult  # detections on a difficult box are neither TP nor FP
        tp = np.zeros(len(iou), bool)
        candidates = np.flatnonzero(hit & counted)
        _, first = np.unique(gt_index[candidates], return_index=True)
        tp[candidates[first]] = True
        tp, fp = tp[counted], ~tp[counted]
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
        recall = tp_cum / num_gt
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        ap[t], ap07[t] = voc_ap(recall, precision), voc_ap(recall, precision, use_07_metric=True)
    return ap, ap07


def voc_evaluate(
    det_image_ids: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    gt_image_ids: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_difficult: np.ndarray,
    num_classes: int,
    iou_thresholds: Sequence[float] = tuple(IOU_THRESHOLDS),
) -> VocMetrics:
    """Evaluate detections against ground truth with the VOC protocol.

    Args:
        det_image_ids: ``(D,)`` image id of each detection.
        det_boxes: ``(D, 4)`` x1, y1, x2, y2, continuous pixel coordinates.
        det_scores: ``(D,)`` confidence.
        det_labels: ``(D,)`` contiguous class index in ``[0, num_classes)``.
        gt_image_ids, gt_boxes, gt_labels: ``(G,)``, ``(G, 4)``, ``(G,)`` the same for ground truth.
        gt_difficult: ``(G,)`` bool, VOC ``difficult`` (ignored, see the module docstring).
        num_classes: C.
        iou_thresholds: ``(T,)`` thresholds; a detection counts above ``IoU > threshold``.

    Returns:
        :class:`VocMetrics` with ``(C, T)`` AP arrays.
    """
    det_image_ids = np.asarray(det_image_ids, np.int64).reshape(-1)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    det_labels = np.asarray(det_labels, np.int64).reshape(-1)
    gt_image_ids = np.asarray(gt_image_ids, np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    gt_difficult = np.asarray(gt_difficult, bool).reshape(-1)
    lengths = {len(det_image_ids), len(det_boxes), len(det_scores), len(det_labels)}
    if len(lengths) != 1 or len({len(gt_image_ids), len(gt_boxes), len(gt_labels), len(gt_difficult)}) != 1:
        raise ValueError("detection arrays (and ground-truth arrays) must all have the same length")
    for name, labels in (("det_labels", det_labels), ("gt_labels", gt_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)

    iou, gt_index = _best_overlaps(det_image_ids, det_boxes, det_labels, gt_image_ids, gt_boxes, gt_labels)
    num_gt = np.bincount(gt_labels[~gt_difficult], minlength=num_classes)
    ap = np.full((num_classes, len(thresholds)), np.nan)
    ap07 = np.full((num_classes, len(thresholds)), np.nan)
    for c in np.flatnonzero(num_gt):
        mine = det_labels == c
        ap[c], ap07[c] = _class_ap(det_scores[mine], iou[mine], gt_index[mine], gt_difficult, int(num_gt[c]),
                                   thresholds)
    return VocMetrics(thresholds, ap, ap07, num_gt)

