"""The demo's job in the package (yolo_asff/engine/demo.py), called in-process: class names, the predictor
it builds from weights and config, the output folder, broken video frames, and a whole run."""
from __future__ import annotations

import shutil
from pathlib import Path, PurePath

import cv2
import numpy as np
import pytest
import torch

from yolo_asff import load_config
from yolo_asff.assets import sample_image_path
from yolo_asff.data.builtin import CLASSES, generate_builtin
from yolo_asff.engine import demo
from yolo_asff.engine.demo import OutputNamer
from yolo_asff.errors import InvalidInputError, OutputError

REPO = Path(__file__).resolve().parents[2]
SMALL = ["model.width=0.125", "test.batch_size=4"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    return generate_builtin(tmp_path_factory.mktemp("builtin") / "data", train=1, val=1)


def test_class_names_from_the_dataset_or_a_fallback(builtin, tmp_path):
    cfg = load_config(REPO / "configs/builtin.yaml", [f"data.root={builtin}"])
    assert demo.class_names_for(cfg) == (list(CLASSES), None)
    cfg = load_config(REPO / "configs/builtin.yaml", [f"data.root={tmp_path}"])  # not generated: the same list
    assert demo.class_names_for(cfg) == (list(CLASSES), None)
    cfg = load_config(REPO / "configs/yolov3_asff_coco.yaml", [f"data.root={tmp_path}"])
    names, note = demo.class_names_for(cfg)
    assert names[:2] == ["class 0", "class 1"] and len(names) == 80 and "not found" in note
    cfg = load_config(REPO / "configs/builtin.yaml", ["data.class_names=[a, b]", "model.num_classes=2"])
    assert demo.class_names_for(cfg) == (["a", "b"], None)


class FakeCapture:
    """cv2.VideoCapture stand-in: ``None`` entries are frames that fail to decode."""

    def __init__(self, frames):
        self.frames = list(frames)

    def read(self):
        frame = self.frames.pop(0) if self.frames else None
        return frame is not None, frame


def test_broken_video_frames_are_skipped_and_counted():
    ok = np.zeros((4, 4, 3), np.uint8)
    summary = demo.Summary()
    got = [i for i, _ in demo.read_frames(FakeCapture([ok, None, ok, None, None, ok]), 6, summary)]
    assert got == [0, 2, 5] and summary.skipped == ["frame 1", "frame 3", "frame 4"]
    # A container announcing more frames than it holds: the missing tail is not "skipped".
    summary = demo.Summary()
    got = [i for i, _ in demo.read_frames(FakeCapture([ok, ok]), 100, summary)]
    assert got == [0, 1] and summary.skipped == []


def test_the_predictor_takes_the_config_thresholds_unless_told(capsys):
    predictor, ready, names = demo.load_predictor(None, "builtin", [*SMALL, "test.show_thresh=0.45",
                                                                    "test.nms_thresh=0.5"], size=[64, 96])
    assert (predictor.conf_thresh, predictor.nms_thresh, predictor.input_size) == (0.45, 0.5, (64, 96))
    assert names == list(CLASSES) and ready.cfg.test.show_thresh == 0.45
    assert "RANDOM initial weights" in capsys.readouterr().err
    predictor, _, _ = demo.load_predictor(None, "builtin", SMALL, conf=0.2, nms=0.7)
    assert (predictor.conf_thresh, predictor.nms_thresh) == (0.2, 0.7)
    assert demo.load_predictor(None, "builtin", SMALL)[0].conf_thresh == 0.3  # test.show_thresh's default


def test_half_without_cuda_warns_and_leaves_the_weights_float32(capsys):
    predictor, ready, _ = demo.load_predictor(None, "builtin", SMALL, device="cpu", half=True)
    assert not predictor.half and "--half needs a CUDA device" in capsys.readouterr().err
    assert {p.dtype for p in ready.model.parameters()} == {torch.float32}


def test_bad_size_and_device_name_the_flag():
    with pytest.raises(InvalidInputError, match="--size must be positive multiples of 32"):
        demo.load_predictor(None, "builtin", SMALL, size=100)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="--device cuda: CUDA is not available"):
            demo.load_predictor(None, "builtin", SMALL, device="cuda")


