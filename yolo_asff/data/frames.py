"""Which pixel frame an image's boxes are in, when the annotated size and the decoded picture disagree.

Annotation files carry the picture's width and height, and boxes in that picture's pixels. The
two stop agreeing for many reasons: the size was left out or written as 0 × 0, the picture was
resized after it was annotated, the annotating tool read the pixels as stored while OpenCV turns
the picture by its EXIF orientation, or the size field is simply wrong. Training boxes against the
wrong frame teaches the detector boxes that are not on their objects, so :func:`choose_frame`
decides, from the evidence in the boxes themselves, which frame they are in:

- the annotation has no usable size: the decoded picture's (boxes that do not fit it, but fit the
  stored frame of an EXIF-rotated picture, mean that frame);
- the annotated size is the stored size of an EXIF-rotated picture: that frame, decoded without
  rotation (the boxes must fit it);
- otherwise the candidate frames are the decoded picture (the size field was wrong) and, when the
  aspect ratios agree, the annotated frame scaled to the picture (the picture was resized); the
  frame the boxes fit is used if there is exactly one, else the image is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .images import ImageProbe

__all__ = ["FIT_TOLERANCE", "Frame", "FrameChoice", "boxes_fit", "choose_frame", "exif_habit"]

FIT_TOLERANCE = 2.0  # pixels a box may overhang a frame and still be taken to belong to it
_ASPECT_TOLERANCE = 0.01  # relative difference of the x and y scales for "the same picture, resized"


@dataclass(frozen=True)
class Frame:
    """How to read an image's boxes against its picture.

    Attributes:
        width, height: the picture's size as decoded for training, in pixels.
        scale_x, scale_y: annotation coordinates times these are decoded-picture pixels.
        ignore_orientation: decode without applying the EXIF orientation (the boxes are in the
            stored frame).
    """

    width: int
    height: int
    scale_x: float = 1.0
    scale_y: float = 1.0
    ignore_orientation: bool = False


@dataclass(frozen=True)
class FrameChoice:
    """What :func:`choose_frame` decided: a frame (None: skip the image) and, if anything was odd, what."""

    frame: Optional[Frame]
    problem: Optional[str] = None  # a problem kind for the ProblemLog
    detail: str = ""  # the sizes involved, for the example


def boxes_fit(boxes_xyxy: np.ndarray, width: float, height: float, tolerance: float = FIT_TOLERANCE) -> bool:
    """Whether every finite box of ``(N, 4)`` x1, y1, x2, y2 lies in ``[0, width] × [0, height]`` (± tolerance)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    if not len(boxes):
        return True
    return bool((boxes[:, :2] >= -tolerance).all() and (boxes[:, 2] <= width + tolerance).all()
                and (boxes[:, 3] <= height + tolerance).all())


def _size(width: float, height: float) -> str:
    return f"{width:g}×{height:g}"


def _near(size: Tuple[float, float], width: float, height: float) -> bool:
    return abs(size[0] - width) <= FIT_TOLERANCE and abs(size[1] - height) <= FIT_TOLERANCE


def exif_habit(sizes: Sequence[Optional[Tuple[float, float]]], probes: Sequence[ImageProbe]) -> Optional[bool]:
    """How the tool that annotated a dataset read EXIF-rotated pictures, from the ones whose sizes tell.

    A quarter-turned, non-square picture shows it: an annotated size equal to the stored size means
    the tool ignored the EXIF orientation, equal to the turned size that it applied it. Returns True
    (stored frame) or False (turned) when at least 90% of the telling pictures agree, else None.
    """
    stored = turned = 0
    for size, probe in zip(sizes, probes):
        if size is None or not probe.measured or not probe.rotated:
            continue
        stored += _near(size, probe.stored_width, probe.stored_height)
        turned += _near(size, probe.width, probe.height)
    if stored + turned == 0:
        return None
    share = stored / (stored + turned)
    return True if share >= 0.9 else False if share <= 0.1 else None


