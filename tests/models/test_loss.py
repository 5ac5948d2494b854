"""The YOLOv3 loss: assignment by hand, every term's behaviour, and agreement with a plain loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from yolo_asff.data.dataset import collate
from yolo_asff.models.build import YOLOV3_ANCHORS
from yolo_asff.models.head import HeadOutput, make_grid
from yolo_asff.models.loss import YoloLoss, _decode, assign_targets, padded_boxes

from .loss_reference import reference_assign, reference_loss

ANCHORS = torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32).view(3, 3, 2)
STRIDES = (8, 16, 32)


def grids(size: int):
    return [(size // s, size // s) for s in STRIDES]


def yolo_outputs(outs):
    """Raw logits per level as the plain YOLOv3 head's outputs (each level's row of ANCHORS)."""
    return [HeadOutput(o, ANCHORS[level].view(1, -1, 1, 1, 2)) for level, o in enumerate(outs)]


def zero_outputs(batch: int, size: int, classes: int, obj_logit: float = -20.0):
    """Raw outputs whose objectness is ~0 everywhere and whose boxes are the anchors at cell centres."""
    outs = []
    for s in STRIDES:
        o = torch.zeros(batch, 3, size // s, size // s, 5 + classes)
        o[..., 4] = obj_logit
        o[..., 5:] = -20.0
        outs.append(o)
    return outs


def target(b, cls, cx, cy, w, h, weight=1.0):
    return [b, cls, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, weight]


def test_assignment_picks_anchor_level_and_cell_by_hand():
    # 20x26 box: shape IoUs with the stride-8 anchors (10,13) 0.25, (16,30) 0.712, (33,23) 0.56; best overall.
    # 300x300 box: best is (373,326) at stride 32 (0.74 vs 0.34 for (156,198)).
    t = torch.tensor([target(0, 1, 50, 70, 20, 26), target(1, 2, 208, 208, 300, 300)])
    levels = assign_targets(t, ANCHORS, STRIDES, grids(416))
    small, mid, large = levels
    assert (small.batch.tolist(), small.anchor.tolist(), small.gy.tolist(), small.gx.tolist()) == ([0], [1], [8], [6])
    assert small.target.tolist() == [0]
    assert len(mid.target) == 0
    assert (large.batch.tolist(), large.anchor.tolist(), large.gy.tolist(), large.gx.tolist()) == ([1], [2], [6], [6])


def test_assignment_last_box_wins_a_shared_slot_and_extra_anchors_by_threshold():
    t = torch.tensor([target(0, 0, 50, 70, 20, 26), target(0, 3, 51, 69, 19, 27)])
    small = assign_targets(t, ANCHORS, STRIDES, grids(416))[0]
    assert small.target.tolist() == [1]  # same anchor, same cell: the later box keeps it
    # With a 0.5 threshold the first box also takes (33,23) (IoU 0.56) in the same cell.
    small = assign_targets(t[:1], ANCHORS, STRIDES, grids(416), anchor_thresh=0.5)[0]
    assert sorted(small.anchor.tolist()) == [1, 2]


def test_centre_on_the_far_edge_stays_in_the_grid():
    t = torch.tensor([[0, 0, 400.0, 400.0, 416.0, 416.0, 1.0]])
    small = assign_targets(t, ANCHORS, STRIDES, grids(416))[0]
    assert small.gx.tolist() == [51] and small.gy.tolist() == [51]


def perfect_outputs(size=416, classes=4):
    """Outputs predicting the 20x26 box at (50, 70) exactly at its assigned slot."""
    outs = zero_outputs(1, size, classes)
    fx, fy = 50 / 8 - 6, 70 / 8 - 8
    slot = outs[0][0, 1, 8, 6]
    slot[0], slot[1] = math.log(fx / (1 - fx)), math.log(fy / (1 - fy))
    slot[2], slot[3] = math.log(20 / 16), math.log(26 / 30)
    slot[4] = 20.0
    slot[5 + 1] = 20.0
    return outs, torch.tensor([target(0, 1, 50, 70, 20, 26)])


def test_a_prediction_equal_to_its_target_has_near_zero_box_loss():
    outs, t = perfect_outputs()
    loss = YoloLoss(ANCHORS, STRIDES, 4, label_smooth=False)
    for o in outs:
        o.requires_grad_(True)
    total, terms = loss(yolo_outputs(outs), t, (416, 416))
    assert terms["wh"] < 1e-5 and terms["iou"] < 1e-5
    assert terms["obj"] < 1e-6 and terms["cls"] < 1e-6
    # xy is a BCE against a fractional target: its minimum is the target's entropy, and it is at it.
    fx, fy = 50 / 8 - 6, 70 / 8 - 8
    entropy = sum(-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in (fx, fy))
    weight = 2 - 20 * 26 / 416**2
    assert terms["xy"].item() == pytest.approx(weight * entropy, rel=1e-4)
    total.backward()
    assert outs[0].grad[0, 1, 8, 6, :2].abs().max() < 1e-4  # the xy BCE is at its minimum
    # (wh is an L1 term: at its minimum it has a subgradient, not a zero gradient.)


def test_box_losses_grow_with_the_error():
    loss = YoloLoss(ANCHORS, STRIDES, 4)
    outs, t = perfect_outputs()
    _, base = loss(yolo_outputs(outs), t, (416, 416))
    outs[0][0, 1, 8, 6, 2] += 0.5  # 65% too wide
    _, wider = loss(yolo_outputs(outs), t, (416, 416))
    assert wider["wh"].item() == pytest.approx(base["wh"].item() + 0.5 * (2 - 20 * 26 / 416**2), rel=1e-4)
    assert wider["iou"] > base["iou"] + 0.1
    assert wider["xy"].item() == pytest.approx(base["xy"].item(), rel=1e-6)


def test_ignore_rule_removes_objectness_loss_of_a_good_unassigned_prediction():
    loss = YoloLoss(ANCHORS, STRIDES, 4)
    outs, t = perfect_outputs()
    # Anchor 0 of the same cell is not assigned. Make it predict the same box (IoU ~1 > 0.7).
    slot = outs[0][0, 0, 8, 6]
    slot[:2] = outs[0][0, 1, 8, 6, :2]
    slot[2], slot[3] = math.log(20 / 10), math.log(26 / 13)
    slot[4] = -20.0
    _, low = loss(yolo_outputs(outs), t, (416, 416))
    slot[4] = 5.0  # confident: would cost ~5 as a negative
    _, high = loss(yolo_outputs(outs), t, (416, 416))
    assert high["obj"].item() == pytest.approx(low["obj"].item(), abs=1e-5)
    # The same confident prediction with a poor box (IoU < 0.7) is a negative and pays.
    slot[2] = math.log(60 / 10)
    _, poor = loss(yolo_outputs(outs), t, (416, 416))
    assert poor["obj"] - low["obj"] > 4.0
    # No ignoring at all with a threshold of 1.
    _, strict = YoloLoss(ANCHORS, STRIDES, 4, ignore_thresh=1.0)(yolo_outputs(outs), t, (416, 416))
    assert strict["obj"] >= poor["obj"]


def test_mixup_weight_is_the_objectness_target():
    loss = YoloLoss(ANCHORS, STRIDES, 4)
    outs, t = perfect_outputs()
    outs[0][0, 1, 8, 6, 4] = 0.0
    t[0, 6] = 0.3
    _, terms = loss(yolo_outputs(outs), t, (416, 416))
    expected = F.binary_cross_entropy_with_logits(torch.tensor(0.0), torch.tensor(0.3))  # negatives cost ~0
    assert terms["obj"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_smoothing_targets():
    loss = YoloLoss(ANCHORS, STRIDES, 4, label_smooth=True)
    assert loss._class_targets(torch.tensor([2])).tolist() == [[0.25, 0.25, 0.75, 0.25]]
    assert YoloLoss(ANCHORS, STRIDES, 4, label_smooth=False)._class_targets(torch.tensor([0])).tolist() == [[1, 0, 0, 0]]


def test_empty_targets_give_only_objectness_and_divide_by_batch():
    loss = YoloLoss(ANCHORS, STRIDES, 3)
    one = loss(yolo_outputs(zero_outputs(1, 128, 3, obj_logit=-2.0)), torch.zeros(0, 7), (128, 128))
    two = loss(yolo_outputs(zero_outputs(2, 128, 3, obj_logit=-2.0)), torch.zeros(0, 7), (128, 128))
    assert one[1]["xy"] == 0 and one[1]["cls"] == 0 and one[1]["obj"] > 0
    assert two[0].item() == pytest.approx(one[0].item(), rel=1e-6)  # a per-image mean


def test_term_weights_scale_terms():
    outs, t = perfect_outputs()
    outs[0][0, 1, 8, 6, 2] += 1.0
    _, plain = YoloLoss(ANCHORS, STRIDES, 4)(yolo_outputs(outs), t, (416, 416))
    _, weighted = YoloLoss(ANCHORS, STRIDES, 4, weights={"wh": 3.0, "obj": 0.0})(yolo_outputs(outs), t, (416, 416))
    assert weighted["wh"].item() == pytest.approx(3 * plain["wh"].item(), rel=1e-6)
    assert weighted["obj"] == 0 and weighted["xy"] == plain["xy"]


def random_case(batch=3, size=160, classes=5, boxes=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(batch, 3, size // s, size // s, 5 + classes, generator=g) for s in STRIDES]
    xy = torch.rand(boxes, 2, generator=g) * size * 0.8
    wh = torch.rand(boxes, 2, generator=g) * size * 0.5 + 3
    t = torch.cat([torch.randint(0, batch, (boxes, 1), generator=g).float(),
                   torch.randint(0, classes, (boxes, 1), generator=g).float(),
                   xy, (xy + wh).clamp(max=size), torch.rand(boxes, 1, generator=g)], dim=1)
    return outs, t


@pytest.mark.parametrize("options", [{}, {"iou_type": "giou"}, {"anchor_thresh": 0.3}, {"label_smooth": False},
                                     {"ignore_thresh": 0.4}, {"ignore_thresh": 0.5}])
def test_batched_loss_equals_the_plain_loop(options):
    outs, t = random_case()
    loss = YoloLoss(ANCHORS, STRIDES, 5, **options)
    total, terms = loss(yolo_outputs(outs), t, (160, 160))
    ref_total, ref_terms = reference_loss(loss, outs, t, (160, 160))
    assert torch.isfinite(total)
    for name in terms:
        assert terms[name].item() == pytest.approx(ref_terms[name].item(), rel=1e-5, abs=1e-5), name
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)


def test_gradients_are_finite_for_extreme_outputs():
    outs, t = random_case()
    outs = [(o * 50).requires_grad_(True) for o in outs]  # exp(tw) would overflow without the clamp
    total, _ = YoloLoss(ANCHORS, STRIDES, 5)(yolo_outputs(outs), t, (160, 160))
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(o.grad).all() for o in outs)


@pytest.mark.parametrize("anchor_thresh", [None, 0.25])
def test_batched_assignment_equals_the_box_by_box_loop(anchor_thresh):
    _, t = random_case(batch=4, size=320, boxes=60, seed=3)
    t = torch.cat([t, t[:5]])  # duplicates: later rows must win their slots
    batched = assign_targets(t, ANCHORS, STRIDES, grids(320), anchor_thresh)
    looped = reference_assign(t, ANCHORS, STRIDES, grids(320), anchor_thresh)
    for level, owners in zip(batched, looped):
        got = {(b, a, y, x): i for b, a, y, x, i in zip(*(v.tolist() for v in level))}
        assert got == owners


@pytest.mark.parametrize("seed", [0, 1])
def test_ignore_search_over_boxes_padded_per_image_finds_what_the_per_image_loop_finds(seed):
    """Each prediction against its own image's boxes padded to G (a fixed shape): the same ignored predictions as
    box_iou over each image's boxes, with G exact or larger, in any target order."""
    outs, t = random_case(batch=2, size=160, boxes=30, seed=seed)
    outs = [o * 0.3 for o in outs]  # boxes near their anchors: many overlap the targets well
    loss = YoloLoss(ANCHORS, STRIDES, 5, ignore_thresh=0.5)
    most = int(torch.bincount(t[:, 0].long()).max())
    shuffled = t[torch.randperm(len(t))]

    ignored = 0
    for level, raw in enumerate(outs):
        b, a, h, w, _ = raw.shape
        anchors = ANCHORS[level].view(1, a, 1, 1, 2)
        boxes = _decode(raw[..., :4], make_grid(h, w, raw.device, raw.dtype), STRIDES[level], anchors)
        looped = torch.stack([
            box_iou(boxes[i].reshape(-1, 4), t[t[:, 0] == i, 2:6]).amax(1).view(a, h, w) <= 0.5 for i in range(b)
        ])
        for targets, g in ((t, most), (shuffled, most), (t, most + 7)):
            dense = loss._not_ignored(raw, anchors, STRIDES[level], padded_boxes(targets, b, g))
            assert torch.equal(dense, looped)
        ignored += int((~looped).sum())
    assert ignored > 10  # the case really exercises the rule


