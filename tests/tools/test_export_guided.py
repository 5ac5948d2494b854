"""ONNX export of the guided-anchor head: DeformConv at opset 19, checked against onnxruntime where it runs it."""
from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import DeformConv2d

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from yolo_asff import build_model, load_config  # noqa: E402
from yolo_asff.io.checkpoint import save_checkpoint  # noqa: E402
from yolo_asff.engine.export import (  # noqa: E402
    DEFAULT_OPSET, DEFORM_CONV_OPSET, ExportError, OnnxRuntimeUnsupportedError, _deform_conv_symbolic, check_onnx,
    export_onnx, resolve_opset, uses_deform_conv,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "official" / "yolov3_asff_coco.yaml")
OPTS = ["model.width=0.125", "model.num_classes=3"]  # the official model, small: ~1.3 M parameters
SIZE = (64, 96)
# onnxruntime's own words when it lacks the kernel (before 1.25).
NO_KERNEL = ("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for DeformConv(19) "
             "node with name '/head/levels.0/adaption/dconv/DeformConv'")

pytestmark = pytest.mark.usefixtures("one_thread")


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def ort_runs_deform_conv() -> bool:
    """Whether the installed onnxruntime has a CPU DeformConv kernel (1.25 on), tried on a one-node graph."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 3, 3])
    offset = helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 18, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])
    node = helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "deform_conv", [x, w, offset], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DEFORM_CONV_OPSET)], ir_version=9)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind11 error types vary between versions
        if "DeformConv" in str(exc):
            return False
        raise
    return True


needs_deform_conv_kernel = pytest.mark.skipif(
    not ort_runs_deform_conv(),
    reason=f"onnxruntime {ort.__version__} has no DeformConv kernel (1.25 on has one): nothing to compare with")


def spread(model: torch.nn.Module) -> torch.nn.Module:
    """Give an untrained guided model what a trained one has: sizeable sampling offsets and spread scores.

    At initialisation the guide conv is zero, so the deformable convs sample a plain 3×3 grid
    and the export's offset layout would go untested; BatchNorm's statistics shrink the
    features so that the scores tie. One training-mode pass sets the statistics, random guide
    and offset convs give offsets of about a pixel that vary over the map (fractional, both
    signs, out of the map at the borders) and a random output conv spreads the scores. A
    stronger guide gives anchors of e^10 and float error to match: the offsets are computed
    from the features, so PyTorch's and onnxruntime's rounding upstream moves the sampling
    points (DeformConv itself agrees to the bit, see test_deform_conv_op_matches_torchvision)."""
    g = torch.Generator().manual_seed(1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64, generator=g))
        for level in model.head.levels:
            guide, offset, conv = level.guide_wh, level.adaption.conv_offset, level.conv
            guide.weight.copy_(torch.randn(guide.weight.shape, generator=g) * 0.05 / guide.weight.shape[1] ** 0.5)
            offset.weight.copy_(torch.randn(offset.weight.shape, generator=g))
            offset.bias.copy_(torch.randn(offset.bias.shape, generator=g))
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / conv.weight.shape[1] ** 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) - 1.0)
            conv.weight.view(level.num_slots, level.num_outputs, -1)[:, :4].mul_(0.1)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield spread(build_model(load_config(CONFIG, OPTS)))
    torch.set_num_threads(threads)


def images(batch, h, w, seed=0):
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_opset_defaults_to_19_for_deformable_convolutions(model):
    plain = build_model(load_config(CONFIG, [*OPTS, "model.head=yolov3"]))
    assert uses_deform_conv(model) and not uses_deform_conv(plain)
    assert resolve_opset(model) == DEFORM_CONV_OPSET == 19 and resolve_opset(model, 19) == 19
    assert resolve_opset(plain) == DEFAULT_OPSET and resolve_opset(plain, 18) == 18


@pytest.mark.parametrize("opset", [17, 18])
def test_opset_below_19_is_a_clear_error(model, tmp_path, opset):
    with pytest.raises(ExportError, match=r"DeformConv needs opset 19.*--opset 19"):
        export_onnx(model, tmp_path / "m.onnx", SIZE, opset=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_graph_is_valid_onnx_with_deform_conv(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", SIZE, dynamic_batch=True, dynamic_size=True)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 19)]
    nodes = [n for n in graph.graph.node if n.op_type == "DeformConv"]
    assert len(nodes) == 3  # one per level
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"dilations": [1, 1], "group": 1, "kernel_shape": [3, 3], "offset_group": 4,
                         "pads": [1, 1, 1, 1], "strides": [1, 1]}
        assert len(node.input) == 4  # X, W, offset, B: no mask
    # Our symbolic is registered for the export only: without it torch cannot export the op
    # (its words vary: "unrecognized namespace torchvision::deform_conv2d" before any
    # registration, an empty function group after one).
    with pytest.raises(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(model, (images(1, *SIZE),), str(tmp_path / "raw.onnx"), dynamo=False, opset_version=19)


class DeformConvNet(torch.nn.Module):
    """One ``DeformConv2d`` with every option away from its default, offsets and mask as inputs."""

    def __init__(self, use_mask: bool) -> None:
        super().__init__()
        self.conv = DeformConv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
        self.use_mask = use_mask

    def forward(self, x, offset, mask):
        return self.conv(x, offset, mask if self.use_mask else None)


@needs_deform_conv_kernel
@pytest.mark.parametrize("use_mask", [False, True])
def test_deform_conv_op_matches_torchvision(tmp_path, use_mask):
    net = DeformConvNet(use_mask).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 9, generator=g)
    out_h, out_w = 4, 11  # (7 + 2 - 3) // 2 + 1, (9 + 4 - 2 · 1 - 1) + 1
    offset_groups = 2
    offset = 2 * torch.randn(2, offset_groups * 3 * 2 * 2, out_h, out_w, generator=g)  # a few pixels: off the map
    mask = torch.rand(2, offset_groups * 3 * 2, out_h, out_w, generator=g)
    with torch.no_grad():
        want = net(x, offset, mask).numpy()
    path = tmp_path / "deform.onnx"
    with _deform_conv_symbolic(True), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation warning
        torch.onnx.export(net, (x, offset, mask), str(path), dynamo=False, opset_version=19,
                          input_names=["x", "offset", "mask"], output_names=["y"])
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    (node,) = [n for n in graph.graph.node if n.op_type == "DeformConv"]
    assert len(node.input) == (5 if use_mask else 4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "offset": offset.numpy(), "mask": mask.numpy()}
    (got,) = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
    assert got.shape == want.shape == (2, 6, out_h, out_w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_deform_conv_kernel
def test_predictions_match_at_other_batch_and_size(model, tmp_path):
    offsets = []
    hook = model.head.levels[0].adaption.conv_offset.register_forward_hook(lambda m, i, o: offsets.append(o))
    path = export_onnx(model, tmp_path / "m.onnx", SIZE, 1, dynamic_batch=True, dynamic_size=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, (h, w) in [(1, SIZE), (2, (96, 64))]:
        x = images(batch, h, w)
        (got,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (batch, 4 * (64 + 16 + 4) * (h * w) // 4096, 8)  # 4 slots per cell
        np.testing.assert_allclose(got[..., :4], want[..., :4], atol=1e-4 * max(h, w), rtol=1e-4)
        np.testing.assert_allclose(got[..., 4:], want[..., 4:], atol=1e-4)
    hook.remove()
    # The deformable convs really sample off the grid, and not by the same amount everywhere.
    assert offsets[-1].abs().mean() > 0.5 and offsets[-1].std(dim=(2, 3)).mean() > 0.2
    assert check_onnx(path, model, (96, 64), 2).ok


@needs_deform_conv_kernel
def test_nms_graph_gives_postprocess_detections(model, tmp_path):
    conf, iou, max_det = 0.05, 0.5, 20
    path = export_onnx(model, tmp_path / "nms.onnx", SIZE, 1, dynamic_batch=True, dynamic_size=True, with_nms=True,
                       conf_thresh=conf, nms_thresh=iou, max_det=max_det)
    onnx.checker.check_model(str(path))
    for batch, size in [(2, SIZE), (1, (96, 128))]:
        report = check_onnx(path, model, size, batch, with_nms=True, conf_thresh=conf, nms_thresh=iou,
                            max_det=max_det)
        assert report.ok and report.detections > batch, report.summary()


def test_check_says_when_onnxruntime_cannot_run_deform_conv(model, tmp_path, monkeypatch):
    path = export_onnx(model, tmp_path / "m.onnx", SIZE)

    def no_kernel(*args, **kwargs):
        raise RuntimeError(NO_KERNEL)

    monkeypatch.setattr(ort, "InferenceSession", no_kernel)
    monkeypatch.setattr(ort, "__version__", "1.24.4")
    with pytest.raises(OnnxRuntimeUnsupportedError) as info:
        check_onnx(path, model, SIZE)
    message = str(info.value)
    assert str(path) in message and "valid ONNX (onnx.checker)" in message
    assert "onnxruntime 1.24.4" in message and "DeformConv" in message and "onnxruntime>=1.25" in message
    assert isinstance(info.value, ExportError)


def test_check_passes_other_onnxruntime_errors_on(model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : something else")

    monkeypatch.setattr(ort, "InferenceSession", broken)
    with pytest.raises(RuntimeError, match="something else") as info:
        check_onnx(tmp_path / "missing.onnx", model, SIZE)
    assert not isinstance(info.value, ExportError)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_checkpoint(path, model)
    return str(path)


def test_cli_exports_guided_checkpoint_at_opset_19_and_checks(weights, tmp_path, capsys):
    out = tmp_path / "cli" / "model.onnx"
    rc = load_tool("export").main(["--config", CONFIG, "--weights", weights, "--out", str(out), "--size", "64", "96",
                                   "--dynamic-batch", "--check", "--opts", *OPTS])
    captured = capsys.readouterr()
    assert out.is_file() and "loaded" in captured.out and "opset 19" in captured.out
    assert "stretched (no letterbox)" in captured.out  # the official configs' pre-processing
    onnx.checker.check_model(str(out))
    if ort_runs_deform_conv():
        assert rc == 0, captured
        checks = [line for line in captured.out.splitlines() if line.startswith("check")]
        assert len(checks) == 2 and all("OK" in line for line in checks), captured.out  # batch 1 and 2
    else:
        assert rc == 2 and "cannot run" in captured.err and "valid ONNX" in captured.err


def test_cli_nms_with_old_onnxruntime_says_the_file_is_valid(weights, tmp_path, capsys, monkeypatch):
    def no_kernel(*args, **kwargs):
        raise RuntimeError(NO_KERNEL)

    monkeypatch.setattr(ort, "InferenceSession", no_kernel)
    monkeypatch.setattr(ort, "__version__", "1.24.4")
    out = tmp_path / "model.onnx"
    rc = load_tool("export").main(["--config", CONFIG, "--weights", weights, "--out", str(out), "--size", "64",
                                   "--nms", "--check", "--opts", *OPTS])
    captured = capsys.readouterr()
    assert rc == 2 and out.is_file() and f"wrote       {out}" in captured.out
    assert captured.err.startswith("error:") and "Traceback" not in captured.err
    assert "was written and is valid ONNX" in captured.err and "onnxruntime 1.24.4" in captured.err
    assert "onnxruntime>=1.25" in captured.err


@pytest.mark.parametrize("opset", ["17", "18"])
def test_cli_opset_below_19_exits_2(tmp_path, capsys, opset):
    out = tmp_path / "m.onnx"
    rc = load_tool("export").main(["--config", CONFIG, "--out", str(out), "--size", "64", "--opset", opset,
                                   "--opts", *OPTS])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "DeformConv needs opset 19" in err and "--opset 19" in err
    assert not out.exists()
