"""Anchors fitted to a dataset's boxes: best-possible recall, 1 − IoU k-means, then evolution.

What is measured follows our assignment (:func:`yolo_asff.models.loss.assign_targets`): a box
always goes to the anchor of best *shape IoU* (IoU of the two (w, h) shapes aligned at a corner,
:func:`yolo_asff.utils.boxes.shape_iou`), and with ``train.anchor_thresh`` also to every other
anchor whose shape IoU exceeds that threshold. So every box gets an anchor; what the anchors
decide is how well it fits. Here a box is *covered* when its best anchor's shape IoU exceeds the
recall threshold:

- ``train.anchor_thresh`` when it is set (the IoU above which the assignment itself counts an
  anchor as a match);
- :data:`DEFAULT_RECALL_IOU` (0.25) when it is null (best anchor only): a shape IoU of 0.25 means
  the anchor is 4× the box's area when one holds the other (twice the size on both sides, or 4× on
  one), a width/height regression target ``|log(box / anchor)|`` up to log 4 ≈ 1.4. This is not
  Darknet's or YOLOv5's rule (a side ratio under 4): ours counts both sides at once.

Best-possible recall (BPR) is the share of covered boxes. Also reported: anchors above the
threshold per box (how many slots the assignment gives a box when ``train.anchor_thresh`` is set)
and the mean best shape IoU.

The fit (the approach of Darknet's ``calc_anchors`` and YOLO9000 section 2, refined as YOLOv5's
AutoAnchor does, written here from those descriptions): k-means on the box shapes with
``1 − shape IoU`` as the distance (k-means++ seeding, cluster centres at the members' median),
then a hill-climbing evolution that mutates the anchors in log space and keeps a mutation when it
raises the *fitness*: the mean over boxes of the best shape IoU, counting 0 for a box that is not
covered. A box that becomes covered adds at least the threshold, so the fitness rewards recall
first and a closer fit second. k-means and evolution run on a random sample of the boxes (at
most ``sample``); the figures reported are computed on every box. Everything is deterministic
for a seed (one ``numpy.random.default_rng(seed)``).

Box shapes are taken at the training input size as the loader makes it (``data.img_size``,
letterboxed or stretched; with multi-scale training ``data.img_size`` stands for all sizes, and
augmentation's random scale is left out). Boxes with a side at or below ``data.aug.min_box_size``
at that size are skipped and counted: the training transform drops them, so no anchor learns them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..utils.sizes import parse_size
from .records import DatasetError, ImageRecord
from .transforms import fit_into

__all__ = [
    "DEFAULT_RECALL_IOU", "GOOD_RECALL", "AnchorFit", "AnchorStats", "BoxShapes", "anchor_stats", "anchors_yaml",
    "box_shapes", "evolve_anchors", "fit_anchors", "kmeans_anchors", "recall_threshold", "sort_into_levels",
]

DEFAULT_RECALL_IOU = 0.25  # the recall threshold when train.anchor_thresh is null (module docstring)
GOOD_RECALL = 0.98  # below this best-possible recall the trainer warns (as YOLOv5's AutoAnchor does)
DECIMALS = 1  # anchors are rounded to 0.1 px: the figures reported are those of the rounded anchors
_EPS = 1e-9  # as in yolo_asff.utils.boxes


def recall_threshold(anchor_thresh: Optional[float]) -> float:
    """The shape IoU a box's best anchor must exceed to count as covered: ``train.anchor_thresh``, or
    :data:`DEFAULT_RECALL_IOU` when it is null."""
    return DEFAULT_RECALL_IOU if anchor_thresh is None else float(anchor_thresh)


@dataclass
class BoxShapes:
    """Training box shapes: ``shapes`` ``(N, 2)`` float64 (w, h) in input pixels at the training size,
    ``skipped`` boxes left out (a side at or below ``min_side``), from ``images`` pictures."""

    shapes: np.ndarray
    skipped: int
    images: int


def box_shapes(
    records: Sequence[ImageRecord], img_size: Union[int, Sequence[int]], letterbox: bool = True,
    min_side: float = 0.0, use_ignored: bool = False,
) -> BoxShapes:
    """The (w, h) of every training box once its picture is resized into ``img_size`` as the loader does.

    Args:
        records: the split's pictures (boxes in picture pixels, :class:`ImageRecord`).
        img_size: ``data.img_size``, an int or ``[h, w]``.
        letterbox: ``data.letterbox`` (one scale and padding) or a stretch, as
            :func:`~yolo_asff.data.transforms.fit_into` does it.
        min_side: boxes with a side at or below this many input pixels are skipped and counted
            (``data.aug.min_box_size``: the training transform drops them).
        use_ignored: count crowd / difficult boxes too (``data.use_difficult``), as training does.
    """
    size = parse_size(img_size, "data.img_size")
    scale_of = {}  # picture (width, height) -> (sx, sy): datasets repeat a few picture sizes
    parts, scales, counts = [np.zeros((0, 4), np.float32)], [(1.0, 1.0)], [0]
    for record in records:
        boxes, _ = record.training_targets(use_ignored)
        if len(boxes):
            key = (record.width, record.height)
            if key not in scale_of:
                scale_of[key] = fit_into(record.width, record.height, size, letterbox)[:2]
            parts.append(boxes)
            scales.append(scale_of[key])
            counts.append(len(boxes))
    boxes = np.concatenate(parts).astype(np.float64)
    shapes = (boxes[:, 2:] - boxes[:, :2]) * np.repeat(np.array(scales), counts, axis=0)
    keep = (shapes > min_side).all(1) & np.isfinite(shapes).all(1)
    return BoxShapes(shapes[keep], int((~keep).sum()), len(records))


@dataclass
class AnchorStats:
    """How well anchors fit box shapes (see the module docstring for the definitions).

    ``bpr``: best-possible recall, the share of boxes whose best anchor's shape IoU exceeds
    ``threshold``; ``anchors_per_box``: mean count of anchors above it per box; ``mean_iou``:
    mean best shape IoU; ``fitness``: mean best shape IoU counting uncovered boxes as 0.
    """

    bpr: float
    anchors_per_box: float
    mean_iou: float
    fitness: float
    threshold: float


class _Shapes:
    """Box shapes as contiguous width, height and area vectors (N,), float64: the layout the
    per-anchor loops below run fastest on (measured ~8x faster than an (N, K) IoU matrix)."""

    def __init__(self, shapes: np.ndarray) -> None:
        shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
        self.w, self.h = np.ascontiguousarray(shapes[:, 0]), np.ascontiguousarray(shapes[:, 1])
        self.area = self.w * self.h

    def __len__(self) -> int:
        return len(self.w)

    def iou(self, anchor: Sequence[float]) -> np.ndarray:
        """``(N,)`` shape IoU with one anchor (w, h): :func:`yolo_asff.utils.boxes.shape_iou`'s formula and epsilon."""
        aw, ah = float(anchor[0]), float(anchor[1])
        inter = np.minimum(self.w, aw) * np.minimum(self.h, ah)
        return inter / (self.area + aw * ah - inter + _EPS)

    def best(self, anchors: np.ndarray, threshold: Optional[float] = None, which: bool = False):
        """Per box ``(N,)``: the best shape IoU over ``anchors`` ``(K, 2)``; with ``threshold`` also how
        many anchors exceed it, with ``which`` the index of the best anchor (first on ties), else None."""
        best = np.full(len(self), -1.0)
        index = np.zeros(len(self), np.int64) if which else None
        count = np.zeros(len(self), np.int64) if threshold is not None else None
        for k, anchor in enumerate(np.asarray(anchors, np.float64).reshape(-1, 2)):
            iou = self.iou(anchor)
            if which:
                index = np.where(iou > best, k, index)
            if count is not None:
                count += iou > threshold
            np.maximum(best, iou, out=best)
        return best, index, count


