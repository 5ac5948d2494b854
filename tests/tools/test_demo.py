"""tools/demo.py on the shipped photo and the built-in video: outputs opened and checked."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import make_model
from yolo_asff import load_config
from yolo_asff.assets import sample_image_path
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.io.checkpoint import save_checkpoint
from yolo_asff.io.darknet import save_darknet_weights
from yolo_asff.cli import demo

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "demo.py"

SMALL = ["model.width=0.125", "test.batch_size=16"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    """The smallest built-in dataset: 1 + 1 images, its COCO JSON and the 60-frame video."""
    return generate_builtin(tmp_path_factory.mktemp("builtin") / "data", train=1, val=1)


def run_demo(capsys, builtin, *args, opts=()):
    argv = ["--config", str(REPO / "configs/builtin.yaml"), "--size", "64", *args,
            "--opts", f"data.root={builtin}", *SMALL, *opts]
    code = demo.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_photo_annotated_at_original_size_with_fusion_figure(capsys, builtin, tmp_path):
    photo = cv2.imread(sample_image_path())
    code, out, err = run_demo(capsys, builtin, "--source", sample_image_path(), "--out", str(tmp_path),
                              "--conf", "0", "--fusion-maps")
    assert code == 0, err
    assert "RANDOM initial weights" in err
    annotated = cv2.imread(str(tmp_path / "astronaut.jpg"))
    assert annotated.shape == photo.shape
    assert np.abs(annotated.astype(int) - photo).mean() > 5  # boxes and labels drawn
    assert "summary: 1 images, 100 detections, skipped 0" in out
    figure = cv2.imread(str(tmp_path / "astronaut_fusion.jpg"))
    # 3 × 3 panels of 320 px (+ 1 px border each side), label bands of 38 px, a 30 px colour bar.
    assert figure.shape == (3 * (38 + 320 + 2) + 30, 3 * 322, 3)
    assert f"annotated images: 1 in {tmp_path}" in out and "fusion maps: 1" in out


def test_video_keeps_frame_count_fps_and_size(capsys, builtin, tmp_path):
    code, out, err = run_demo(capsys, builtin, "--source", str(builtin / "video.mp4"), "--out", str(tmp_path),
                              "--fusion-maps", "--fusion-every", "25")
    assert code == 0, err
    written = tmp_path / "video.webm"  # VP8: plays in browsers (this OpenCV build has the encoder)
    assert f"annotated video: {written} (60 frames read and written" in out
    src, dst = cv2.VideoCapture(str(builtin / "video.mp4")), cv2.VideoCapture(str(written))
    assert dst.isOpened()
    for prop in (cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
        assert dst.get(prop) == src.get(prop)
    frames = 0
    while dst.read()[0]:
        frames += 1
    assert frames == int(src.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert sorted(p.name for p in tmp_path.glob("*_fusion.jpg")) == [
        "video_000000_fusion.jpg", "video_000025_fusion.jpg", "video_000050_fusion.jpg"]
    assert "summary: 60 frames" in out and "skipped 0" in out


def test_folder_skips_and_counts_a_corrupt_image(capsys, builtin, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    shutil.copy(sample_image_path(), folder / "a.jpg")
    cv2.imwrite(str(folder / "b.png"), np.full((40, 70, 3), 90, np.uint8))
    (folder / "c.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    code, out, err = run_demo(capsys, builtin, "--source", str(folder), "--out", str(out_dir))
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.jpg", "b.png"]
    assert cv2.imread(str(out_dir / "b.png")).shape == (40, 70, 3)
    assert "cannot read image" in err and "c.jpg" in err
    assert "summary: 2 images" in out and "skipped 1 (c.jpg)" in out
    # The same through a glob.
    code, out, _ = run_demo(capsys, builtin, "--source", str(folder / "*.jpg"), "--out", str(out_dir))
    assert code == 0 and "summary: 1 images" in out and "skipped 1 (c.jpg)" in out


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jpg", "source not found"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "unsupported file type '.txt'"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
    (lambda d: (d / "bad.jpg").write_bytes(b"junk") and d / "bad.jpg", "cannot read image"),
    (lambda d: (d / "bad.mp4").write_bytes(b"junk") and d / "bad.mp4", "cannot open video"),
    (lambda d: d / "*.png", "no images match"),
])
def test_user_errors_exit_2_with_a_message(capsys, builtin, tmp_path, make, message):
    source = make(tmp_path)
    code, _, err = run_demo(capsys, builtin, "--source", str(source), "--out", str(tmp_path / "out"))
    assert code == 2 and "error: " in err and message in err and str(Path(source).name) in err


def test_more_user_errors(capsys, builtin, tmp_path):
    photo = sample_image_path()
    code, _, err = run_demo(capsys, builtin, "--source", photo, "--weights", str(tmp_path / "none.pth"))
    assert code == 2 and "checkpoint not found" in err and "none.pth" in err
    code, _, err = run_demo(capsys, builtin, "--source", photo, "--size", "100")
    assert code == 2 and "multiples of 32" in err
    code, _, err = run_demo(capsys, builtin, "--source", photo, "--out", str(Path(photo).parent))
    assert code == 2 and "overwritten" in err
    code, _, err = run_demo(capsys, builtin, "--source", photo, opts=["model.num_clases=3"])
    assert code == 2 and "did you mean 'model.num_classes'" in err


def _confident(model):
    """Weights that make every prediction score ~1: zero output convs, large objectness/class bias."""
    with torch.no_grad():
        for conv in model.head.convs:
            conv.weight.zero_()
            conv.bias.view(model.head.num_anchors, -1)[:, 4:] = 10.0
    return model


def test_checkpoint_prefers_ema_weights(capsys, builtin, tmp_path):
    cfg = load_config(REPO / "configs/builtin.yaml", [f"data.root={builtin}", *SMALL])
    path = tmp_path / "ckpt.pth"
    plain, confident = make_model(num_classes=6, width=0.125), _confident(make_model(num_classes=6, width=0.125))
    save_checkpoint(path, plain, ema=confident, config=cfg.to_dict())
    code, out, err = run_demo(capsys, builtin, "--source", sample_image_path(), "--weights", str(path),
                              "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "(ema): loaded" in out and "RANDOM" not in err
    assert "summary: 1 images, 0 detections" not in out  # the 'model' weights would find nothing at 0.3


def test_darknet_weights_and_model_without_fusion(capsys, builtin, tmp_path):
    model = _confident(make_model("yolov3", num_classes=6, width=0.125))
    save_darknet_weights(model, tmp_path / "m.weights")
    code, out, err = run_demo(capsys, builtin, "--source", sample_image_path(), "--weights",
                              str(tmp_path / "m.weights"), "--out", str(tmp_path / "out"), "--fusion-maps", "--half",
                              opts=["model.arch=yolov3"])
    assert code == 0, err
    assert "Darknet layers loaded" in out and "has no ASFF fusion" in out
    assert "--half needs a CUDA device" in err
    assert not list((tmp_path / "out").glob("*_fusion.jpg")) and "summary: 1 images, 0 detections" not in out
