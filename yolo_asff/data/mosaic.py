"""Mosaic: four training pictures tiled 2×2 around a random centre (YOLOv4, Bochkovskiy et al. 2020,
section 3.3; YOLOX and ultralytics train with it and switch it off for the last epochs).

The tiling is albumentations' ``Mosaic``. It fits what we need: it draws from its own generators,
which :meth:`Mosaic.__call__` seeds from the sample's seed (so a sample is the same whatever worker
makes it and whatever came before: resume stays bit-exact), and boxes carry extra columns through it
untouched, so a box number rides along and labels (and anything else per box) follow by index.
It also clips the boxes to their cells.

Where it sits (see :class:`~yolo_asff.data.dataset.DetectionDataset`): the mosaic replaces the one
picture a sample starts from; the sample then goes through the usual
:class:`~yolo_asff.data.transforms.TrainTransform` (photometric, expand, crop, flip, affine, resize, size
rule), and mixup may blend it with a plain sample, each box weighted λ or 1 − λ as for any sample.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence, Tuple

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

from .transforms import large_enough  # noqa: E402

__all__ = ["Mosaic"]


class Mosaic:
    """Tile four pictures into one ``(h, w)`` canvas, boxes following their objects.

    The canvas is the ``(h, w)`` window of a 2×2 grid of ``(h, w)`` cells whose centre (the point where
    the four pictures meet) falls between 30 % and 70 % of the window's height and width. Each
    picture is scaled to cover its cell (its shorter side fits; the scale of a plain sample's resize
    for square pictures) and shows the part next to the centre, as in YOLOX; the first picture
    takes the largest of the four parts. Boxes are clipped to their part, then those with a side of
    ``min_box_size`` pixels or fewer are dropped (the rule :class:`TrainTransform` applies at its end).

    Args:
        min_box_size: ``data.aug.min_box_size``, in canvas pixels.
        center_range: where the centre may fall, as fractions of the canvas.
    """

    def __init__(self, min_box_size: float, center_range: Tuple[float, float] = (0.3, 0.7)) -> None:
        self.min_box_size = min_box_size
        self.center_range = center_range
        self._by_size: Dict[Tuple[int, int], A.Compose] = {}

    def _compose(self, size: Tuple[int, int]) -> A.Compose:
        """albumentations' Mosaic for one canvas size (multi-scale training uses a handful)."""
        if size not in self._by_size:
            # fill 0: "cover" leaves no gap to fill, and a scalar fill is 100× cheaper for numpy than
            # a colour. min_width 0: our own size rule runs afterwards (albumentations keeps a box of
            # exactly min_width; we drop it). clip: a box a hair outside its picture must not stop the run.
            mosaic = A.Mosaic(grid_yx=(2, 2), target_size=size, cell_shape=size, center_range=self.center_range,
                              fit_mode="cover", fill=0, p=1.0)
            self._by_size[size] = A.Compose(
                [mosaic], bbox_params=A.BboxParams(format="pascal_voc", min_width=0, min_height=0, clip=True))
        return self._by_size[size]

    def __call__(
        self, pictures: Sequence[Tuple[np.ndarray, np.ndarray]], size: Tuple[int, int], seed: int
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One mosaic of four ``pictures`` at ``size = (h, w)``, drawn from ``seed``.

        Args:
            pictures: four ``(image (H, W, 3) uint8 BGR, boxes (N, 4) xyxy pixels of that image)``.
            size: the canvas ``(h, w)``, the training input size.
            seed: the same seed and pictures give the same mosaic, bit for bit.

        Returns:
            ``image (h, w, 3) uint8``, ``boxes (K, 4) float32`` xyxy canvas pixels, and ``source (K,)``
            int64: each box's position in the four pictures' boxes concatenated in order.
        """
        if len(pictures) != 4:
            raise ValueError(f"a mosaic takes four pictures, got {len(pictures)}")
        items, start = [], 0
        for image, boxes in pictures:
            number = np.arange(start, start + len(boxes), dtype=np.float64)[:, None]
            items.append({"image": image, "bboxes": np.concatenate([boxes.reshape(-1, 4), number], axis=1)})
            start += len(boxes)
        compose = self._compose((int(size[0]), int(size[1])))
        compose.set_random_seed(seed)
        out = compose(**items[0], mosaic_metadata=items[1:])
        boxes = np.asarray(out["bboxes"], np.float64).reshape(-1, 5)
        keep = large_enough(boxes, self.min_box_size)
        return out["image"], boxes[keep, :4].astype(np.float32), np.rint(boxes[keep, 4]).astype(np.int64)
