"""Loading checkpoint weights into a model: round trip, other class counts, bare and DDP state_dicts."""
from __future__ import annotations

import torch

from tests.conftest import make_model
from yolo_asff.engine.checkpoint import load_model_weights
from yolo_asff.io.checkpoint import load_checkpoint, save_checkpoint


def test_save_and_load_restores_model_and_optimizer(tmp_path):
    model = make_model("yolov3_tiny", width=0.25)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 64, 64))[0].raw.sum().backward()
    opt.step()
    path = tmp_path / "last.pth"
    save_checkpoint(path, model, optimizer=opt, epoch=3, iteration=120, config={"model": {"arch": "yolov3_tiny"}})
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["iteration"] == 120 and ckpt["config"]["model"]["arch"] == "yolov3_tiny"

    fresh = make_model("yolov3_tiny", width=0.25)
    report = load_model_weights(fresh, path)
    assert not report.shape_mismatch and not report.missing and not report.unexpected
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_other_class_count_keeps_every_matching_tensor(tmp_path):
    coco = make_model("yolov3_asff", width=0.25, num_classes=80)
    path = tmp_path / "coco.pth"
    save_checkpoint(path, coco)
    voc = make_model("yolov3_asff", width=0.25, num_classes=20)
    report = load_model_weights(voc, path)
    assert sorted(report.shape_mismatch) == sorted(
        f"head.convs.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    )
    assert torch.equal(voc.backbone.stem.conv.weight, coco.backbone.stem.conv.weight)
    assert "skipped 6 of another shape" in report.summary()


def test_bare_and_ddp_prefixed_state_dicts_load(tmp_path):
    model = make_model("yolov3_tiny", width=0.25)
    path = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    fresh = make_model("yolov3_tiny", width=0.25)
    report = load_model_weights(fresh, path)
    assert not report.missing and not report.unexpected
    assert torch.equal(fresh.head.convs[0].weight, model.head.convs[0].weight)
