"""The detector's contract: shapes in training and eval mode, square and non-square inputs."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import VARIANTS, make_model


def _grid_sizes(variant, h, w):
    strides = (16, 32) if variant == "yolov3_tiny" else (8, 16, 32)
    return [(h // s, w // s) for s in strides]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", [(416, 416), (320, 608)])
def test_eval_output_shape_full_width(variant, size):
    model = make_model(variant).eval()
    h, w = size
    with torch.no_grad():
        out, maps = model(torch.rand(1, 3, h, w), return_fusion=True)
    n = sum(3 * gh * gw for gh, gw in _grid_sizes(variant, h, w))
    assert out.shape == (1, n, 85)
    assert torch.isfinite(out).all()
    # boxes are x1 <= x2, y1 <= y2 and probabilities in [0, 1]
    assert (out[..., 2] >= out[..., 0]).all() and (out[..., 3] >= out[..., 1]).all()
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()
    if variant in ("yolov3_asff", "asff_star"):
        assert [tuple(m.shape) for m in maps] == [(1, 3, gh, gw) for gh, gw in _grid_sizes(variant, h, w)]
    else:
        assert maps == []


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", [(416, 416), (320, 608)])
def test_train_output_shapes(variant, size):
    model = make_model(variant, width=0.25, num_classes=7).train()
    h, w = size
    outputs = model(torch.rand(2, 3, h, w))
    raw = [out.raw for out in outputs]  # one HeadOutput per level: the logits, the anchors, no guide
    assert all(out.guide is None and torch.equal(out.anchors[0, :, 0, 0], anchors)
               for out, anchors in zip(outputs, model.head.anchors))
    assert [tuple(r.shape) for r in raw] == [(2, 3, gh, gw, 12) for gh, gw in _grid_sizes(variant, h, w)]
    sum(r.sum() for r in raw).backward()  # every level is connected to the graph
    assert all(p.grad is not None for p in model.head.parameters())


def test_input_not_multiple_of_32_is_refused():
    model = make_model("yolov3_tiny", width=0.25).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 100, 128))


def test_initial_probabilities_are_small():
    model = make_model("yolov3_asff", width=0.25, prior_prob=0.01).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert 0.001 < out[..., 4].mean() < 0.05
    assert 0.001 < out[..., 5:].mean() < 0.05


def test_decoded_boxes_follow_the_yolov3_formula():
    model = make_model("yolov3_tiny", width=0.25, num_classes=2).eval()
    with torch.no_grad():
        raw = model.head(model.pyramid(model.backbone(torch.rand(1, 3, 64, 96))))
        decoded = model.head.decode(raw)
    # stride 32 level, anchor 1, cell (x=2, y=1): it comes after the whole stride-16 level
    r = raw[1].raw[0, 1, 1, 2]
    idx = 3 * 4 * 6 + 1 * (2 * 3) + 1 * 3 + 2  # (level, anchor, y, x) order
    anchor_w, anchor_h = 135.0, 169.0
    cx, cy = (torch.sigmoid(r[0]) + 2) * 32, (torch.sigmoid(r[1]) + 1) * 32
    w, h = anchor_w * torch.exp(r[2]), anchor_h * torch.exp(r[3])
    expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    torch.testing.assert_close(decoded[0, idx, :4], expected)
    torch.testing.assert_close(decoded[0, idx, 4:], torch.sigmoid(r[4:]))
