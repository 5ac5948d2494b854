"""Darknet .weights/.cfg import and export, checked against OpenCV's own Darknet reader."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.conftest import make_model
from yolo_asff import load_darknet_weights
from yolo_asff.io.darknet import darknet_layers, save_darknet_weights, write_darknet_cfg


def randomise(model):
    """Random conv weights and biases, BN affine and running statistics (positive variances).

    Weights are drawn with variance 1/fan_in so that, with BN in eval mode, activations
    keep their scale through Darknet-53 instead of dying out or blowing up; the output
    convs get a third of that so that exp(tw) and the sigmoids stay out of saturation.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0.0, (1.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.uniform_(-1.5, 1.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for conv in model.head.convs:
            conv.weight.mul_(0.3)
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, x in sa.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(x, sb[name]), name


def test_layer_counts():
    assert len(darknet_layers(make_model("yolov3", width=0.25))) == 75
    assert len(darknet_layers(make_model("yolov3_tiny", width=0.25))) == 13
    assert len(darknet_layers(make_model("yolov3_asff", width=0.25))) == 52  # the backbone: all Darknet holds


@pytest.mark.parametrize("variant", ["yolov3", "yolov3_tiny"])
def test_save_load_round_trip(tmp_path, variant):
    src = randomise(make_model(variant, width=0.25, num_classes=5))
    path = tmp_path / "m.weights"
    n = len(darknet_layers(src))
    assert save_darknet_weights(src, path) == n
    assert not [p for p in tmp_path.iterdir() if p.name != "m.weights"]  # no temporary file left behind
    dst = make_model(variant, width=0.25, num_classes=5)
    assert load_darknet_weights(dst, path) == n
    assert_same_state(src, dst)


def test_load_keeps_dtype(tmp_path):
    src = randomise(make_model("yolov3_tiny", width=0.25))
    save_darknet_weights(src, tmp_path / "t.weights")
    dst = make_model("yolov3_tiny", width=0.25).double()
    assert load_darknet_weights(dst, tmp_path / "t.weights") == 13
    assert all(t.dtype == torch.float64 for t in dst.state_dict().values() if t.is_floating_point())
    assert torch.equal(dst.head.convs[0].weight, src.head.convs[0].weight.double())


def test_save_bf16_model(tmp_path):
    src = randomise(make_model("yolov3_tiny", width=0.25)).bfloat16()
    assert save_darknet_weights(src, tmp_path / "t.weights") == 13
    dst = make_model("yolov3_tiny", width=0.25)
    assert load_darknet_weights(dst, tmp_path / "t.weights") == 13
    assert torch.equal(dst.head.convs[0].weight, src.head.convs[0].weight.float())


def test_backbone_file_loads_into_asff_and_partially_into_yolov3(tmp_path, caplog):
    src = randomise(make_model("yolov3", width=0.25))
    path = tmp_path / "darknet53.conv.74"
    assert save_darknet_weights(src, path, cutoff=52) == 52
    asff = make_model("yolov3_asff", width=0.25)
    assert load_darknet_weights(asff, path) == 52
    assert_same_state(src.backbone, asff.backbone)
    yolo = make_model("yolov3", width=0.25)
    before = yolo.pyramid.block32[0].conv.weight.clone()
    with caplog.at_level(logging.INFO, logger="yolo_asff"):
        assert load_darknet_weights(yolo, path) == 52
    assert "52 of 75" in caplog.text
    assert_same_state(src.backbone, yolo.backbone)
    assert torch.equal(yolo.pyramid.block32[0].conv.weight, before)  # the neck is left as initialised
    with pytest.raises(ValueError, match="cutoff=76"):
        save_darknet_weights(src, tmp_path / "x.weights", cutoff=76)


def test_wrong_files_are_refused_clearly(tmp_path):
    good = tmp_path / "tiny80.weights"
    save_darknet_weights(randomise(make_model("yolov3_tiny", width=0.25, num_classes=80)), good)
    model = make_model("yolov3_tiny", width=0.25, num_classes=80)
    need = sum(t.numel() for conv, bn in darknet_layers(model)
               for t in ([bn.weight] * 4 if bn is not None else [conv.bias]) + [conv.weight])

    truncated = tmp_path / "cut.weights"
    truncated.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=rf"cut\.weights.*needs {need:,} values for its 13 Darknet layers.*"
                                         rf"holds {need - 250:,} after the header.*middle of layer 13 of 13"):
        load_darknet_weights(model, truncated)

    longer = tmp_path / "long.weights"
    longer.write_bytes(good.read_bytes() + bytes(8))
    with pytest.raises(ValueError, match="2 values more than the model has layers for"):
        load_darknet_weights(model, longer)

    other_classes = make_model("yolov3_tiny", width=0.25, num_classes=20)
    before = {k: t.clone() for k, t in other_classes.state_dict().items()}
    with pytest.raises(ValueError, match=r"fits this model with num_classes=80.*model\.num_classes"):
        load_darknet_weights(other_classes, good)
    assert all(torch.equal(before[k], t) for k, t in other_classes.state_dict().items())  # untouched

    full = tmp_path / "yolov3.weights"  # a whole yolov3 into an ASFF model, which takes the backbone only
    save_darknet_weights(make_model("yolov3", width=0.25), full)
    with pytest.raises(ValueError, match="more than the model has layers for.*darknet53.conv.74"):
        load_darknet_weights(make_model("yolov3_asff", width=0.25), full)

    odd = tmp_path / "odd.weights"
    odd.write_bytes(good.read_bytes()[:-2])
    with pytest.raises(ValueError, match="not a whole number of float32"):
        load_darknet_weights(model, odd)
    with pytest.raises(FileNotFoundError, match="nope.weights"):
        load_darknet_weights(model, tmp_path / "nope.weights")
    empty = tmp_path / "empty.weights"
    empty.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="no header"):
        load_darknet_weights(model, empty)


