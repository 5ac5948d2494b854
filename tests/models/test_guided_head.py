"""The official ASFF guided-anchor head (ASFF paper, section 3.1): its models, outputs and loss."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.models import build_model
from yolo_asff.models.guided_head import GuidedAnchorHead, guided_output, slot_anchor_table
from yolo_asff.models.loss import GuidedYoloLoss, YoloLoss, build_loss

from ..conftest import make_model

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO / "configs" / "official"


@pytest.mark.parametrize("name, expected", [
    ("yolov3_baseline_coco.yaml", 75_554_428),
    ("yolov3_asff_coco.yaml", 79_409_493),
    ("yolov3_asff_star_coco.yaml", 86_011_821),
])
def test_official_configs_have_the_official_parameter_counts(name, expected):
    model = build_model(load_config(OFFICIAL / name))
    assert isinstance(model.head, GuidedAnchorHead)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("name", ["yolov3_baseline_coco.yaml", "yolov3_asff_coco.yaml", "yolov3_asff_star_coco.yaml"])
def test_official_configs_use_the_official_test_pipeline_and_anchors(name):
    cfg = load_config(OFFICIAL / name)
    assert cfg.data.letterbox is False  # stretch resize
    assert (cfg.test.conf_thresh, cfg.test.nms_thresh, cfg.test.max_det) == (0.001, 0.65, 10000)
    assert cfg.model.norm == "syncbn" and cfg.train.epochs == 300 and cfg.train.mixup  # the official training recipe
    assert cfg.data.mean == [0.485, 0.456, 0.406] and cfg.data.std == [0.229, 0.224, 0.225]
    model = build_model(cfg)
    # The ninth anchor is the official (121, 240), not YOLOv3's (373, 326); the free slot is 4 strides.
    assert model.head.anchors[2].tolist() == [[116, 90], [156, 198], [121, 240]]
    assert model.head.slot_anchors[:, 3].tolist() == [[32, 32], [64, 64], [128, 128]]


def _guided(**overrides):
    return make_model("yolov3_asff", head="guided", width=0.125, num_classes=3, **overrides)


def test_outputs_have_four_slots_and_decode_with_the_predicted_anchors():
    model = _guided().eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outputs = model.head(model.fusion(model.pyramid(model.backbone(images))))
        decoded = model(images)
    assert [tuple(o.raw.shape) for o in outputs] == [(2, 4, 8, 12, 8), (2, 4, 4, 6, 8), (2, 4, 2, 3, 8)]
    assert [tuple(o.guide.shape) for o in outputs] == [(2, 4, 8, 12, 2), (2, 4, 4, 6, 2), (2, 4, 2, 3, 2)]
    assert decoded.shape == (2, 4 * (96 + 24 + 6), 8)
    # A box's size is exp(tw) x the slot's predicted anchor: check one prediction by hand.
    raw, guide = outputs[1].raw[1, 3, 2, 5], outputs[1].guide[1, 3, 2, 5]
    anchor = guide.exp() * 64.0  # the anchor-free slot at stride 16
    cx = (raw[0].sigmoid() + 5) * 16
    w = raw[2].exp() * anchor[0]
    row = decoded[1, 4 * 96 + (3 * 4 + 2) * 6 + 5]
    torch.testing.assert_close(row[0], cx - w / 2)
    torch.testing.assert_close(row[2], cx + w / 2)
    torch.testing.assert_close(row[4:], raw[4:].sigmoid())


def test_training_outputs_carry_the_predicted_anchors_detached_and_the_guide():
    model = _guided().train()
    outputs = model(torch.randn(1, 3, 64, 64))
    for out, base in zip(outputs, model.head.slot_anchors):
        assert out.guide.requires_grad and not out.anchors.requires_grad  # the box terms cannot train the guide
        torch.testing.assert_close(out.anchors, out.guide.detach().exp() * base.view(1, -1, 1, 1, 2))


def test_the_deformable_offsets_do_not_train_the_guide():
    model = _guided().train()
    outputs = model(torch.randn(1, 3, 64, 64))
    sum(o.raw.sum() for o in outputs).backward()
    for level in model.head.levels:
        assert level.guide_wh.weight.grad is None or not level.guide_wh.weight.grad.any()
        assert level.adaption.conv_offset.bias.grad.abs().sum() > 0  # the offsets do learn from the box terms


# ----------------------------------------------------------------------------------------------- loss

ANCHORS = torch.tensor([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [42, 119], [116, 90], [156, 198],
                        [121, 240]], dtype=torch.float32).view(3, 3, 2)
STRIDES = (8, 16, 32)
SIZE = 256
# One box of 30 x 60 centred at (100, 100): its best base anchor is (30, 61), level 1 (stride 16), anchor 0,
# in cell (6, 6), offset (0.25, 0.25) inside it.
BOX = torch.tensor([[0, 1, 85, 70, 115, 130, 1.0]])


class Level(NamedTuple):
    """One level's leaf tensors, as the guided head's convs would give them: logits and guide."""

    raw: torch.Tensor
    guide: torch.Tensor


def _outputs(batch: int = 1, classes: int = 3, fill: float = -6.0):
    outs = []
    for s in STRIDES:
        n = SIZE // s
        raw = torch.zeros(batch, 4, n, n, 5 + classes)
        raw[..., 4:] = fill  # confident background everywhere
        outs.append(Level(raw.requires_grad_(), torch.zeros(batch, 4, n, n, 2, requires_grad=True)))
    return outs


def _head(outputs):
    """The head's outputs for the levels' current logits and guides (the anchors follow the guides)."""
    slot_base = slot_anchor_table(ANCHORS, STRIDES)
    return [guided_output(o.raw, o.guide, slot_base[level].view(1, -1, 1, 1, 2)) for level, o in enumerate(outputs)]


def _loss(**kwargs):
    kwargs.setdefault("label_smooth", False)
    return GuidedYoloLoss(ANCHORS, STRIDES, 3, **kwargs)


def _assign(loss, outputs, targets=BOX):
    """The loss's positives and guide slots per level, in index form."""
    matches = loss.match(_head(outputs), targets)
    return [p.positives() for p, _ in matches], [g.positives() for _, g in matches]


