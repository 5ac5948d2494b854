"""Precision-recall and F1 curves, a confusion matrix and the per-class table of one evaluation.

The curves come from pycocotools' own matching (``COCOeval.evalImgs`` after ``evaluate()``:
IoU 0.5, area ``all``, 100 detections per image), so that the area under a class's
precision-recall curve, interpolated at COCO's 101 recall points, *is* that class's AP50
(:func:`coco_interpolated_ap` is ``COCOeval.accumulate``'s interpolation).

F1 against confidence: precision, recall and F1 of each class when only the detections
scoring at least ``c`` are kept, for ``c`` on a grid of 0..1; the best threshold is the one
with the highest F1 averaged over the classes that have ground truth (as ultralytics reports
``P`` and ``R``: at the maximum of the mean F1 curve). A class with no detection above ``c``
has precision 0 there.

The confusion matrix needs what COCO's class-aware matching never makes: a detection of the
wrong class on an object. It is its own class-agnostic matching (:func:`match_image`) at the
same IoU 0.5, of the detections scoring at least the best-F1 threshold, so that it shows the
operating point whose precision and recall the per-class table reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..data.transforms import box_iou_np

__all__ = [
    "ClassMatches", "EvaluationCurves", "coco_interpolated_ap", "coco_matches", "confusion_matrix",
    "evaluation_curves", "match_image", "per_class_table",
]

MATCH_IOU = 0.5  # the IoU of the curves, the confusion matrix and AP50
_SPACING = np.spacing(1)  # pycocotools' guard against 0 / 0 in precision


@dataclass
class ClassMatches:
    """One class's detections over the whole set, as pycocotools matched them at one IoU.

    Attributes:
        scores: ``(D,)`` scores, descending (detections matched to an ignored box left out).
        tp: ``(D,)`` bool, True where the detection matched a ground-truth box.
        num_gt: ground-truth boxes that count (not crowd / difficult).
        num_images: images holding at least one of them.
    """

    scores: np.ndarray
    tp: np.ndarray
    num_gt: int
    num_images: int


def _area_all_index(params: Any) -> int:
    labels = list(getattr(params, "areaRngLbl", ["all"]))
    return labels.index("all") if "all" in labels else 0


def coco_matches(evaluation: Any, iou: float = MATCH_IOU) -> Dict[int, ClassMatches]:
    """Each category's matches from a pycocotools ``COCOeval`` after ``evaluate()``: ``{category id: ...}``.

    Reads ``evalImgs`` (area ``all``, ``maxDets[-1]`` detections per image) as ``accumulate()``
    does: detections of all images sorted by descending score (a stable sort, as pycocotools'),
    those pycocotools ignores (matched to a crowd box) left out. No images (``evalImgs`` empty):
    every category without matches.

    Raises:
        ValueError: ``iou`` is not one of ``params.iouThrs``; or no per-image matches to read:
            ``evaluate()`` has not run, or the evaluator keeps none in Python (faster-coco-eval's
            ``COCOeval_faster`` keeps them in C++).
    """
    p = evaluation.params
    evaluated = getattr(evaluation, "evalImgs", None)
    if not isinstance(evaluated, list):
        raise ValueError(f"{type(evaluation).__name__} holds no per-image matches (evalImgs) after evaluate(): "
                         "the curves need pycocotools' COCOeval")
    t = np.flatnonzero(np.isclose(p.iouThrs, iou))
    if not t.size:
        raise ValueError(f"IoU {iou} is not one of the evaluation's thresholds {list(p.iouThrs)}")
    t = int(t[0])
    num_images, num_areas = len(p.imgIds), len(p.areaRng)
    area = _area_all_index(p)
    out = {}
    for k, cat in enumerate(p.catIds):
        start = (k * num_areas + area) * num_images
        entries = [e for e in evaluated[start:start + num_images] if e is not None]
        out[int(cat)] = _class_matches(entries, t)
    return out


def _class_matches(entries: List[Mapping[str, Any]], t: int) -> ClassMatches:
    if not entries:
        return ClassMatches(np.zeros(0), np.zeros(0, bool), 0, 0)
    scores = np.concatenate([np.asarray(e["dtScores"], np.float64) for e in entries])
    matched = np.concatenate([np.asarray(e["dtMatches"])[t] for e in entries]) > 0
    ignored = np.concatenate([np.asarray(e["dtIgnore"])[t] for e in entries]).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    keep = ~ignored[order]
    counted = [np.asarray(e["gtIgnore"]) == 0 for e in entries]
    return ClassMatches(scores[order][keep], matched[order][keep], int(sum(c.sum() for c in counted)),
                        int(sum(bool(c.any()) for c in counted)))


def coco_interpolated_ap(tp: np.ndarray, num_gt: int, recall_thresholds: np.ndarray) -> Tuple[np.ndarray, float]:
    """COCO's interpolated precision at each recall threshold, and its mean (the AP), as ``COCOeval.accumulate``.

    Args:
        tp: ``(D,)`` bool, detections in descending score order (ignored ones left out).
        num_gt: ground-truth boxes that count (> 0).
        recall_thresholds: ``(R,)``, COCO's ``np.linspace(0, 1, 101)``.

    Returns:
        ``(R,)`` precision envelope (the best precision at a recall at least this one; 0 past
        the highest recall reached) and its mean.
    """
    tp_sum = np.cumsum(tp, dtype=np.float64)
    fp_sum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = tp_sum / (tp_sum + fp_sum + _SPACING)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    index = np.searchsorted(recall, recall_thresholds, side="left")
    q = np.zeros(len(recall_thresholds))
    reached = index < len(recall)
    q[reached] = envelope[index[reached]]
    return q, float(q.mean())


def _at_thresholds(m: ClassMatches, thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall ``(T,)`` keeping the detections scoring at least each threshold."""
    kept = np.searchsorted(-m.scores, -thresholds, side="right")  # how many score >= threshold
    tp_sum = np.concatenate([[0], np.cumsum(m.tp)])[kept]
    precision = np.where(kept > 0, tp_sum / np.maximum(kept, 1), 0.0)
    recall = tp_sum / m.num_gt if m.num_gt else np.full(len(thresholds), np.nan)
    return precision, recall


@dataclass
class EvaluationCurves:
    """What the evaluation plots and the per-class table are drawn from; classes in the dataset's order.

    Attributes:
        class_names: ``K`` names.
        recall: ``(R,)`` COCO's recall thresholds 0, 0.01, …, 1.
        precision: ``(K, R)`` interpolated precision at IoU 0.5 (NaN rows: no ground truth).
        ap50: ``(K,)`` area under each row (NaN: no ground truth): pycocotools' per-class AP50.
        thresholds: ``(T,)`` confidence thresholds 0..1.
        precision_at, recall_at, f1_at: ``(K, T)`` per class at each threshold (recall and F1 NaN
            without ground truth).
        num_gt, num_images: ``(K,)`` ground-truth boxes that count, and images holding any.
        best_conf: the threshold of the highest mean F1.
        confusion: ``(K + 1, K + 1)`` counts, rows the true class, columns the predicted one,
            background last (see :func:`confusion_matrix`); None until the evaluator adds it.
    """

    class_names: List[str]
    recall: np.ndarray
    precision: np.ndarray
    ap50: np.ndarray
    thresholds: np.ndarray
    precision_at: np.ndarray
    recall_at: np.ndarray
    f1_at: np.ndarray
    num_gt: np.ndarray
    num_images: np.ndarray
    confusion: Optional[np.ndarray] = field(default=None)

    @property
    def has_gt(self) -> np.ndarray:
        return self.num_gt > 0

    def mean_f1(self) -> np.ndarray:
        """``(T,)`` F1 averaged over the classes with ground truth (zeros when none has any)."""
        if not self.has_gt.any():
            return np.zeros(len(self.thresholds))
        return self.f1_at[self.has_gt].mean(axis=0)

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.mean_f1()))

    @property
    def best_conf(self) -> float:
        return float(self.thresholds[self.best_index])

    def mean_at_best(self) -> Dict[str, float]:
        """Precision, recall and F1 at the best threshold, averaged over the classes with ground truth."""
        i, valid = self.best_index, self.has_gt
        if not valid.any():
            return {"precision": float("nan"), "recall": float("nan"), "F1": float("nan")}
        return {"precision": float(self.precision_at[valid, i].mean()),
                "recall": float(self.recall_at[valid, i].mean()), "F1": float(self.f1_at[valid, i].mean())}