def _fitness(boxes: _Shapes, anchors: np.ndarray, threshold: float) -> float:
    best, _, _ = boxes.best(anchors)
    return float(np.where(best > threshold, best, 0.0).mean())


def anchor_stats(shapes: np.ndarray, anchors: Any, threshold: float) -> AnchorStats:
    """Best-possible recall, anchors above ``threshold`` per box, mean best IoU and fitness.

    Args:
        shapes: ``(N, 2)`` box (w, h), N >= 1.
        anchors: ``(K, 2)`` anchor (w, h) in the same pixels (or ``(L, A, 2)``).
        threshold: the recall threshold (:func:`recall_threshold`).
    """
    best, _, count = _Shapes(shapes).best(np.asarray(anchors, np.float64), threshold)
    covered = best > threshold
    return AnchorStats(float(covered.mean()), float(count.mean()), float(best.mean()),
                       float(np.where(covered, best, 0.0).mean()), threshold)


def kmeans_anchors(shapes: np.ndarray, n: int, rng: np.random.Generator, iterations: int = 100) -> np.ndarray:
    """``n`` anchors ``(n, 2)`` by k-means on ``shapes`` ``(N, 2)`` with ``1 − shape IoU`` as the distance.

    Seeding is k-means++ (each next centre drawn with probability proportional to its squared
    distance to the nearest chosen one); each centre then moves to its members' median, until no
    box changes cluster. An emptied cluster restarts at the box worst served by the others.
    """
    boxes = _Shapes(shapes)
    points = np.stack((boxes.w, boxes.h), 1)
    centres = points[[int(rng.integers(len(boxes)))]]
    nearest = boxes.iou(centres[0])
    for _ in range(1, n):
        weights = (1.0 - nearest) ** 2
        total = weights.sum()
        pick = int(rng.choice(len(boxes), p=weights / total)) if total > 0 else int(rng.integers(len(boxes)))
        centres = np.concatenate((centres, points[[pick]]))
        nearest = np.maximum(nearest, boxes.iou(points[pick]))
    members = None
    for _ in range(iterations):
        best, assigned, _ = boxes.best(centres, which=True)
        if members is not None and np.array_equal(assigned, members):
            break
        members = assigned
        for k in range(n):
            mine = assigned == k
            centres[k] = np.median(points[mine], 0) if mine.any() else points[best.argmin()]
    return centres


