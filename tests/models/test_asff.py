"""ASFF fusion behaviour: per-position softmax weights shared across channels, and DropBlock."""
from __future__ import annotations

import torch

from tests.conftest import make_model
from yolo_asff.models import AsffLevel
from yolo_asff.models.blocks import DropBlock2d, make_conv_factory


def test_fusion_weights_sum_to_one_everywhere():
    model = make_model("yolov3_asff", width=0.25).eval()
    with torch.no_grad():
        _, maps = model(torch.randn(2, 3, 160, 224) * 3, return_fusion=True)
    assert len(maps) == 3
    for m in maps:
        assert (m >= 0).all()
        torch.testing.assert_close(m.sum(dim=1), torch.ones_like(m[:, 0]), atol=1e-6, rtol=0)
        assert m.std() > 0  # the weights vary with position, they are not a constant mix


def test_fused_map_is_the_weighted_sum_of_resized_levels():
    conv = make_conv_factory()
    level = AsffLevel(1, (32, 16, 16), conv, width=1 / 16, weight_channels=4).eval()
    level.expand = torch.nn.Identity()  # look at the fused features before the expand conv
    x0, x1, x2 = torch.randn(1, 32, 4, 6), torch.randn(1, 16, 8, 12), torch.randn(1, 16, 16, 24)
    with torch.no_grad():
        fused, weights = level(x0, x1, x2)
        r0 = level.resize[0](x0, x1)
        r2 = level.resize[2](x2)
    assert fused.shape == (1, 16, 8, 12) and weights.shape == (1, 3, 8, 12)
    expected = weights[:, :1] * r0 + weights[:, 1:2] * x1 + weights[:, 2:] * r2
    torch.testing.assert_close(fused, expected)


def test_baseline_has_no_fusion_maps():
    model = make_model("baseline", width=0.25).eval()
    with torch.no_grad():
        _, maps = model(torch.rand(1, 3, 64, 64), return_fusion=True)
    assert maps == []


def test_dropblock_drops_the_asked_fraction_in_blocks_only_when_training():
    torch.manual_seed(0)
    block = DropBlock2d(block_size=5, keep_prob=0.9).train()
    x = torch.ones(8, 16, 40, 40)
    y = block(x)
    dropped = (y == 0).float().mean().item()
    assert 0.07 < dropped < 0.13
    # survivors are rescaled so the expected activation is unchanged
    torch.testing.assert_close(y.mean(), torch.tensor(1.0), atol=0.02, rtol=0)
    block.eval()
    assert torch.equal(block(x), x)


def test_set_dropblock_schedule_reaches_every_level():
    model = make_model("asff_star", width=0.25)
    model.set_dropblock([7, 5, 3], keep_prob=0.8)
    sizes = [(m.block_size, m.keep_prob) for m in model.pyramid.dropblocks]
    assert sizes == [(7, 0.8), (5, 0.8), (3, 0.8)]
    # ASFF without DropBlock configured still has identity blocks (keep 1.0) until the schedule sets them
    plain = make_model("yolov3_asff", width=0.25)
    assert all(m.keep_prob == 1.0 for m in plain.pyramid.dropblocks)
