"""Darknet .weights/.cfg import and export, checked against OpenCV's own Darknet reader."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.conftest import make_model
from yolo_asff import load_darknet_weights
from yolo_asff.io.darknet import darknet_layers, save_darknet_weights, write_darknet_cfg
from yolo_asff.models.head import decode_level


def randomise(model, prior_prob=None):
    """Random weights and BN statistics (positive variances), so nothing round-trips by accident."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def assert_same_state(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(x, y), name


def test_layer_counts():
    assert len(darknet_layers(make_model("yolov3"))) == 75
    assert len(darknet_layers(make_model("yolov3_tiny"))) == 13
    assert len(darknet_layers(make_model("yolov3_asff"))) == 52  # the backbone: all Darknet can hold


@pytest.mark.parametrize("variant", ["yolov3", "yolov3_tiny"])
def test_save_load_round_trip(tmp_path, variant):
    src = randomise(make_model(variant, width=0.25, num_classes=5))
    path = tmp_path / "m.weights"
    assert save_darknet_weights(src, path) == len(darknet_layers(src))
    dst = make_model(variant, width=0.25, num_classes=5)
    assert load_darknet_weights(dst, path) == len(darknet_layers(src))
    assert_same_state(src, dst)


def test_backbone_file_loads_into_asff_and_partially_into_yolov3(tmp_path, caplog):
    src = randomise(make_model("yolov3", width=0.25))
    path = tmp_path / "darknet53.conv.74"
    save_darknet_weights(src, path, cutoff=52)
    asff = make_model("yolov3_asff", width=0.25)
    assert load_darknet_weights(asff, path) == 52
    assert_same_state(src.backbone, asff.backbone)
    yolo = make_model("yolov3", width=0.25)
    before = yolo.pyramid.block32[0].conv.weight.clone()
    with caplog.at_level(logging.INFO, logger="yolo_asff"):
        assert load_darknet_weights(yolo, path) == 52
    assert "52 of 75" in caplog.text
    assert torch.equal(yolo.pyramid.block32[0].conv.weight, before)  # the neck is left as initialised


def test_wrong_files_are_refused_clearly(tmp_path):
    model = make_model("yolov3_tiny", width=0.25, num_classes=80)
    good = tmp_path / "tiny.weights"
    save_darknet_weights(randomise(make_model("yolov3_tiny", width=0.25, num_classes=80)), good)

    truncated = tmp_path / "cut.weights"
    truncated.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="not the first k layers.*model.num_classes"):
        load_darknet_weights(model, truncated)

    other_classes = make_model("yolov3_tiny", width=0.25, num_classes=20)
    before = [t.clone() for t in other_classes.state_dict().values()]
    with pytest.raises(ValueError, match=r"all 13 layers need"):
        load_darknet_weights(other_classes, good)
    assert all(torch.equal(a, b) for a, b in zip(before, other_classes.state_dict().values()))  # untouched

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
    body = modern.read_bytes()[12 + 8:]
    old = tmp_path / "old.weights"
    old.write_bytes(np.array([0, 1, 0], "<i4").tobytes() + np.array([123], "<u4").tobytes() + body)
    dst = make_model("yolov3_tiny", width=0.25)
    assert load_darknet_weights(dst, old) == 13
    assert_same_state(src, dst)


def test_cfg_refuses_what_darknet_cannot_express(tmp_path):
    with pytest.raises(ValueError, match="ASFF"):
        write_darknet_cfg(make_model("yolov3_asff", width=0.25), tmp_path / "x.cfg")
    with pytest.raises(ValueError, match="model.act"):
        write_darknet_cfg(make_model("yolov3", width=0.25, act="silu"), tmp_path / "x.cfg")


def _opencv_layout(model, x):
    """Our decoded predictions in OpenCV's YOLO-layer layout.

    OpenCV returns one array per [yolo] layer in cfg order (stride 32 first), rows in
    (y, x, anchor) order, columns: centre x, centre y, w, h as fractions of the input,
    objectness, then objectness × class probability.
    """
    h_in, w_in = x.shape[-2:]
    with torch.no_grad():
        raw = model.head(model.pyramid(model.backbone(x)))
    rows = []
    for level in reversed(range(len(raw))):
        d = decode_level(raw[level], model.head.anchors[level], model.head.strides[level])[0]  # (A, H, W, 5+C)
        d = d.permute(1, 2, 0, 3).reshape(-1, d.shape[-1])
        box = torch.stack(
            [(d[:, 0] + d[:, 2]) / 2 / w_in, (d[:, 1] + d[:, 3]) / 2 / h_in,
             (d[:, 2] - d[:, 0]) / w_in, (d[:, 3] - d[:, 1]) / h_in], dim=1)
        rows.append(torch.cat([box, d[:, 4:5], d[:, 5:] * d[:, 4:5]], dim=1))
    return torch.cat(rows).numpy()


@pytest.mark.parametrize("variant", ["yolov3", "yolov3_tiny"])
def test_opencv_reads_our_export_and_agrees(tmp_path, variant):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV has no Darknet reader (OpenCV 5); install opencv-python-headless<5")
    # prior_prob 0.7 puts every objectness × class score well above OpenCV's fixed 0.2
    # threshold, below which it writes zeros, so that every value can be compared.
    model = randomise(make_model(variant, prior_prob=0.7)).eval()
    size = (96, 128)
    write_darknet_cfg(model, tmp_path / "net.cfg", size)
    save_darknet_weights(model, tmp_path / "net.weights")
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "net.cfg"), str(tmp_path / "net.weights"))
    x = torch.rand(1, 3, *size)
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    ours = _opencv_layout(model, x)
    assert ours.shape == theirs.shape
    assert ours[:, 5:].min() > 0.3, "scores near OpenCV's threshold would make the comparison partial"
    # SPEC section 7: Darknet-style BN differs by ~1e-4 relative at most.
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6)