def evaluation_curves(
    matches: Sequence[ClassMatches], class_names: Sequence[str], recall_thresholds: np.ndarray,
    thresholds: Optional[np.ndarray] = None,
) -> EvaluationCurves:
    """The curves of each class from its matches (``matches[k]`` for ``class_names[k]``).

    ``thresholds``: the confidence grid (default: 0, 0.001, …, 1).
    """
    thresholds = np.linspace(0.0, 1.0, 1001) if thresholds is None else np.asarray(thresholds, np.float64)
    k, r, t = len(class_names), len(recall_thresholds), len(thresholds)
    precision, ap50 = np.full((k, r), np.nan), np.full(k, np.nan)
    p_at, r_at = np.zeros((k, t)), np.full((k, t), np.nan)
    for i, m in enumerate(matches):
        if m.num_gt:
            precision[i], ap50[i] = coco_interpolated_ap(m.tp, m.num_gt, recall_thresholds)
        p_at[i], r_at[i] = _at_thresholds(m, thresholds)
    with np.errstate(invalid="ignore"):
        f1 = np.where(p_at + r_at > 0, 2 * p_at * r_at / np.maximum(p_at + r_at, 1e-12), 0.0)
    f1[np.isnan(r_at)] = np.nan
    return EvaluationCurves(list(class_names), np.asarray(recall_thresholds, np.float64), precision, ap50, thresholds,
                            p_at, r_at, f1, np.array([m.num_gt for m in matches], np.int64),
                            np.array([m.num_images for m in matches], np.int64))


