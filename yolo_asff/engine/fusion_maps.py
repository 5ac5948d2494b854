"""Pictures of the ASFF fusion weights: what each pyramid level takes from the others.

For one picture the detector's three fusion maps (``model(x, return_fusion=True)``) hold,
at each output level (stride 8, 16, 32), the weights α, β, γ given to the levels at
stride 32, 16, 8 at every position. :func:`fusion_figure` draws them as colour heat maps
over the picture, 3 rows (output level) × 3 columns (source level), like figure 3 of the
ASFF paper.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from torch import Tensor

from ..data.transforms import fit_into

__all__ = ["unletterbox_map", "fusion_overlay", "fusion_figure", "WEIGHT_NAMES", "SOURCE_STRIDES"]

WEIGHT_NAMES = ("alpha", "beta", "gamma")  # OpenCV's fonts have no Greek letters
SOURCE_STRIDES = (32, 16, 8)  # channel k of a fusion map weights the level at this stride
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def unletterbox_map(
    weight: np.ndarray, image_hw: Tuple[int, int], input_size: Tuple[int, int], keep_ratio: bool = True,
    out_hw: Optional[Tuple[int, int]] = None,
) -> np.ndarray:
    """One ``(H_l, W_l)`` weight map on the network input → ``out_hw`` (default ``image_hw``) float32.

    The map is stretched to ``input_size = (h, w)``, the letterbox padding of an ``image_hw``
    picture is cut off (the same :func:`~yolo_asff.data.transforms.fit_into` as the
    letterbox), and the rest resized to the picture, so map pixels lie over the image pixels
    they were computed from.
    """
    ih, iw = input_size
    h0, w0 = image_hw
    oh, ow = out_hw or image_hw
    up = cv2.resize(np.asarray(weight, np.float32), (iw, ih), interpolation=cv2.INTER_LINEAR)
    _, _, px, py, nw, nh = fit_into(w0, h0, (ih, iw), keep_ratio)
    return cv2.resize(up[py:py + nh, px:px + nw], (ow, oh), interpolation=cv2.INTER_LINEAR)


def fusion_overlay(image: np.ndarray, weight: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``weight (H, W)`` in [0, 1] as a JET heat map (0 blue, 1 red) blended over BGR ``image (H, W, 3)``."""
    heat = cv2.applyColorMap(np.clip(weight * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)


def _band(width: int, lines: Sequence[str], height: int = 38) -> np.ndarray:
    band = np.full((height, width, 3), 32, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (6, 15 + 17 * i), _FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def _colour_bar(width: int, height: int = 30) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    left, right = 250, max(260, width - 40)
    ramp = np.linspace(0, 255, right - left).astype(np.uint8)[None].repeat(12, 0)
    bar[9:21, left:right] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    cv2.putText(bar, "fusion weight:  0", (8, 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, "1", (right + 6, 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def fusion_figure(
    image: np.ndarray,
    maps: Sequence[Union[Tensor, np.ndarray]],
    input_size: Tuple[int, int],
    keep_ratio: bool = True,
    strides: Sequence[int] = (8, 16, 32),
    cell_width: int = 320,
    alpha: float = 0.5,
) -> np.ndarray:
    """A 3 × 3 figure of one picture's ASFF weights over the picture (BGR uint8).

    Args:
        image: the original picture ``(H, W, 3)`` BGR.
        maps: its three weight maps, stride-ascending, each ``(3, H_l, W_l)`` (one picture's
            slice of the predictor's or model's ``(B, 3, H_l, W_l)`` maps).
        input_size: the network input ``(h, w)`` the maps were computed at.
        keep_ratio: letterboxed (True) or stretched (False) input, as the predictor ran.
        strides: the output levels' strides, in the order of ``maps``.
        cell_width: width of each of the nine panels (height follows the picture's aspect).
        alpha: heat-map opacity.

    Row r is output level ``strides[r]``; column k is the weight (α, β, γ) given to the source
    level at stride 32, 16, 8. Each panel is labelled with both and the map's mean. Colours
    share one scale, 0 (blue) to 1 (red), so panels compare directly.
    """
    if len(maps) != 3 or len(strides) != 3:
        raise ValueError(f"expected the three ASFF weight maps of one picture, got {len(maps)}")
    h0, w0 = image.shape[:2]
    cell_h = max(1, round(h0 * cell_width / w0))
    small = cv2.resize(image, (cell_width, cell_h), interpolation=cv2.INTER_AREA)
    rows = []
    for stride, level in zip(strides, maps):
        level = level.detach().float().cpu().numpy() if isinstance(level, Tensor) else np.asarray(level, np.float32)
        if level.ndim != 3 or level.shape[0] != 3:
            raise ValueError(f"a fusion map of one picture must be (3, H_l, W_l), got {level.shape}")
        cells = []
        for k in range(3):
            weight = unletterbox_map(level[k], (h0, w0), input_size, keep_ratio, (cell_h, cell_width))
            label = [f"level stride {stride}: {WEIGHT_NAMES[k]}",
                     f"from stride {SOURCE_STRIDES[k]}, mean {float(weight.mean()):.2f}"]
            panel = np.vstack([_band(cell_width, label), fusion_overlay(small, weight, alpha)])
            cells.append(cv2.copyMakeBorder(panel, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
        rows.append(np.hstack(cells))
    figure = np.vstack(rows)
    return np.vstack([figure, _colour_bar(figure.shape[1])])