def _orientation_note(
    choice: FrameChoice, probe: ImageProbe, detail: str, stored_habit: Optional[bool] = None
) -> FrameChoice:
    """An EXIF orientation whose frame the sizes cannot reveal (a flip, a half turn, or a quarter turn of a
    square picture): read as the dataset's other EXIF-rotated pictures were annotated (:func:`exif_habit`),
    else in the frame OpenCV turns the picture to; counted either way."""
    if choice.problem or probe.orientation == 1 or probe.rotated:
        return choice
    detail = f"{detail}, orientation {probe.orientation}"
    if stored_habit:
        return FrameChoice(Frame(probe.stored_width, probe.stored_height, ignore_orientation=True),
                           "EXIF orientation the sizes cannot check: read without rotation, as this dataset's "
                           "other EXIF-rotated pictures were annotated", detail)
    why = "as this dataset's other EXIF-rotated pictures were annotated" if stored_habit is False else \
        "the frame OpenCV turns the picture to; check these pictures"
    return FrameChoice(choice.frame, f"EXIF orientation the sizes cannot check: read turned ({why})", detail)


def choose_frame(
    annotated: Optional[Tuple[float, float]], probe: ImageProbe, boxes_xyxy: np.ndarray,
    stored_habit: Optional[bool] = None,
) -> FrameChoice:
    """The frame that ``boxes_xyxy`` (annotation coordinates) are in, for a picture of ``probe``'s size.

    Args:
        annotated: ``(width, height)`` from the annotation file, or None when it has none
            (missing, zero, negative, not a number).
        probe: the picture's stored and decoded size (:func:`~yolo_asff.data.images.probe_image`).
        boxes_xyxy: ``(N, 4)`` every box of the image (crowd and difficult ones too), x1, y1, x2, y2
            in annotation pixels.
        stored_habit: :func:`exif_habit` of the dataset, for orientations the sizes cannot reveal.

    Returns:
        the frame and, when the sizes disagreed, a problem kind and the sizes for the message.
        ``frame`` is None when the boxes fit no candidate frame or more than one.
    """
    decoded = Frame(probe.width, probe.height)
    stored = Frame(probe.stored_width, probe.stored_height, ignore_orientation=True)
    seen = f"annotated {_size(*annotated)}" if annotated else "no size in the annotation"
    detail = f"{seen}, picture {_size(probe.width, probe.height)}"
    if probe.rotated:
        detail += f" (stored {_size(probe.stored_width, probe.stored_height)}, EXIF-rotated)"
    fits = lambda f: boxes_fit(boxes_xyxy, f.width, f.height)  # noqa: E731
    if annotated is None:
        if probe.rotated and not fits(decoded) and fits(stored):
            return FrameChoice(stored, "no image size in the annotation; boxes fit the EXIF-rotated picture's "
                               "stored frame (read without rotation)", detail)
        return _orientation_note(FrameChoice(decoded, "no image size in the annotation (used the picture's)", detail),
                                 probe, detail, stored_habit)
    aw, ah = annotated
    if abs(aw - decoded.width) <= FIT_TOLERANCE and abs(ah - decoded.height) <= FIT_TOLERANCE:
        return _orientation_note(FrameChoice(decoded), probe, detail, stored_habit)  # the same frame, or rounding
    if probe.rotated and (aw, ah) == (stored.width, stored.height) and fits(stored):
        return FrameChoice(stored, "annotated in the stored frame of an EXIF-rotated picture (read without "
                           "rotation)", detail)
    if not len(np.asarray(boxes_xyxy).reshape(-1, 4)):
        return FrameChoice(decoded, "annotated size differs from the picture (no boxes; used the picture's size)",
                           detail)
    scale_x, scale_y = decoded.width / aw, decoded.height / ah
    options = []
    if fits(decoded):
        options.append((decoded, "annotated size differs from the picture; boxes fit the picture (used its size)"))
    if abs(scale_x - scale_y) <= _ASPECT_TOLERANCE * max(scale_x, scale_y) and fits(Frame(aw, ah)):
        scaled = Frame(decoded.width, decoded.height, scale_x, scale_y)
        options.append((scaled, "picture resized after annotation; boxes fit the annotated size (scaled to "
                                "the picture)"))
    if len(options) == 1:
        frame, kind = options[0]
        return FrameChoice(frame, kind, detail + (f", scale {scale_x:.4g}" if frame.scale_x != 1.0 else ""))
    why = "fit both the annotated and the picture's size" if options else "fit neither size"
    return FrameChoice(None, f"annotated size differs from the picture and the boxes {why} (image skipped)", detail)
