"""Drawing boxes and labels on images (dataset browser, demo, TensorBoard)."""
from __future__ import annotations

import colorsys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["caption", "class_colour", "draw_boxes", "image_grid"]


def class_colour(index: int) -> Tuple[int, int, int]:
    """A distinct, stable BGR colour per class index (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    scores: Optional[np.ndarray] = None,
    thickness: int = 2,
) -> np.ndarray:
    """A copy of the BGR ``image`` with ``(N, 4)`` xyxy boxes, class names and optional scores drawn."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    for i, (box, label) in enumerate(zip(boxes, labels)):
        if not np.isfinite(box).all():  # an untrained model can predict infinite sizes
            continue
        colour = class_colour(int(label))
        x1, x2 = (int(round(min(max(float(v), 0.0), w - 1))) for v in (box[0], box[2]))
        y1, y2 = (int(round(min(max(float(v), 0.0), h - 1))) for v in (box[1], box[3]))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        name = class_names[int(label)] if int(label) < len(class_names) else str(int(label))
        text = f"{name} {float(scores[i]):.2f}" if scores is not None else name
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base)
        tx = max(0, min(x1, w - tw))  # the label stays inside the picture
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty), colour, -1)
        cv2.putText(out, text, (tx, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def caption(image: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    """A copy of the BGR ``image`` with a white strip of ``height`` pixels above it holding ``text``."""
    strip = np.full((height, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, np.ascontiguousarray(image)], axis=0)


def image_grid(images: List[np.ndarray], columns: int = 4, cell: Tuple[int, int] = (320, 320)) -> np.ndarray:
    """Tile BGR images (each letterboxed into ``cell`` = (h, w)) into one grid image."""
    h, w = cell
    rows = -(-len(images) // columns)
    grid = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for k, img in enumerate(images):
        scale = min(h / img.shape[0], w / img.shape[1])
        small = cv2.resize(img, (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))))
        r, c = divmod(k, columns)
        grid[r * h:r * h + small.shape[0], c * w:c * w + small.shape[1]] = small
    return grid
