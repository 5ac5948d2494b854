"""Training augmentation and the evaluation resize (the ``data.aug`` keys in docs/CONFIG.md).

Geometric steps are our own numpy/OpenCV code so that boxes follow the pixels
exactly (expand, min-IoU crop, flip, affine, letterbox); the photometric jitter is
albumentations'. All steps work on BGR uint8 images ``(H, W, 3)`` and boxes
``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

from ..config import AugConfig  # noqa: E402

__all__ = ["fit_into", "LetterboxInfo", "letterbox", "unletterbox_boxes", "TrainTransform", "EvalTransform",
           "box_iou_np", "large_enough"]

# ImageNet mean in BGR pixels: padding with it becomes 0 after normalisation.
MEAN_BGR = (104, 116, 124)


@dataclass
class LetterboxInfo:
    """How an image was resized into the network input: ``input = original * scale + pad``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_width: int
    orig_height: int


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(N, M)`` between xyxy boxes ``a (N, 4)`` and ``b (M, 4)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def large_enough(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """The ``(N,)`` mask of xyxy boxes ``(N, 4)`` kept by the augmentation's size rule: both sides longer
    than ``min_size`` pixels (``data.aug.min_box_size``); slivers left by clipping teach nothing."""
    return ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)


def fit_into(src_w: float, src_h: float, size: Tuple[int, int], keep_ratio: bool = True):
    """How a ``src_w``×``src_h`` picture goes into ``size = (h, w)``: ``(sx, sy, pad_x, pad_y, new_w, new_h)``.

    Letterbox (``keep_ratio``): one scale, the picture centred with integer padding; else a stretch.
    """
    h, w = size
    if keep_ratio:
        sx = sy = min(h / src_h, w / src_w)
        nw, nh = max(1, round(src_w * sx)), max(1, round(src_h * sy))
    else:
        sx, sy, nw, nh = w / src_w, h / src_h, w, h
    return sx, sy, (w - nw) // 2, (h - nh) // 2, nw, nh


def letterbox(
    image: np.ndarray, size: Tuple[int, int], keep_ratio: bool = True, boxes: Optional[np.ndarray] = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> Tuple[np.ndarray, Optional[np.ndarray], LetterboxInfo]:
    """Resize ``image`` into ``size = (h, w)``: keep the aspect ratio and pad centred (letterbox),
    or stretch. Returns the new image, the boxes mapped into it, and the mapping."""
    h0, w0 = image.shape[:2]
    h, w = size
    sx, sy, px, py, nw, nh = fit_into(w0, h0, size, keep_ratio)
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation) if (nw, nh) != (w0, h0) else image
    if (nw, nh) != (w, h):
        out = np.empty((h, w, 3), np.uint8)
        out[:] = MEAN_BGR
        out[py:py + nh, px:px + nw] = resized
    else:
        out = resized
    if boxes is not None:
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([px, py, px, py], np.float32)
    return out, boxes, LetterboxInfo(sx, sy, px, py, w0, h0)


