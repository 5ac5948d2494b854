"""The model and the loss trace as one graph each for ``torch.compile`` (issue 17, section 1.1).

``torch._dynamo.explain`` traces without compiling; a graph break (a Python-side read of a tensor, an
unsupported call) would split the compiled step and stall it on the host.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.models import build_model
from yolo_asff.models.loss import build_loss

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTIN = Path(__file__).resolve().parents[2] / "configs" / "builtin.yaml"
TARGETS = torch.tensor([[0, 1, 5.0, 5.0, 30.0, 40.0, 1.0], [1, 2, 10.0, 12.0, 60.0, 50.0, 0.5],
                        [1, 0, 0.0, 0.0, 64.0, 64.0, 1.0]])


def _explain(fn, *args):
    torch._dynamo.reset()
    try:
        return torch._dynamo.explain(fn)(*args)
    finally:
        torch._dynamo.reset()


def _breaks(explanation) -> list:
    return [reason.reason for reason in explanation.break_reasons]


@pytest.fixture(scope="module", params=["yolov3", "guided"])
def tiny(request):
    """The built-in main job's model (ASFF, width 0.125) with the plain or the guided head, and its loss."""
    cfg = load_config(BUILTIN, [f"model.head={request.param}"])
    model = build_model(cfg)
    return model, build_loss(cfg, model)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_model_forward_has_no_graph_break(tiny, mode):
    model, _ = tiny
    getattr(model, mode)()
    explanation = _explain(model, torch.randn(2, 3, 64, 64))
    assert _breaks(explanation) == [] and explanation.graph_count == 1


def test_the_loss_has_no_graph_break(tiny):
    model, loss_fn = tiny
    outputs = model.train()(torch.randn(2, 3, 64, 64))
    explanation = _explain(loss_fn, outputs, TARGETS, (64, 64), 2)
    assert _breaks(explanation) == [] and explanation.graph_count == 1