def _set_guide(outputs, level, slot, gy, gx, size_wh, base):
    with torch.no_grad():
        outputs[level].guide[0, slot, gy, gx] = torch.log(torch.tensor(size_wh) / torch.tensor(base))


def test_a_box_takes_its_best_anchor_slot_and_trains_the_guide_there_and_at_the_free_slot():
    positives, guide_slots = _assign(_loss(), _outputs())
    assert [len(p.batch) for p in positives] == [0, 1, 0]
    pos = positives[1]
    assert (pos.anchor.item(), pos.gy.item(), pos.gx.item()) == (0, 6, 6)
    assert sorted(guide_slots[1].anchor.tolist()) == [0, 3]
    assert guide_slots[1].gy.tolist() == [6, 6] and guide_slots[1].gx.tolist() == [6, 6]


def test_the_box_moves_to_the_free_slot_when_its_predicted_size_fits_better():
    outputs = _outputs()
    _set_guide(outputs, 1, 3, 6, 6, [30.0, 60.0], [64.0, 64.0])  # the free slot now predicts the box's size
    positives, _ = _assign(_loss(), outputs)
    assert positives[1].anchor.tolist() == [3]


def test_a_perfect_prediction_at_the_chosen_slot_has_no_box_loss():
    outputs = _outputs()
    _set_guide(outputs, 1, 3, 6, 6, [30.0, 60.0], [64.0, 64.0])
    _set_guide(outputs, 1, 0, 6, 6, [30.0, 60.0], [30.0, 61.0])
    with torch.no_grad():
        raw = outputs[1].raw
        raw[0, 3, 6, 6, :2] = math.log(0.25 / 0.75)  # sigmoid = 0.25: the centre's offset in the cell
        raw[0, 3, 6, 6, 2:4] = 0.0  # exp(0) x predicted anchor = the box size
        raw[0, 3, 6, 6, 4] = 8.0
        raw[0, 3, 6, 6, 5:] = torch.tensor([-8.0, 8.0, -8.0])
    _, terms = _loss()(_head(outputs), BOX, (SIZE, SIZE))
    assert terms["wh"] < 1e-5 and terms["iou"] < 1e-5 and terms["guide"] < 1e-5
    assert terms["cls"] < 0.01


