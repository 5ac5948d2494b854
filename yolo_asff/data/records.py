"""What every dataset reader produces: one :class:`ImageRecord` per image, and a problem log.

Readers check annotations as they read them and tell the user, once, what was
wrong and what they did about it (:class:`ProblemLog`), instead of crashing on the
first odd box or silently training on wrong ones.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import YoloAsffError
from ..utils.logging import get_logger
from .frames import choose_frame
from .images import ImageProbe

CLIP_TOLERANCE = 0.5  # pixels: rounding (normalised YOLO coordinates, float sums) rather than a wrong box

__all__ = [
    "Annotations", "DatasetError", "ImageRecord", "ObjectBox", "ProblemLog", "check_boxes", "clip_boxes",
    "make_record", "read_flag", "require_records", "summarize",
]


class DatasetError(YoloAsffError, RuntimeError):
    """The dataset cannot be used (no images, no classes, a wrong path); the message says why."""


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        image_id: an int unique in the split: the file's own id where it is an int (COCO), else
            a number given by the reader (see :attr:`Annotations.source_image_ids`).
        path: image file.
        width, height: the picture's size as decoded for training, in pixels (checked against
            the picture itself; see :mod:`yolo_asff.data.frames`).
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels of that picture (continuous
            coordinates, 0-based), clipped to it.
        labels: ``(N,)`` int64 contiguous class indices.
        ignore: ``(N,)`` bool; COCO crowd or VOC difficult boxes, kept for evaluation.
        name: a short name for messages (file name or VOC id).
        eval_boxes: ``(N, 4)`` the same boxes as annotated, not clipped, for scoring (COCO scores
            the file's boxes as they are); None: ``boxes``.
        areas: ``(N,)`` the annotation's own area in pixels² (COCO: the segment's, which sets the
            small / medium / large range); None: the box areas.
        ignore_orientation: decode the picture without its EXIF rotation (the boxes are in its
            stored frame).
        annotation_scale: ``(sx, sy)``: the annotation file's coordinates times these are this
            record's (not 1 for a picture resized after it was annotated); results files are
            written back in the file's coordinates.
        size_checked: ``width`` and ``height`` were read from the picture (False when
            ``data.check_images: false`` trusted the annotation file).
    """

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    name: str = ""
    eval_boxes: Optional[np.ndarray] = None
    areas: Optional[np.ndarray] = None
    ignore_orientation: bool = False
    annotation_scale: Tuple[float, float] = (1.0, 1.0)
    size_checked: bool = True

    def training_targets(self, use_ignored: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes and labels used as training targets (ignored boxes left out unless asked for)."""
        keep = np.ones(len(self.labels), bool) if use_ignored else ~self.ignore
        return self.boxes[keep], self.labels[keep]

    def scoring_boxes(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(N, 4)`` boxes and ``(N,)`` areas that evaluation scores against."""
        boxes = self.eval_boxes if self.eval_boxes is not None else self.boxes
        areas = self.areas if self.areas is not None else (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes, areas


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


@dataclass
class Annotations:
    """A split read and checked, by any reader (COCO, VOC, YOLO txt).

    Attributes:
        records: one per usable image.
        class_names: contiguous class index → name.
        category_ids: contiguous class index → the int category id that evaluation uses (the
            COCO file's own ids where they are ints; 1..K for VOC, 0..K-1 for YOLO txt).
        problems: what was wrong in the files, counted, with examples.
        source: the file or folder read (for messages).
        labels_seen: every object's class as the files write it (name or index) → count, also
            for classes that were not kept; says what the files hold when nothing matched.
        source_image_ids: record ``image_id`` → the file's own image id, where they differ
            (string ids, ids that are not unique as numbers): results files use the file's ids.
        source_category_ids: class index → the file's own category id, where they differ.
        has_ground_truth: False for an image list without annotations (COCO test-dev).
    """

    records: List["ImageRecord"]
    class_names: List[str]
    category_ids: List[int]
    problems: "ProblemLog"
    source: str
    labels_seen: Counter = field(default_factory=Counter)
    source_image_ids: Dict[int, Any] = field(default_factory=dict)
    source_category_ids: Dict[int, Any] = field(default_factory=dict)
    has_ground_truth: bool = True


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip ``(N, 4)`` xyxy boxes to the image ``[0, width] × [0, height]``."""
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def check_boxes(
    boxes: np.ndarray, width: float, height: float, wheres: Sequence[str], problems: ProblemLog
) -> Tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` xyxy boxes clipped to the image, and the ``(N,)`` mask of those that keep an area.

    Boxes of zero or negative size (or not finite) and boxes wholly outside the image are
    dropped; boxes overhanging it by more than :data:`CLIP_TOLERANCE` pixels (more than rounding
    in the file) are clipped. Each is counted in ``problems`` with its ``wheres`` entry.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        sized = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    clipped = clip_boxes(np.where(finite[:, None], boxes, 0.0), width, height)
    inside = sized & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    trimmed = inside & (np.abs(clipped - np.where(finite[:, None], boxes, 0.0)).max(axis=1) > CLIP_TOLERANCE)
    for i in np.flatnonzero(~inside):
        kind = "box with zero or negative size (dropped)" if not sized[i] else "box outside the image (dropped)"
        problems.add(kind, f"{wheres[i]}: {[round(float(v), 1) for v in boxes[i]]}")
    for i in np.flatnonzero(trimmed):
        problems.add("box partly outside the image (clipped)", f"{wheres[i]}")
    return clipped, inside


@dataclass
class ObjectBox:
    """One annotated object as read from a file, before it is checked against its picture.

    Attributes:
        box: ``(4,)`` x1, y1, x2, y2 in the annotation's pixels (0-based, continuous).
        label: contiguous class index.
        ignore: crowd (COCO) or difficult (VOC).
        area: the annotation's own area (COCO ``area``), or None for the box's.
        where: names the object in messages (file and annotation id or line).
    """

    box: np.ndarray
    label: int
    ignore: bool = False
    area: Optional[float] = None
    where: str = ""


def make_record(
    image_id: int, path: str, name: str, annotated_size: Optional[Tuple[float, float]], probe: ImageProbe,
    objects: Sequence[ObjectBox], problems: ProblemLog, stored_habit: Optional[bool] = None,
) -> Optional[ImageRecord]:
    """An :class:`ImageRecord` with its boxes in the frame of the decoded picture, or None to skip the image.

    The frame comes from :func:`~yolo_asff.data.frames.choose_frame` (annotated size against the
    picture's, decided by where the boxes fit); the boxes are then scaled into it and checked with
    :func:`check_boxes`. Everything odd is counted in ``problems``. ``stored_habit``: how the dataset's
    tool read EXIF-rotated pictures (:func:`~yolo_asff.data.frames.exif_habit`).
    """
    if probe.error:
        problems.add(f"picture {probe.error} (skipped)", f"{name}: {path}")
        return None
    raw = np.array([o.box for o in objects], np.float64).reshape(-1, 4)
    choice = choose_frame(annotated_size, probe, raw, stored_habit)
    if choice.problem:
        problems.add(choice.problem, f"{name}: {choice.detail}")
    frame = choice.frame
    if frame is None:
        return None
    scale = np.array([frame.scale_x, frame.scale_y] * 2)
    scaled = raw * scale
    clipped, keep = check_boxes(scaled, frame.width, frame.height, [o.where or name for o in objects], problems)
    own_area = np.array([o.area if o.area is not None else np.nan for o in objects], np.float64)
    box_area = (scaled[:, 2] - scaled[:, 0]) * (scaled[:, 3] - scaled[:, 1])
    areas = np.where(np.isnan(own_area), box_area, own_area * frame.scale_x * frame.scale_y)
    labels = np.array([o.label for o in objects], np.int64)
    ignore = np.array([o.ignore for o in objects], bool)
    return ImageRecord(
        image_id=int(image_id), path=str(path), width=int(frame.width), height=int(frame.height),
        boxes=clipped[keep].astype(np.float32), labels=labels[keep], ignore=ignore[keep], name=name,
        eval_boxes=scaled[keep], areas=areas[keep], ignore_orientation=frame.ignore_orientation,
        annotation_scale=(frame.scale_x, frame.scale_y), size_checked=probe.measured,
    )


def read_flag(value: Any) -> Optional[bool]:
    """A 0/1 flag in any spelling files use (COCO ``iscrowd``, VOC ``difficult``): ``1``, ``"1"``, ``True``,
    ``"true"``, ``"yes"``; missing is False; None when it cannot be read."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes"):
        return True
    if text in ("0", "0.0", "false", "no", ""):
        return False
    return None


def require_records(records: Sequence[ImageRecord], problems: ProblemLog, what: str) -> None:
    """Raise DatasetError when a reader kept no image: ``no usable images in <what>``, with every problem counted."""
    if not records:
        detail = f"; problems: {'; '.join(problems.lines())}" if problems.counts else ""
        raise DatasetError(f"no usable images in {what}{detail}")


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