def unletterbox_boxes(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy boxes from network-input pixels back to the original image (clipped to it)."""
    out = (boxes - np.array([info.pad_x, info.pad_y] * 2, np.float32)) / np.array([info.scale_x, info.scale_y] * 2, np.float32)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, info.orig_width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, info.orig_height)
    return out


class TrainTransform:
    """The training pipeline: photometric → expand → min-IoU crop → flip → affine → resize → drop tiny boxes.

    ``params`` is the config's ``data.aug``; ``keep_ratio`` picks letterbox (True) or stretch.

    ``__call__(image, boxes, labels, size, rng)`` returns ``(image (h, w, 3) uint8 BGR,
    boxes (K, 4), keep (N,) bool)`` where ``keep`` tells which input boxes survived (so
    labels and per-box weights can follow).
    """

    def __init__(self, params: Optional[AugConfig] = None, keep_ratio: bool = True, seed: Optional[int] = None) -> None:
        params = params if params is not None else AugConfig()
        self.p = params
        self.keep_ratio = keep_ratio
        prob = params.photometric_prob
        self.photometric = A.Compose(
            [
                A.RandomBrightnessContrast(brightness_limit=params.brightness / 255.0, contrast_limit=0.0, p=prob),
                A.RandomBrightnessContrast(
                    brightness_limit=0.0, contrast_limit=(params.contrast[0] - 1, params.contrast[1] - 1), p=prob
                ),
                A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=params.saturation, hue=(0, 0), p=prob),
                A.HueSaturationValue(hue_shift_limit=params.hue, sat_shift_limit=0, val_shift_limit=0, p=prob),
            ],
            seed=seed,
        )

    def reseed(self, seed: int) -> None:
        """Seed albumentations' generator (each data-loading worker calls this with its own seed)."""
        self.photometric.set_random_seed(seed)

    def __call__(self, image, boxes, size: Tuple[int, int], rng: np.random.Generator):
        # The geometric steps only compose a matrix (original pixels → output pixels) and move the
        # boxes; the image is resampled once at the end. No zoomed-out canvas is ever allocated.
        n = len(boxes)
        index = np.arange(n)
        boxes = boxes.astype(np.float32).reshape(-1, 4)
        ch, cw = image.shape[:2]  # size of the current (virtual) canvas
        matrix = np.eye(3)
        if self.p.photometric_prob > 0:
            image = self.photometric(image=image)["image"]
        if rng.random() < self.p.expand_prob:
            ratio = rng.uniform(1, self.p.expand_max_ratio)
            left, top = rng.uniform(0, cw * (ratio - 1)), rng.uniform(0, ch * (ratio - 1))
            matrix = _translation(left, top) @ matrix
            boxes = boxes + np.array([left, top, left, top], np.float32)
            cw, ch = cw * ratio, ch * ratio
        if n and rng.random() < self.p.crop_prob:
            crop = self._min_iou_crop(boxes, cw, ch, rng)
            if crop is not None:
                patch, inside = crop
                # Cut the image down to the patch (a view, no copy) so that a later shift cannot
                # bring back pixels the crop removed; the matrix so far is a translation (expand).
                ox1, oy1, ox2, oy2 = patch - np.tile(matrix[:2, 2], 2)
                sx1, sy1 = max(0, int(np.floor(ox1))), max(0, int(np.floor(oy1)))
                image = image[sy1:max(sy1 + 1, int(np.ceil(oy2))), sx1:max(sx1 + 1, int(np.ceil(ox2)))]
                matrix = _translation(-patch[0], -patch[1]) @ matrix @ _translation(sx1, sy1)
                boxes = boxes[inside]
                boxes[:, :2] = np.maximum(boxes[:, :2], patch[:2])
                boxes[:, 2:] = np.minimum(boxes[:, 2:], patch[2:])
                boxes -= np.array([patch[0], patch[1], patch[0], patch[1]], np.float32)
                index = index[inside]
                cw, ch = patch[2] - patch[0], patch[3] - patch[1]
        if rng.random() < self.p.flip_prob:
            matrix = np.array([[-1.0, 0, cw], [0, 1, 0], [0, 0, 1]]) @ matrix
            boxes = boxes.copy()
            boxes[:, [0, 2]] = cw - boxes[:, [2, 0]]
        if rng.random() < self.p.affine_prob:
            affine = self._random_affine(cw, ch, rng)
            matrix = affine @ matrix
            boxes = _transform_boxes(boxes, affine, cw, ch)
        h, w = size
        sx, sy, px, py, nw, nh = fit_into(cw, ch, size, self.keep_ratio)
        matrix = np.array([[sx, 0, px], [0, sy, py], [0, 0, 1]]) @ matrix
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([px, py, px, py], np.float32)
        image = cv2.warpAffine(image, _pixel_centres(matrix)[:2], (w, h), flags=cv2.INTER_LINEAR,
                               borderValue=MEAN_BGR)
        # Outside the canvas (the letterbox padding) the warp would still show pixels that a crop or
        # shift put off the canvas: paint it as padding.
        image[:py] = MEAN_BGR
        image[py + nh:] = MEAN_BGR
        image[:, :px] = MEAN_BGR
        image[:, px + nw:] = MEAN_BGR
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        big = large_enough(boxes, self.p.min_box_size)
        keep = np.zeros(n, bool)
        keep[index[big]] = True
        return image, boxes[big].astype(np.float32), keep

    def _min_iou_crop(self, boxes, cw: float, ch: float, rng, trials: int = 50, rounds: int = 50):
        """SSD's random crop: a patch whose IoU with every box is at least a randomly chosen minimum.

        Returns ``(patch xyxy, inside)`` where ``inside`` marks the boxes whose centre lies in the
        patch, or None for "no crop". Each round tries ``trials`` candidate patches at once.
        """
        choices = (None, *self.p.crop_min_ious)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(rounds):
            min_iou = choices[rng.integers(len(choices))]
            if min_iou is None:
                return None
            ws, hs = rng.uniform(0.3 * cw, cw, trials), rng.uniform(0.3 * ch, ch, trials)
            lefts, tops = rng.uniform(0, cw - ws), rng.uniform(0, ch - hs)
            patches = np.stack([lefts, tops, lefts + ws, tops + hs], axis=1).astype(np.float32)
            inside = ((centres[None] > patches[:, None, :2]) & (centres[None] < patches[:, None, 2:])).all(-1)
            good = (hs / ws >= 0.5) & (hs / ws <= 2) & (box_iou_np(patches, boxes).min(1) >= min_iou) & inside.any(1)
            if good.any():
                k = int(np.argmax(good))
                return patches[k], inside[k]
        return None

    def _random_affine(self, cw: float, ch: float, rng) -> np.ndarray:
        """A small random rotation and scale about the centre, and a shift (3×3)."""
        angle = rng.uniform(-self.p.affine_degrees, self.p.affine_degrees)
        matrix = np.eye(3)
        matrix[:2] = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, rng.uniform(*self.p.affine_scale))
        matrix[:2, 2] += rng.uniform(-self.p.affine_translate, self.p.affine_translate, 2) * (cw, ch)
        return matrix


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])


def _pixel_centres(matrix: np.ndarray) -> np.ndarray:
    """A map of continuous coordinates (pixel i spans [i, i+1]) as OpenCV wants it (pixel i at i)."""
    return _translation(-0.5, -0.5) @ matrix @ _translation(0.5, 0.5)


def _transform_boxes(boxes: np.ndarray, matrix: np.ndarray, cw: float, ch: float) -> np.ndarray:
    """Boxes through a 3×3 affine map: the hull of the four moved corners, clipped to the canvas."""
    if not len(boxes):
        return boxes
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    moved = (np.c_[corners, np.ones(len(corners))] @ matrix[:2].T).reshape(-1, 4, 2)
    out = np.concatenate([moved.min(1), moved.max(1)], axis=1).astype(np.float32)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, cw)  # parts moved off the picture are gone
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, ch)
    return out


class EvalTransform:
    """Letterbox (or stretch) to the test size; returns the image and the mapping back."""

    def __init__(self, size: Tuple[int, int], keep_ratio: bool = True) -> None:
        self.size = size
        self.keep_ratio = keep_ratio

    def __call__(self, image: np.ndarray) -> Tuple[np.ndarray, LetterboxInfo]:
        out, _, info = letterbox(image, self.size, self.keep_ratio)
        return out, info