def evolve_anchors(
    shapes: np.ndarray, anchors: np.ndarray, threshold: float, rng: np.random.Generator, generations: int = 1000,
    sigma: Tuple[float, float] = (0.2, 0.02), mutation_prob: float = 0.5,
) -> np.ndarray:
    """Hill-climb ``anchors`` ``(K, 2)`` on the fitness of :class:`AnchorStats` over ``shapes`` ``(N, 2)``.

    Each generation multiplies a random subset of the anchors' sides (each with ``mutation_prob``)
    by ``exp(normal(0, s))``, with ``s`` falling linearly from ``sigma[0]`` to ``sigma[1]`` (wide
    steps first, fine ones last), and keeps the result when the fitness rises.
    """
    boxes = _Shapes(shapes)
    best = np.asarray(anchors, np.float64).copy()
    best_fitness = _fitness(boxes, best, threshold)
    for g in range(generations):
        step = sigma[0] + (sigma[1] - sigma[0]) * g / max(1, generations - 1)
        mask = rng.random(best.shape) < mutation_prob
        if not mask.any():
            continue
        candidate = best * np.exp(rng.normal(0.0, step, best.shape) * mask)
        fitness = _fitness(boxes, candidate, threshold)
        if fitness > best_fitness:
            best, best_fitness = candidate, fitness
    return best


def sort_into_levels(anchors: np.ndarray, levels: int) -> np.ndarray:
    """``(K, 2)`` anchors sorted by area, rounded to 0.1 px (at least 0.1), as ``(levels, K / levels, 2)``:
    the smallest go to the first (finest) level, as ``model.anchors`` lists them."""
    anchors = np.maximum(np.round(np.asarray(anchors, np.float64), DECIMALS), 10.0 ** -DECIMALS)
    order = np.argsort(anchors.prod(1), kind="stable")
    return anchors[order].reshape(levels, -1, 2)