def test_the_wh_target_is_relative_to_the_predicted_anchor():
    outputs = _outputs()
    _, before = _loss()(_head(outputs), BOX, (SIZE, SIZE))
    _set_guide(outputs, 1, 0, 6, 6, [30.0, 60.0], [30.0, 61.0])  # slot 0's anchor becomes exactly the box
    _, after = _loss()(_head(outputs), BOX, (SIZE, SIZE))
    # tw = th = 0: the L1 term is |log(30 / 30)| + |log(60 / 61)| before the guide moved, 0 after.
    scale = 2 - 30 * 60 / SIZE**2
    assert before["wh"].item() == pytest.approx(scale * abs(math.log(60 / 61)), rel=1e-4)
    assert after["wh"].item() < 1e-6


def test_only_the_guide_term_trains_the_guide():
    outputs = _outputs()
    loss = _loss(weights={"xy": 1, "wh": 1, "iou": 1, "obj": 1, "cls": 1, "guide": 0})
    total, _ = loss(_head(outputs), BOX, (SIZE, SIZE))
    total.backward()
    assert all(not o.guide.grad.any() for o in outputs if o.guide.grad is not None)

    outputs = _outputs()
    loss = _loss(weights={"xy": 0, "wh": 0, "iou": 0, "obj": 0, "cls": 0, "guide": 1})
    total, terms = loss(_head(outputs), BOX, (SIZE, SIZE))
    total.backward()
    grad = outputs[1].guide.grad
    assert set(map(tuple, grad.abs().sum(-1).nonzero().tolist())) == {(0, 0, 6, 6), (0, 3, 6, 6)}
    # 1 - IoU^2 of (30, 60) with (30, 61) and with (64, 64), both centred.
    expected = (1 - (1800 / 1830) ** 2) + (1 - (1800 / 4096) ** 2)
    assert terms["guide"].item() == pytest.approx(expected, rel=1e-4)
    assert all(o.raw.grad is None or not o.raw.grad.any() for o in outputs)


def test_the_ignore_rule_decodes_with_the_predicted_anchors():
    def obj_loss(logit: float, fit: bool) -> float:
        outputs = _outputs()
        with torch.no_grad():
            raw = outputs[1].raw
            raw[0, 1, 6, 6, :2] = math.log(0.25 / 0.75)  # slot 1 (anchor 62 x 45) centred on the box
            raw[0, 1, 6, 6, 4] = logit
        if fit:
            _set_guide(outputs, 1, 1, 6, 6, [30.0, 60.0], [62.0, 45.0])  # its predicted size = the box
        return _loss()(_head(outputs), BOX, (SIZE, SIZE))[1]["obj"].item()

    # With the base anchor the prediction overlaps the box too little: a confident slot is penalised ...
    assert obj_loss(5.0, fit=False) > obj_loss(-5.0, fit=False) + 4
    # ... with the predicted anchor it matches the box (IoU > 0.7): no objectness loss either way.
    assert obj_loss(5.0, fit=True) == pytest.approx(obj_loss(-5.0, fit=True), abs=1e-6)


def test_two_boxes_on_one_slot_keep_the_last_and_empty_targets_work():
    targets = torch.cat((BOX, BOX + torch.tensor([[0, 1, 1, 1, 1, 1, 0.0]])))
    positives, guide_slots = _assign(_loss(), _outputs(), targets)
    assert positives[1].target.tolist() == [1]
    assert len(guide_slots[1].target) == 2 and set(guide_slots[1].target.tolist()) == {1}
    outputs = _outputs()
    total, terms = _loss()(_head(outputs), torch.zeros(0, 7), (SIZE, SIZE))
    assert torch.isfinite(total) and terms["guide"] == 0 and terms["obj"] > 0
    # Without boxes the guide still gets a (zero) gradient: DDP needs one for every parameter in every step.
    total.backward()
    assert all(o.guide.grad is not None and not o.guide.grad.any() for o in outputs)


def test_build_loss_picks_the_guided_loss_for_the_guided_head():
    cfg = load_config(REPO / "configs" / "builtin.yaml", ["model.head=guided"])
    model = build_model(cfg)
    loss = build_loss(cfg, model)
    assert isinstance(loss, GuidedYoloLoss) and "guide" in loss.terms
    assert torch.equal(loss.anchors, model.head.anchors)


def test_the_plain_loss_refuses_outputs_with_a_guide():
    with pytest.raises(ValueError, match="GuidedYoloLoss"):
        YoloLoss(ANCHORS, STRIDES, 3)(_head(_outputs()), BOX, (SIZE, SIZE))
