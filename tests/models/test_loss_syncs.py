"""The loss never waits for the device: no host reads and no data-dependent shapes (issue 17, section 1.2).

Counted on the CPU by :func:`~yolo_asff.utils.host_sync.count_host_syncs`, which sees every tensor →
Python conversion and every operation whose output shape depends on the values, backward included; on
a GPU each of them would stall the step until the device caught up. Where CUDA is present the same step
also runs on the GPU, where CUDA's own sync debugging must stay silent too.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.models import build_model
from yolo_asff.models.loss import assign_targets, build_loss
from yolo_asff.utils.host_sync import count_host_syncs

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]
BUILTIN = Path(__file__).resolve().parents[2] / "configs" / "builtin.yaml"
SIZE = 64
# Two images: three boxes, one of them on the edge and one degenerate, then one box with a mixup weight.
TARGETS = torch.tensor([
    [0, 1, 5.0, 5.0, 30.0, 40.0, 1.0],
    [0, 2, 40.0, 0.0, 64.0, 64.0, 1.0],
    [0, 0, 20.0, 20.0, 20.0, 21.0, 1.0],
    [1, 3, 10.0, 12.0, 60.0, 50.0, 0.4],
])


def _model_and_loss(head: str):
    cfg = load_config(BUILTIN, [f"model.head={head}", "train.anchor_thresh=0.25"])
    model = build_model(cfg).train()
    return model, build_loss(cfg, model)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", ["yolov3", "guided"])
@pytest.mark.parametrize("targets", [TARGETS, torch.zeros(0, 7)], ids=["boxes", "no boxes"])
def test_a_loss_step_makes_no_host_sync(head, targets, device):
    model, loss_fn = _model_and_loss(head)
    model.to(device)
    loss_fn.to(device)
    outputs = model(torch.randn(2, 3, SIZE, SIZE, device=device))
    max_boxes = int(torch.bincount(targets[:, 0].long(), minlength=2).max())  # what the collate counts on the host
    targets = targets.to(device)
    with count_host_syncs(cuda_debug=True) as syncs:
        total, terms = loss_fn(outputs, targets, (SIZE, SIZE), max_boxes)
        total.backward()
    assert syncs.total == 0 and not syncs.cuda_warnings, syncs.summary()
    assert torch.isfinite(total) and terms["obj"] > 0
    assert all(p.grad is not None for p in model.head.parameters())  # every head weight is in the graph


def test_without_max_boxes_the_loss_counts_the_boxes_with_one_host_read():
    model, loss_fn = _model_and_loss("yolov3")
    outputs = model(torch.randn(2, 3, SIZE, SIZE))
    with count_host_syncs() as syncs:
        counted, _ = loss_fn(outputs, TARGETS, (SIZE, SIZE))
    assert syncs.by_op() == {"aten._local_scalar_dense": 1}, syncs.summary()
    given, _ = loss_fn(outputs, TARGETS, (SIZE, SIZE), 3)
    assert given.item() == counted.item()


def test_the_counter_sees_the_index_form_assignment_sync():
    """The readable assign_targets (nonzero, unique) is what the loss no longer does: the counter catches it."""
    _, loss_fn = _model_and_loss("yolov3")
    with count_host_syncs() as syncs:
        assign_targets(TARGETS, loss_fn.anchors, loss_fn.strides, [(8, 8), (4, 4), (2, 2)])
    ops = syncs.by_op()
    assert ops.get("aten.nonzero", 0) == 3 and any("unique" in op for op in ops), syncs.summary()