@dataclass
class AnchorFit:
    """What :func:`fit_anchors` gives.

    ``anchors``: ``(L, A, 2)`` fitted (w, h) in input pixels, sorted by area; ``before`` / ``after``:
    the figures of the current and the fitted anchors on every box; ``boxes``: shapes used;
    ``skipped``: boxes left out; ``seed``, ``sample``, ``generations``, ``seconds``: how it ran.
    """

    anchors: np.ndarray
    before: Optional[AnchorStats]
    after: AnchorStats
    boxes: int
    skipped: int
    seed: int
    sample: int
    generations: int
    seconds: float

    def anchor_list(self) -> list:
        """The fitted anchors as ``model.anchors`` takes them: ``[[w, h], ...]``, smallest first."""
        return [[float(w), float(h)] for w, h in self.anchors.reshape(-1, 2)]

    def figures(self) -> Dict[str, Any]:
        """The numbers ``--json`` writes: recall and mean IoU before and after, and the anchors."""
        before = self.before
        return {
            "bpr_before": before.bpr if before else None, "bpr_after": self.after.bpr,
            "mean_iou_before": before.mean_iou if before else None, "mean_iou_after": self.after.mean_iou,
            "anchors_per_box_before": before.anchors_per_box if before else None,
            "anchors_per_box_after": self.after.anchors_per_box,
            "anchors": self.anchor_list(), "threshold": self.after.threshold, "boxes": self.boxes,
            "skipped": self.skipped, "seed": self.seed, "sample": self.sample, "generations": self.generations,
            "seconds": self.seconds,
        }


def fit_anchors(
    shapes: BoxShapes, levels: int, per_level: int, threshold: float, current: Optional[Any] = None,
    seed: int = 0, sample: int = 50_000, generations: int = 1000,
) -> AnchorFit:
    """Fit ``levels × per_level`` anchors to ``shapes`` (see the module docstring).

    Args:
        shapes: the training box shapes (:func:`box_shapes`).
        levels, per_level: the model's output levels and anchors per level.
        threshold: the recall threshold (:func:`recall_threshold`).
        current: the anchors in use ``(K, 2)``, reported as "before"; None: not reported.
        seed: the random seed; the same seed and boxes give the same anchors.
        sample: most boxes k-means and evolution look at (the figures use all of them).
        generations: evolution steps (0: k-means only).

    Raises:
        DatasetError: fewer usable boxes than anchors to fit.
    """
    start = time.perf_counter()
    n = levels * per_level
    if len(shapes.shapes) < n:
        raise DatasetError(
            f"only {len(shapes.shapes)} usable training boxes ({shapes.skipped} skipped: a side at or below "
            f"data.aug.min_box_size at the training size), fewer than the {n} anchors to fit: add annotated "
            "pictures, or keep the default anchors (model.anchors: null)")
    rng = np.random.default_rng(seed)
    work = shapes.shapes
    if len(work) > sample:
        work = work[np.sort(rng.choice(len(work), sample, replace=False))]
    anchors = kmeans_anchors(work, n, rng)
    anchors = evolve_anchors(work, anchors, threshold, rng, generations)
    table = sort_into_levels(anchors, levels)
    before = anchor_stats(shapes.shapes, current, threshold) if current is not None else None
    after = anchor_stats(shapes.shapes, table, threshold)
    return AnchorFit(table, before, after, len(shapes.shapes), shapes.skipped, seed, min(sample, len(shapes.shapes)),
                     generations, time.perf_counter() - start)


def anchors_yaml(anchors: np.ndarray, strides: Optional[Sequence[int]] = None, note: str = "") -> str:
    """The ``model.anchors`` block of a config, ready to paste: one ``[w, h]`` per line, smallest first,
    each level's first anchor marked with a comment; ``note`` goes on the ``anchors:`` line."""
    lines = ["model:", "  anchors:" + (f"  # {note}" if note else "")]
    levels = np.asarray(anchors).reshape(len(anchors), -1, 2)
    for level, row in enumerate(levels):
        for k, (w, h) in enumerate(row):
            pair = f"    - [{w:g}, {h:g}]"
            if k == 0:
                where = f"stride {strides[level]}" if strides else f"level {level + 1} of {len(levels)}"
                pair = f"{pair:<24}# {where}"
            lines.append(pair)
    return "\n".join(lines) + "\n"
