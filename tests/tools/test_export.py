"""ONNX export: onnxruntime gives the PyTorch results, with and without NMS, at other batches and sizes."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from yolo_asff import build_model, load_config  # noqa: E402
from yolo_asff.io.checkpoint import save_checkpoint  # noqa: E402
from yolo_asff.engine.export import DetectorWithNms, check_onnx, export_onnx  # noqa: E402
from yolo_asff.engine.postprocess import postprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "builtin.yaml")
OPTS = ["model.width=0.125"]  # 6 classes, ~1 M parameters


pytestmark = pytest.mark.usefixtures("one_thread")


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spread_scores(model: torch.nn.Module) -> torch.nn.Module:
    """Make an untrained model give distinct scores and boxes of all sizes.

    At initialisation BatchNorm's running statistics shrink the features to ~1e-4, so every
    cell gets the head's bias and the scores tie: which of them NMS and the per-image cap
    keep is then decided by float noise. One pass in training mode sets the statistics from
    the data (as training would) and a random head spreads the scores."""
    g = torch.Generator().manual_seed(1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64, generator=g))
        for conv in model.head.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / conv.weight.shape[1] ** 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) - 1.0)
            xywh = conv.weight.view(model.head.num_anchors, model.head.num_outputs, -1)[:, :4]
            xywh.mul_(0.1)  # boxes of anchor size give or take a factor 2, as trained ones
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield spread_scores(build_model(load_config(CONFIG, OPTS)))
    torch.set_num_threads(threads)


def assert_same_detections(boxes, labels, index, dets, side):
    """Each ONNX row matches a distinct postprocess row of the same image and label (nearest box):
    rows of exactly equal score may come in either order."""
    want_boxes = torch.cat([d.boxes for d in dets]).numpy()
    want_labels = torch.cat([d.labels for d in dets]).numpy()
    want_index = np.concatenate([np.full(len(d.scores), i) for i, d in enumerate(dets)])
    used = np.zeros(len(want_boxes), bool)
    for box, label, image in zip(boxes, labels, index):
        candidates = np.flatnonzero(~used & (want_index == image) & (want_labels == label))
        assert len(candidates), f"no PyTorch detection of class {label} left in image {image}"
        errors = (np.abs(want_boxes[candidates] - box) / np.maximum(np.abs(want_boxes[candidates]), side)).max(1)
        assert errors.min() <= 1e-4, f"nearest PyTorch box is {errors.min():.3g} of the input size away"
        used[candidates[errors.argmin()]] = True


def images(batch, h, w, seed=0):
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_predictions_match_at_other_batch_and_size(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", (64, 64), 1, dynamic_batch=True, dynamic_size=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["predictions"]
    for batch, (h, w) in [(1, (64, 64)), (2, (96, 64))]:
        x = images(batch, h, w)
        (got,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (batch, 3 * (4 + 16 + 64) * (h * w) // 4096, 11)
        # float32 error grows with the coordinate: boxes of an untrained head reach far outside.
        np.testing.assert_allclose(got[..., :4], want[..., :4], atol=1e-4 * max(h, w), rtol=1e-4)
        np.testing.assert_allclose(got[..., 4:], want[..., 4:], atol=1e-4)
    assert check_onnx(path, model, (96, 64), 2).ok
    # The check can fail: a model with other weights than the exported ones.
    other = spread_scores(build_model(load_config(CONFIG, OPTS)))
    with torch.no_grad():
        other.head.convs[0].bias.add_(0.5)
    report = check_onnx(path, other, (64, 64), 1)
    assert not report.ok and "MISMATCH" in report.summary()


def test_nms_graph_gives_postprocess_detections_at_batch_2(model, tmp_path):
    conf, iou, max_det = 0.05, 0.5, 20
    path = export_onnx(model, tmp_path / "nms.onnx", (64, 64), 1, dynamic_batch=True, with_nms=True,
                       conf_thresh=conf, nms_thresh=iou, max_det=max_det)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels", "batch_index"]
    x = images(2, 64, 64)
    boxes, scores, labels, index = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        dets = postprocess(model(x), conf, iou, max_det)
    assert [len(d.scores) for d in dets] == [max_det, max_det]  # the per-image cap is exercised
    assert boxes.shape == (2 * max_det, 4) and labels.dtype == np.int64 and index.dtype == np.int64
    np.testing.assert_array_equal(index, np.repeat([0, 1], max_det))
    np.testing.assert_allclose(scores, torch.cat([d.scores for d in dets]).numpy(), atol=1e-4)
    assert_same_detections(boxes, labels, index, dets, side=64)
    # Without the cap, NMS itself must have dropped boxes (else this test would not test NMS).
    with torch.no_grad():
        decoded = model(x)
        candidates = ((decoded[..., 4:5] * decoded[..., 5:]).amax(-1) > conf).sum().item()
        uncapped = DetectorWithNms(model, conf, iou, max_det=10**6)(x)[1]
    assert max_det * 2 < len(uncapped) < candidates
    assert check_onnx(path, model, (64, 64), 2, with_nms=True, conf_thresh=conf, nms_thresh=iou, max_det=max_det).ok


def test_nms_graph_with_nothing_above_threshold(model, tmp_path):
    path = export_onnx(model, tmp_path / "none.onnx", (64, 64), 2, with_nms=True, conf_thresh=0.9999)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels, index = session.run(None, {"images": images(2, 64, 64).numpy()})
    assert boxes.shape == (0, 4) and scores.shape == labels.shape == index.shape == (0,)


def test_half_makes_a_float16_file_from_a_copy_and_leaves_the_model_as_it_was(tmp_path):
    import onnx

    model = build_model(load_config(CONFIG, OPTS)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "half.onnx", 64, 1, half=True, metadata={"precision": "float16"})
    assert model.training and {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    graph = onnx.load(str(path))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {i.data_type for i in graph.graph.initializer if i.dims} == {onnx.TensorProto.FLOAT16}
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert check_onnx(path, model.eval(), 64, 1, half=True).ok  # compared with a float16 copy of the model
    assert next(model.parameters()).dtype == torch.float32


def test_cli_exports_checkpoint_with_nms_and_checks(model, tmp_path, capsys):
    save_checkpoint(tmp_path / "w.pt", model)
    out = tmp_path / "cli" / "model.onnx"
    rc = load_tool("export").main(["--config", CONFIG, "--weights", str(tmp_path / "w.pt"), "--out", str(out),
                                   "--size", "64", "--dynamic-batch", "--nms", "--conf", "0.05", "--max-det", "30",
                                   "--check", "--opts", *OPTS])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert out.is_file() and "loaded" in printed
    checks = [line for line in printed.splitlines() if line.startswith("check")]
    assert len(checks) == 2 and all("OK" in line for line in checks), printed  # batch 1 and 2
    assert " 0 detections" not in printed


@pytest.mark.parametrize("args, message", [
    (["--config", "configs/missing.yaml"], "missing.yaml"),
    (["--config", CONFIG, "--size", "100"], "multiples of 32"),
    (["--config", CONFIG, "--size", "64", "96", "128"], "--size"),
    (["--config", CONFIG, "--weights", "no/such.pt"], "no/such.pt"),
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, message):
    rc = load_tool("export").main([*args, "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and message in err
    assert not (tmp_path / "m.onnx").exists()


def test_check_without_onnxruntime_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    rc = load_tool("export").main(["--config", CONFIG, "--out", str(tmp_path / "m.onnx"), "--check"])
    assert rc == 2 and "pip install -e .[export]" in capsys.readouterr().err
