"""Mixup for detection (Zhang et al., "Bag of Freebies for Training Object Detection Networks").

Two augmented samples of the same input size are blended with a ratio λ ~ Beta(1.5, 1.5);
both box sets are kept, each box weighted by its image's share (λ or 1 − λ). The loss
uses those weights as objectness targets.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["mixup"]


def mixup(
    image_a: np.ndarray, boxes_a: np.ndarray, weights_a: np.ndarray,
    image_b: np.ndarray, boxes_b: np.ndarray, weights_b: np.ndarray,
    rng: np.random.Generator, alpha: float = 1.5,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Blend two ``(H, W, 3)`` uint8 images of one size; returns ``(image, boxes, weights, λ)``.

    ``boxes_*`` are ``(N, 4)``; ``weights_*`` ``(N,)`` per-box weights (1 for a plain sample).
    The result keeps every box of both, with weights ``λ·weights_a`` and ``(1 − λ)·weights_b``.
    """
    if image_a.shape != image_b.shape:
        raise ValueError(f"mixup needs images of one size, got {image_a.shape} and {image_b.shape}")
    lam = float(rng.beta(alpha, alpha))
    blended = image_a.astype(np.float32) * lam + image_b.astype(np.float32) * (1.0 - lam)
    boxes = np.concatenate([boxes_a.reshape(-1, 4), boxes_b.reshape(-1, 4)]).astype(np.float32)
    weights = np.concatenate([weights_a * lam, weights_b * (1.0 - lam)]).astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8), boxes, weights, lam
