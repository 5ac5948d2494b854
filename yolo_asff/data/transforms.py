"""Training augmentation and the evaluation resize (SPEC section 9).

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

__all__ = ["LetterboxInfo", "letterbox", "unletterbox_boxes", "TrainTransform", "EvalTransform", "box_iou_np"]

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


def letterbox(
    image: np.ndarray, size: Tuple[int, int], keep_ratio: bool = True, boxes: Optional[np.ndarray] = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> Tuple[np.ndarray, Optional[np.ndarray], LetterboxInfo]:
    """Resize ``image`` into ``size = (h, w)``: keep the aspect ratio and pad centred (letterbox),
    or stretch. Returns the new image, the boxes mapped into it, and the mapping."""
    h0, w0 = image.shape[:2]
    h, w = size
    if keep_ratio:
        scale = min(h / h0, w / w0)
        sx = sy = scale
        nw, nh = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    else:
        sx, sy, nw, nh = w / w0, h / h0, w, h
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation) if (nw, nh) != (w0, h0) else image
    px, py = (w - nw) // 2, (h - nh) // 2
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
        n = len(boxes)
        index = np.arange(n)
        boxes = boxes.astype(np.float32).reshape(-1, 4)
        if self.p.photometric_prob > 0:
            image = self.photometric(image=image)["image"]
        if rng.random() < self.p.expand_prob:
            image, boxes = self._expand(image, boxes, rng)
        if rng.random() < self.p.crop_prob and n:
            image, boxes, kept = self._min_iou_crop(image, boxes, rng)
            index = index[kept]
        if rng.random() < self.p.flip_prob:
            image = image[:, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = image.shape[1] - boxes[:, [2, 0]]
        if rng.random() < self.p.affine_prob:
            image, boxes = self._affine(image, boxes, rng)
        image, boxes, _ = letterbox(np.ascontiguousarray(image), size, self.keep_ratio, boxes)
        h, w = size
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        big = ((boxes[:, 2] - boxes[:, 0]) > self.p.min_box_size) & ((boxes[:, 3] - boxes[:, 1]) > self.p.min_box_size)
        keep = np.zeros(n, bool)
        keep[index[big]] = True
        return image, boxes[big], keep

    def _expand(self, image, boxes, rng):
        """Zoom out: place the image at a random spot of a canvas up to ``expand_max_ratio`` times larger."""
        h, w = image.shape[:2]
        ratio = rng.uniform(1, self.p.expand_max_ratio)
        ch, cw = int(h * ratio), int(w * ratio)
        top, left = int(rng.uniform(0, ch - h)), int(rng.uniform(0, cw - w))
        canvas = np.empty((ch, cw, 3), np.uint8)
        canvas[:] = MEAN_BGR
        canvas[top:top + h, left:left + w] = image
        return canvas, boxes + np.array([left, top, left, top], np.float32)

    def _min_iou_crop(self, image, boxes, rng):
        """SSD's random crop: a patch whose IoU with the boxes is at least a randomly chosen minimum;
        boxes whose centre falls outside the patch are dropped, the rest are clipped to it."""
        h, w = image.shape[:2]
        all_kept = np.arange(len(boxes))
        while True:
            choices = (None, *self.p.crop_min_ious)
            min_iou = choices[rng.integers(len(choices))]
            if min_iou is None:
                return image, boxes, all_kept
            for _ in range(50):
                cw, ch = rng.uniform(0.3 * w, w), rng.uniform(0.3 * h, h)
                if not 0.5 <= ch / cw <= 2:
                    continue
                left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                patch = np.array([left, top, left + cw, top + ch], np.float32)
                if box_iou_np(patch[None], boxes).min() < min_iou:
                    continue
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                inside = ((centres > patch[:2]) & (centres < patch[2:])).all(axis=1)
                if not inside.any():
                    continue
                x1, y1, x2, y2 = (int(v) for v in patch)
                out = boxes[inside].copy()
                out[:, :2] = np.maximum(out[:, :2], patch[:2])
                out[:, 2:] = np.minimum(out[:, 2:], patch[2:])
                out -= np.array([x1, y1, x1, y1], np.float32)
                return image[y1:y2, x1:x2], out, all_kept[inside]

    def _affine(self, image, boxes, rng):
        """A small random rotation, scale and translation; boxes become the hull of their moved corners."""
        h, w = image.shape[:2]
        angle = rng.uniform(-self.p.affine_degrees, self.p.affine_degrees)
        scale = rng.uniform(*self.p.affine_scale)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-self.p.affine_translate, self.p.affine_translate, 2) * (w, h)
        out = cv2.warpAffine(image, matrix, (w, h), borderValue=MEAN_BGR)
        if len(boxes):
            corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
            moved = (np.c_[corners, np.ones(len(corners))] @ matrix.T).reshape(-1, 4, 2)
            boxes = np.concatenate([moved.min(1), moved.max(1)], axis=1).astype(np.float32)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)  # parts moved off the picture are gone
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return out, boxes


class EvalTransform:
    """Letterbox (or stretch) to the test size; returns the image and the mapping back."""

    def __init__(self, size: Tuple[int, int], keep_ratio: bool = True) -> None:
        self.size = size
        self.keep_ratio = keep_ratio

    def __call__(self, image: np.ndarray) -> Tuple[np.ndarray, LetterboxInfo]:
        out, _, info = letterbox(image, self.size, self.keep_ratio)
        return out, info


