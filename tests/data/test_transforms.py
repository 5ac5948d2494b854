"""Augmentation keeps every box on its object; letterbox maps back exactly."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from yolo_asff.config import AugConfig
from yolo_asff.data.transforms import EvalTransform, TrainTransform, letterbox, unletterbox_boxes

OFF = AugConfig(photometric_prob=0, expand_prob=0, crop_prob=0, flip_prob=0, affine_prob=0)


def scene():
    """Grey picture with a red and a blue rectangle at known places."""
    img = np.full((240, 320, 3), 128, np.uint8)
    img[40:120, 30:110] = (0, 0, 255)      # red: x 30..110, y 40..120
    img[150:220, 200:300] = (255, 0, 0)    # blue: x 200..300, y 150..220
    boxes = np.array([[30, 40, 110, 120], [200, 150, 300, 220]], np.float32)
    return img, boxes


def colour_box(img, bgr):
    mask = (np.abs(img.astype(int) - np.array(bgr)).sum(-1) < 60)
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def iou(a, b):
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.mark.parametrize(
    "params",
    [
        replace(OFF, expand_prob=1),
        replace(OFF, crop_prob=1),
        replace(OFF, flip_prob=1),
        replace(OFF, affine_prob=1, affine_degrees=10),
        AugConfig(photometric_prob=0, min_box_size=2),  # everything geometric at once
    ],
    ids=["expand", "crop", "flip", "affine", "all"],
)
@pytest.mark.parametrize("keep_ratio", [True, False], ids=["letterbox", "stretch"])
def test_boxes_stay_on_their_objects(params, keep_ratio):
    transform = TrainTransform(params, keep_ratio, seed=0)
    for seed in range(25):
        img, boxes = scene()
        out, new_boxes, keep = transform(img, boxes, (256, 320), np.random.default_rng(seed))
        assert out.shape == (256, 320, 3) and out.dtype == np.uint8
        assert len(new_boxes) == keep.sum()
        for box, colour in zip(new_boxes, [c for c, k in zip([(0, 0, 255), (255, 0, 0)], keep) if k]):
            visible = colour_box(out, colour)
            # Rotation makes the box the hull of the rotated rectangle, which is the visible extent too.
            assert iou(box, visible) > 0.85, (seed, box, visible)


def test_flip_moves_boxes_to_the_mirror_position():
    img, boxes = scene()
    out, new, keep = TrainTransform(replace(OFF, flip_prob=1), keep_ratio=False)(img, boxes, (240, 320), np.random.default_rng(0))
    np.testing.assert_allclose(new[0], [320 - 110, 40, 320 - 30, 120])


def test_tiny_boxes_are_dropped_with_their_labels():
    img, boxes = scene()
    boxes = np.vstack([boxes, [[5, 5, 9, 30]]]).astype(np.float32)  # 4 px wide
    _, new, keep = TrainTransform(replace(OFF, min_box_size=6), keep_ratio=False)(img, boxes, (240, 320), np.random.default_rng(0))
    assert keep.tolist() == [True, True, False] and len(new) == 2


def test_photometric_changes_colours_not_geometry():
    img, boxes = scene()
    params = replace(OFF, photometric_prob=1.0)
    out, new, _ = TrainTransform(params, seed=1)(img, boxes, (240, 320), np.random.default_rng(0))
    np.testing.assert_allclose(new, boxes)
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("keep_ratio", [True, False])
def test_letterbox_round_trip(keep_ratio):
    img = np.zeros((300, 500, 3), np.uint8)
    boxes = np.array([[10, 20, 110, 220], [400, 0, 500, 300]], np.float32)
    out, mapped, info = letterbox(img, (320, 416), keep_ratio, boxes)
    assert out.shape == (320, 416, 3)
    np.testing.assert_allclose(unletterbox_boxes(mapped, info), boxes, atol=1e-3)
    if keep_ratio:
        assert info.scale_x == info.scale_y and info.pad_y > 0
    out2, info2 = EvalTransform((320, 416), keep_ratio)(img)
    assert out2.shape == out.shape and info2 == info