def test_bad_thresholds_size_and_device_are_refused_before_the_weights_load(tmp_path):
    missing = str(tmp_path / "no_such_weights.pth")  # loading it would fail: the flags must be checked first
    for kwargs, flag in (({"conf": 2.0}, "--conf"), ({"conf": -1.0}, "--conf"), ({"nms": 1.5}, "--nms"),
                         ({"size": 100}, "--size")):
        with pytest.raises(InvalidInputError, match=flag):
            demo.load_predictor(missing, None, (), **kwargs)
    predictor, _, _ = demo.load_predictor(None, "builtin", SMALL, conf=0.0, nms=1.0)
    assert (predictor.conf_thresh, predictor.nms_thresh) == (0.0, 1.0)


def test_output_folder_is_numbered_when_taken_and_never_the_source_folder(tmp_path, capsys):
    pictures = tmp_path / "pics"
    pictures.mkdir()
    shutil.copy(sample_image_path(), pictures / "a.jpg")
    source = demo.resolve_source(str(pictures))
    with pytest.raises(OutputError, match="where the source images are"):
        demo.output_folder(pictures, source)
    out = tmp_path / "out"
    assert demo.output_folder(out, source) == out and out.is_dir()
    (out / "old.jpg").write_bytes(b"x")
    assert demo.output_folder(out, source) == tmp_path / "out-2"
    assert "already holds files" in capsys.readouterr().out


def test_run_demo_writes_and_counts(tmp_path, capsys):
    summary = demo.run_demo(sample_image_path(), tmp_path / "out", config="builtin", opts=SMALL, size=64, conf=0.0)
    printed = capsys.readouterr().out
    assert (summary.items, summary.written, summary.skipped) == (1, 1, [])
    assert summary.detections == 100  # conf 0: test.max_det of them
    assert cv2.imread(str(tmp_path / "out" / "astronaut.jpg")).shape == cv2.imread(sample_image_path()).shape
    assert "input 64x64" in printed and "conf 0.0, nms 0.65" in printed
    with pytest.raises(InvalidInputError, match="--fusion-every"):
        demo.run_demo(sample_image_path(), tmp_path / "out", config="builtin", opts=SMALL, fusion_every=0)


def test_demo_outputs_stay_inside_the_output_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    namer = OutputNamer(out)
    for rel in (PurePath("../../etc/passwd.jpg"), PurePath("/abs/x.jpg"), PurePath("link/y.jpg"), PurePath("a.jpg"),
                PurePath("a.jpg")):
        path = namer.path_for(rel)
        assert str(Path(path).resolve().parent).startswith(str(out.resolve())) and not path.exists()
        path.write_text("x")
    assert not list((tmp_path / "elsewhere").iterdir())
    assert sorted(p.name for p in out.rglob("*.jpg")) == ["a.jpg", "a_2.jpg", "passwd.jpg", "x.jpg", "y.jpg"]


def test_output_names_of_frames_and_dangling_links(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "sibling").mkdir()
    (out / "sub").symlink_to(Path("..") / "sibling", target_is_directory=True)  # a prefix twin: out vs sibling
    (out / "a.jpg").symlink_to(tmp_path / "sibling" / "evil.jpg")  # dangling: writing would land outside
    namer = OutputNamer(out)
    assert namer.path_for(PurePath("labels") / "cam.2024-05-01_000012", ".txt").name == "cam.2024-05-01_000012.txt"
    assert namer.path_for(PurePath("cam.2024-05-01"), ".webm").name == "cam.2024-05-01.webm"
    assert namer.path_for(PurePath("cam1/0001.jpg"), ".png") == out / "cam1" / "0001.png"
    assert namer.path_for(PurePath("a.jpg")) == out / "a_2.jpg"
    assert namer.path_for(PurePath("sub/deep/b.jpg")) == out / "b.jpg" and not (tmp_path / "sibling" / "deep").exists()