# ----------------------------------------------------------------------------- confusion matrix


def _crowd_overlap(det: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``(n, m)`` intersection over the detection's area: pycocotools' IoU with a crowd box."""
    lt = np.maximum(det[:, None, :2], crowd[None, :, :2])
    rb = np.minimum(det[:, None, 2:], crowd[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(det[:, 2:] - det[:, :2], 0, None), axis=1)
    return inter / np.maximum(area[:, None], 1e-9)


def match_image(
    detections: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray, gt_ignore: np.ndarray,
    iou: float = MATCH_IOU,
) -> List[Tuple[int, int]]:
    """Class-agnostic one-to-one matching of one image: ``(true class, predicted class)`` pairs, -1 for background.

    Args:
        detections: ``(n, 6)`` rows ``x1, y1, x2, y2, score, class`` (one frame with the boxes).
        gt_boxes: ``(m, 4)`` xyxy; ``gt_labels`` ``(m,)``; ``gt_ignore`` ``(m,)`` bool (crowd,
            difficult).

    Detections are taken by descending score; each takes the not-yet-taken counted box it
    overlaps most, of any class, if that IoU is at least ``iou`` (``(true, predicted)``);
    else one that overlaps an ignored box by ``iou`` (intersection over its own area, as
    pycocotools treats crowd boxes) is not counted, and any other is a false positive
    ``(-1, predicted)``. Counted boxes left over are missed: ``(true, -1)``.
    """
    detections = np.asarray(detections, np.float64).reshape(-1, 6)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    gt_ignore = np.asarray(gt_ignore, bool).reshape(-1)
    counted, crowd = gt_boxes[~gt_ignore], gt_boxes[gt_ignore]
    labels = gt_labels[~gt_ignore]
    order = np.argsort(-detections[:, 4], kind="mergesort")
    dets = detections[order]
    ious = box_iou_np(dets[:, :4], counted) if len(counted) else np.zeros((len(dets), 0))
    on_crowd = _crowd_overlap(dets[:, :4], crowd).max(axis=1) >= iou if len(crowd) else np.zeros(len(dets), bool)
    taken = np.zeros(len(counted), bool)
    pairs = []
    for d, row in enumerate(dets):
        candidates = np.where(taken, -1.0, ious[d]) if len(counted) else np.zeros(0)
        best = int(np.argmax(candidates)) if len(candidates) else -1
        if best >= 0 and candidates[best] >= iou:
            taken[best] = True
            pairs.append((int(labels[best]), int(row[5])))
        elif not on_crowd[d]:
            pairs.append((-1, int(row[5])))
    pairs += [(int(labels[j]), -1) for j in np.flatnonzero(~taken)]
    return pairs


def confusion_matrix(
    images: Iterable[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], num_classes: int, conf: float,
    iou: float = MATCH_IOU,
) -> np.ndarray:
    """``(C + 1, C + 1)`` int64 counts: row = true class, column = predicted class, background last.

    ``images`` gives per image ``(detections (n, 6), gt_boxes (m, 4), gt_labels (m,), gt_ignore (m,))``;
    detections scoring below ``conf`` are left out, the rest matched by :func:`match_image`.
    A missed object counts in the background column, a false positive in the background row.
    """
    counts = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for detections, boxes, labels, ignore in images:
        detections = np.asarray(detections, np.float64).reshape(-1, 6)
        for true, predicted in match_image(detections[detections[:, 4] >= conf], boxes, labels, ignore, iou):
            counts[true, predicted] += 1  # -1 is the last row / column: background
    return counts


# ----------------------------------------------------------------------------- the per-class table


def per_class_table(
    curves: EvaluationCurves, ap: Mapping[str, float], ap50: Mapping[str, float], num_images: int,
    overall: Mapping[str, float],
) -> List[Dict[str, Any]]:
    """Rows ``{class, images, instances, precision, recall, AP50, AP}``: ``all`` first, then each class.

    Precision and recall are at the best-F1 threshold (NaN without ground truth); ``ap`` and
    ``ap50`` are the metric's own per-class numbers (pycocotools, or the VOC protocol);
    ``overall`` holds the ``AP`` and ``AP50`` of the ``all`` row.
    """
    i = curves.best_index
    mean = curves.mean_at_best()
    rows = [{"class": "all", "images": int(num_images), "instances": int(curves.num_gt.sum()),
             "precision": mean["precision"], "recall": mean["recall"],
             "AP50": float(overall.get("AP50", float("nan"))), "AP": float(overall.get("AP", float("nan")))}]
    for k, name in enumerate(curves.class_names):
        has_gt = bool(curves.num_gt[k])
        rows.append({"class": name, "images": int(curves.num_images[k]), "instances": int(curves.num_gt[k]),
                     "precision": float(curves.precision_at[k, i]) if has_gt else float("nan"),
                     "recall": float(curves.recall_at[k, i]) if has_gt else float("nan"),
                     "AP50": float(ap50.get(name, float("nan"))), "AP": float(ap.get(name, float("nan")))})
    return rows
