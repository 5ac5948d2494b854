"""What every dataset reader produces: one :class:`ImageRecord` per image, and a problem log.

Readers check annotations as they read them and tell the user, once, what was
wrong and what they did about it (:class:`ProblemLog`), instead of crashing on the
first odd box or silently training on wrong ones.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.logging import get_logger

__all__ = ["DatasetError", "ImageRecord", "ProblemLog", "check_box", "clip_boxes", "summarize"]


class DatasetError(RuntimeError):
    """The dataset cannot be used (no images, no classes, a wrong path); the message says why."""


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        image_id: the dataset's own id (COCO ``id``; VOC: the index in the split list).
        path: image file.
        width, height: image size in pixels, from the annotation file.
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels (continuous coordinates, 0-based).
        labels: ``(N,)`` int64 contiguous class indices.
        ignore: ``(N,)`` bool; COCO crowd or VOC difficult boxes, kept for evaluation.
        name: a short name for messages (file name or VOC id).
    """

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    name: str = ""

    def training_targets(self, use_ignored: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes and labels used as training targets (ignored boxes left out unless asked for)."""
        keep = np.ones(len(self.labels), bool) if use_ignored else ~self.ignore
        return self.boxes[keep], self.labels[keep]


@dataclass
class ProblemLog:
    """Counts of annotation problems by kind, with the first few examples of each."""

    source: str
    counts: Counter = field(default_factory=Counter)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.max_examples:
            shown.append(example)

    def lines(self) -> List[str]:
        return [
            f"{count} × {kind} (e.g. {'; '.join(self.examples.get(kind, []))})"
            for kind, count in self.counts.most_common()
        ]


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip ``(N, 4)`` xyxy boxes to the image ``[0, width] × [0, height]``."""
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def check_box(box: np.ndarray, width: int, height: int, where: str, problems: ProblemLog) -> Optional[np.ndarray]:
    """The box clipped to the image, or None (and a logged problem) when nothing usable is left."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not np.isfinite(box).all() or x2 <= x1 or y2 <= y1:
        problems.add("box with zero or negative size (dropped)", f"{where}: {[round(v, 1) for v in (x1, y1, x2, y2)]}")
        return None
    clipped = clip_boxes(box[None], width, height)[0]
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        problems.add("box outside the image (dropped)", f"{where}: {[round(v, 1) for v in (x1, y1, x2, y2)]}")
        return None
    if not np.array_equal(clipped, box):
        problems.add("box partly outside the image (clipped)", f"{where}")
    return clipped


def summarize(records: Sequence[ImageRecord], class_names: Sequence[str], problems: ProblemLog, title: str) -> str:
    """Log and return a start-up summary: images, boxes per class, empty images, problems."""
    per_class = np.bincount(
        np.concatenate([r.labels[~r.ignore] for r in records]) if records else np.zeros(0, int),
        minlength=len(class_names),
    )
    n_ignored = sum(int(r.ignore.sum()) for r in records)
    empty = sum(1 for r in records if not (~r.ignore).any())
    lines = [
        f"{title}: {len(records)} images, {int(per_class.sum())} boxes"
        + (f" (+{n_ignored} crowd/difficult, evaluation only)" if n_ignored else "")
        + f", {empty} images without boxes, {len(class_names)} classes",
        "  boxes per class: " + ", ".join(f"{name} {count}" for name, count in zip(class_names, per_class)),
    ]
    if problems.counts:
        lines.append(f"  problems found in {problems.source}:")
        lines += [f"    {line}" for line in problems.lines()]
    text = "\n".join(lines)
    get_logger("data").info(text)
    return text