def test_old_header_with_32_bit_seen_counter(tmp_path):
    src = randomise(make_model("yolov3_tiny", width=0.25))
    modern = tmp_path / "new.weights"
    save_darknet_weights(src, modern)
    header = np.frombuffer(modern.read_bytes()[:20], "<i4")
    assert header[:3].tolist() == [0, 2, 0] and header[3:].tolist() == [0, 0]  # uint64 seen = 0
    body = modern.read_bytes()[12 + 8:]
    old = tmp_path / "old.weights"  # version 0.1: a 4-byte seen counter
    old.write_bytes(np.array([0, 1, 0], "<i4").tobytes() + np.array([123], "<u4").tobytes() + body)
    dst = make_model("yolov3_tiny", width=0.25)
    assert load_darknet_weights(dst, old) == 13
    assert_same_state(src, dst)


def test_cfg_refuses_what_darknet_cannot_express(tmp_path):
    with pytest.raises(ValueError, match="ASFF pyramid.*SPP.*ASFF fusion"):
        write_darknet_cfg(make_model("yolov3_asff", width=0.25), tmp_path / "x.cfg")
    with pytest.raises(ValueError, match="RFB"):
        write_darknet_cfg(make_model("yolov3", width=0.25, rfb=True), tmp_path / "x.cfg")
    with pytest.raises(ValueError, match="activation SiLU.*model.act"):
        write_darknet_cfg(make_model("yolov3_tiny", width=0.25, act="silu"), tmp_path / "x.cfg")
    assert not (tmp_path / "x.cfg").exists()


def opencv_layout(model, x):
    """Our eval-mode output (B=1, N, 5+C) rearranged as OpenCV's YOLO layers return it.

    Ours: levels stride-ascending, rows (anchor, y, x), columns x1, y1, x2, y2 in pixels,
    objectness, class probabilities. OpenCV (found by experiment, see the module test):
    one array per [yolo] layer in cfg order (stride 32 first), rows (y, x, anchor),
    columns centre x, centre y, w, h as fractions of the input blob's width/height,
    objectness, then objectness × class probability.
    """
    h_in, w_in = x.shape[-2:]
    with torch.no_grad():
        out = model(x)[0]
    head = model.head
    levels, start = [], 0
    for s in head.strides:
        shape = (head.num_anchors, h_in // s, w_in // s)
        n = shape[0] * shape[1] * shape[2]
        levels.append(out[start:start + n].view(*shape, -1).permute(1, 2, 0, 3).reshape(n, -1))
        start += n
    assert start == out.shape[0]
    d = torch.cat(levels[::-1])
    box = torch.stack([(d[:, 0] + d[:, 2]) / 2 / w_in, (d[:, 1] + d[:, 3]) / 2 / h_in,
                       (d[:, 2] - d[:, 0]) / w_in, (d[:, 3] - d[:, 1]) / h_in], dim=1)
    return torch.cat([box, d[:, 4:5], d[:, 5:] * d[:, 4:5]], dim=1).numpy()


@pytest.mark.parametrize("variant", ["yolov3", "yolov3_tiny"])
def test_opencv_reads_our_export_and_agrees(tmp_path, variant):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Darknet reader (removed in OpenCV 5); "
                    "install opencv-python-headless<5 to run this check")
    # Full width: the real layer shapes. bn_eps=1e-6 is the epsilon OpenCV's Darknet importer uses
    # (measured: with our default 1e-5 these unit-gain random weights amplify the difference to
    # ~4e-4 relative at the outputs of yolov3, 4e-6 for tiny); matching it compares the files alone.
    model = randomise(make_model(variant, num_classes=3, bn_eps=1e-6)).eval()
    size = (96, 128)  # (h, w): not square, so that a swapped width/height would show
    write_darknet_cfg(model, tmp_path / "net.cfg", size)
    save_darknet_weights(model, tmp_path / "net.weights")
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "net.cfg"), str(tmp_path / "net.weights"))
    x = torch.rand(1, 3, *size)
    net.setInput(x.numpy())
    names = net.getUnconnectedOutLayersNames()
    assert len(names) == len(model.head.strides)
    theirs = np.concatenate(net.forward(names))
    ours = opencv_layout(model, x)
    assert ours.shape == theirs.shape
    # The comparison means something only if the outputs are alive and spread out:
    assert np.isfinite(ours).all()
    obj = ours[:, 4]
    assert 0.005 < obj.min() and obj.max() < 0.995 and obj.std() > 0.05, "objectness saturated or constant"
    assert ours[:, 2:4].max() < 100 and ours[:, 5:].std() > 0.05, "box sizes blown up or constant scores"
    # thresh=0 in the [yolo] sections: OpenCV zeroes no class score, so every value is compared.
    assert (theirs[:, 5:] > 0).all()
    # Measured with matching epsilons: at most ~5e-6 relative (float32 summation order over 75
    # layers), so rtol=2e-5 leaves a 4x margin, tighter than the ~1e-4 that a batch-norm
    # epsilon mismatch explains (README, "Darknet weights"); a wrong layer, route, anchor or row order moves
    # values by more than 1e-2.
    # atol only matters for the few values within 1e-6 of zero.
    np.testing.assert_allclose(theirs, ours, rtol=2e-5, atol=1e-6)
