"""Mosaic: four training pictures tiled 2×2 around a random centre (YOLOv4, Bochkovskiy et al. 2020,
section 3.3; YOLOX and ultralytics train with it and switch it off for the last epochs).

Where it sits (see :class:`~yolo_asff.data.dataset.DetectionDataset`): the mosaic replaces the one
picture a sample starts from; the sample then goes through the usual
:class:`~yolo_asff.data.transforms.TrainTransform` (photometric, expand, crop, flip, affine, resize, size
rule), and mixup may blend it with a plain sample, each box weighted λ or 1 − λ as for any sample.

Why not albumentations' ``Mosaic`` (2.0.8), which has the same layout and could do the job (it can be
seeded per call, and a box number rides through it as an extra box column): it costs about 10 ms a
mosaic at 608×608 against about 2 ms here, because each call builds and validates a new pipeline for
each cell, resizes whole pictures of which a quarter is shown, and converts and checks every box
several times. With it the data benchmark (``tools/benchmark.py data``, 608, mosaic on every sample,
mixup on half) fell to 0.55–0.65 of its speed without mosaic, under the 50 images/s per worker the
pipeline must keep; with this one it keeps about 0.75 (measured side by side on one machine). The layout
below is albumentations' (``fit_mode="cover"``, cell size = canvas size, centre in 30–70 %, the
first picture in the largest part).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .transforms import large_enough

__all__ = ["Mosaic"]


class Mosaic:
    """Tile four pictures into one ``(h, w)`` canvas, boxes following their objects.

    The four pictures meet at a random centre ``(cx, cy)`` (a whole pixel, each coordinate between
    30 % and 70 % of the canvas side), which cuts the canvas into four parts. Each picture is scaled
    to cover a whole canvas (its shorter side fits, as albumentations' "cover"; for a square picture
    the scale of a plain sample's resize) and shows the piece of it next to the centre: the part
    top-left of the centre shows its picture's bottom-right corner, and so on, as in YOLOX. The
    first picture takes the largest part, the others the rest in random order. Boxes are clipped to
    their part, then those with a side of ``min_box_size`` pixels or fewer are dropped (the rule
    :class:`~yolo_asff.data.transforms.TrainTransform` applies at its end).

    Args:
        min_box_size: ``data.aug.min_box_size``, in canvas pixels.
        center_range: where the centre may fall, as fractions of the canvas side.
    """

    def __init__(self, min_box_size: float, center_range: Tuple[float, float] = (0.3, 0.7)) -> None:
        self.min_box_size = min_box_size
        self.center_range = center_range

    def parts(self, size: Tuple[int, int], rng: np.random.Generator) -> List[Tuple[int, int, int, int]]:
        """The four parts ``(x1, y1, x2, y2)`` of a ``size = (h, w)`` canvas in the order the pictures take
        them: the largest first, then the other three shuffled."""
        h, w = size
        cx = int(round(w * rng.uniform(*self.center_range)))
        cy = int(round(h * rng.uniform(*self.center_range)))
        parts = [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]
        largest = int(np.argmax([(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in parts]))
        rest = [part for k, part in enumerate(parts) if k != largest]
        return [parts[largest], *(rest[k] for k in rng.permutation(3))]

    def __call__(
        self, pictures: Sequence[Tuple[np.ndarray, np.ndarray]], size: Tuple[int, int], rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One mosaic of four ``pictures`` at ``size = (h, w)``, drawn from ``rng``.

        Args:
            pictures: four ``(image (H, W, 3) uint8 BGR, boxes (N, 4) xyxy pixels of that image)``.
            size: the canvas ``(h, w)``, the training input size.
            rng: the sample's generator: the same state and pictures give the same mosaic, bit for bit.

        Returns:
            ``image (h, w, 3) uint8``, ``boxes (K, 4) float32`` xyxy canvas pixels, and ``source (K,)``
            int64: each box's position in the four pictures' boxes concatenated in order.
        """
        if len(pictures) != 4:
            raise ValueError(f"a mosaic takes four pictures, got {len(pictures)}")
        h, w = int(size[0]), int(size[1])
        canvas = np.empty((h, w, 3), np.uint8)
        placed = [_place(image, boxes.reshape(-1, 4), part, canvas)
                  for (image, boxes), part in zip(pictures, self.parts((h, w), rng))]
        boxes = np.concatenate(placed).astype(np.float32)
        keep = large_enough(boxes, self.min_box_size)
        return canvas, boxes[keep], np.flatnonzero(keep).astype(np.int64)


def _place(image: np.ndarray, boxes: np.ndarray, part: Tuple[int, int, int, int], canvas: np.ndarray) -> np.ndarray:
    """Draw ``image`` into ``part`` of ``canvas`` (cover scale, the piece next to the centre); its boxes
    ``(N, 4)``, clipped to the part, in canvas pixels."""
    x1, y1, x2, y2 = part
    h, w = canvas.shape[:2]
    pw, ph = x2 - x1, y2 - y1
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    # A part left of the centre shows the right end of its scaled picture; one above, the bottom.
    left = iw * scale - pw if x1 == 0 else 0.0
    top = ih * scale - ph if y1 == 0 else 0.0
    # Continuous coordinates (pixel i spans [i, i+1]) as OpenCV wants them (pixel i at i).
    matrix = np.array([[scale, 0.0, 0.5 * scale - 0.5 - left], [0.0, scale, 0.5 * scale - 0.5 - top]])
    canvas[y1:y2, x1:x2] = cv2.warpAffine(image, matrix, (pw, ph), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE)
    out = boxes * scale - np.array([left, top, left, top])
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, pw) + x1
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, ph) + y1
    return out