@pytest.mark.parametrize("anchor_thresh", [None, 0.25])
def test_the_loss_fixed_shape_assignment_picks_the_positives_of_assign_targets(anchor_thresh):
    outs, t = random_case(batch=4, size=320, boxes=60, seed=3)
    t = torch.cat([t, t[:5], t[10:12]])  # duplicates: later rows must win their slots
    loss = YoloLoss(ANCHORS, STRIDES, 5, anchor_thresh=anchor_thresh)
    reference = assign_targets(t, ANCHORS, STRIDES, grids(320), anchor_thresh)
    for (positives, guide_slots), expected in zip(loss.match(yolo_outputs(outs), t), reference):
        got = {(b, a, y, x): i for b, a, y, x, i in zip(*(v.tolist() for v in positives.positives()))}
        assert got == {(b, a, y, x): i for b, a, y, x, i in zip(*(v.tolist() for v in expected))}
        assert guide_slots is None
        # The winner map marks exactly the won slots.
        assert int((positives.winner >= 0).sum()) == len(got)


def test_max_boxes_from_the_collate_gives_the_loss_the_loss_counts_itself():
    outs, t = random_case(batch=3, boxes=25)
    samples = [dict(image=np.zeros((160, 160, 3), np.uint8), boxes=t[t[:, 0] == i, 2:6].numpy(),
                    labels=t[t[:, 0] == i, 1].numpy(), weights=t[t[:, 0] == i, 6].numpy(), image_id=i, info=None)
               for i in range(3)]
    batch = collate(samples, [0.0] * 3, [1.0] * 3)
    assert batch["max_boxes"] == int(torch.bincount(t[:, 0].long()).max())
    loss = YoloLoss(ANCHORS, STRIDES, 5)
    counted, _ = loss(yolo_outputs(outs), batch["targets"], (160, 160))
    given, _ = loss(yolo_outputs(outs), batch["targets"], (160, 160), batch["max_boxes"])
    more, _ = loss(yolo_outputs(outs), batch["targets"], (160, 160), batch["max_boxes"] + 5)
    assert given.item() == counted.item() == more.item()
