"""GraphedDetector: one graph with no breaks, and a one-line fallback to the same function run eagerly."""
from __future__ import annotations

import warnings

import pytest
import torch

from tests.conftest import make_model
from yolo_asff.engine.graphed import GraphedDetector, graphed_unsupported_reason
from yolo_asff.engine.postprocess import postprocess

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("head", ["yolov3", "guided"])
def test_the_captured_function_has_no_graph_break(head):
    model = make_model("yolov3_asff", head=head, num_classes=3, width=0.125).eval()
    graphed = GraphedDetector(model, conf_thresh=0.001, nms_thresh=0.65, max_det=50, compile=False)
    with torch.inference_mode():
        explanation = torch._dynamo.explain(graphed.detect_padded)(torch.randn(1, 3, 64, 64))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons


def test_where_unsupported_it_says_so_in_one_line_and_runs_eagerly(monkeypatch):
    assert graphed_unsupported_reason(torch.device("cpu")) is None
    assert "not meta" in graphed_unsupported_reason(torch.device("meta"))
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    model = make_model("yolov3_asff", num_classes=3, width=0.125).eval()
    unsupported = r"^graphed inference unavailable \(torch.compile is not supported"
    with pytest.warns(RuntimeWarning, match=unsupported) as caught:
        graphed = GraphedDetector(model, conf_thresh=0.0, nms_thresh=0.65, max_det=20)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert not graphed.compiled and graphed.fallback_reason
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        want = postprocess(model(x), 0.0, 0.65, 20)
    for got, ref in zip(graphed(x), want):  # the fixed-shape function, eagerly: the eager detections exactly
        assert torch.equal(got.boxes, ref.boxes) and torch.equal(got.scores, ref.scores)
        assert torch.equal(got.labels, ref.labels)


def test_a_compiler_failure_falls_back_on_the_first_call():
    model = make_model("yolov3_tiny", num_classes=3, width=0.125).eval()
    graphed = GraphedDetector(model, conf_thresh=0.0, nms_thresh=0.65, max_det=10)

    def failing(images):
        raise torch._dynamo.exc.BackendCompilerFailed(failing, RuntimeError("no C++ compiler\nmore detail"), None)

    graphed._compiled = failing  # what torch.compile raises when Inductor cannot build its kernels
    with pytest.warns(RuntimeWarning, match="graphed inference unavailable .*compiler failed") as caught:
        dets = graphed(torch.randn(1, 3, 64, 64))
    assert "\n" not in str(caught[0].message) and not graphed.compiled and len(dets[0].scores) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphed(torch.randn(1, 3, 64, 64))  # warned once, not at every call
