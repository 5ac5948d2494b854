"""The built-in dataset: deterministic, both layouts agree, video readable."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from yolo_asff.data.builtin import CLASSES, generate_builtin, render_image
from yolo_asff.data.coco import load_coco
from yolo_asff.data.voc import load_voc


def test_coco_and_voc_layouts_hold_the_same_boxes(tmp_path):
    out = generate_builtin(tmp_path / "b", train=12, val=4, seed=3)
    coco = load_coco(out / "annotations/train.json", out / "images/train")
    voc = load_voc(out / "VOCdevkit", [("builtin", "train")], class_names=list(CLASSES))
    assert coco.class_names == list(CLASSES) and not coco.problems.counts and not voc.problems.counts
    assert len(coco.records) == len(voc.records) == 12
    for a, b in zip(sorted(coco.records, key=lambda r: r.name), sorted(voc.records, key=lambda r: r.name)):
        np.testing.assert_allclose(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
    val = load_coco(out / "annotations/val.json", out / "images/val")
    assert len(val.records) == 4
    assert not {r.image_id for r in val.records} & {r.image_id for r in coco.records}


def test_deterministic_by_seed(tmp_path):
    a = generate_builtin(tmp_path / "a", train=5, val=2, seed=7)
    b = generate_builtin(tmp_path / "b", train=5, val=2, seed=7)
    c = generate_builtin(tmp_path / "c", train=5, val=2, seed=8)
    ja, jb, jc = (json.loads((d / "annotations/train.json").read_text()) for d in (a, b, c))
    assert ja == jb and ja != jc
    img_a = cv2.imread(str(a / "images/train" / ja["images"][0]["file_name"]))
    img_b = cv2.imread(str(b / "images/train" / jb["images"][0]["file_name"]))
    assert np.array_equal(img_a, img_b)


def test_objects_are_where_the_boxes_say():
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(20):
        img, boxes, labels = render_image(rng, size=(320, 320))
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 8).all()
        assert (boxes >= 0).all() and (boxes[:, 2:] <= 320).all()
        sizes += list(boxes[:, 2] - boxes[:, 0])
        assert labels.min() >= 0 and labels.max() < len(CLASSES)
    assert min(sizes) < 20 and max(sizes) > 100  # small and large objects


def test_video_is_readable(tmp_path):
    out = generate_builtin(tmp_path / "v", train=1, val=1, seed=0)
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (360, 480, 3)
    assert frames >= 30 and cap.get(cv2.CAP_PROP_FPS) == 15


def test_ensure_builtin_generates_once(tmp_path):
    from yolo_asff.data.builtin import ensure_builtin

    root = ensure_builtin(tmp_path / "auto", train=3, val=2, seed=0)
    stamp = (root / "annotations/train.json").stat().st_mtime_ns
    assert (root / "READY").is_file()
    ensure_builtin(root, train=3, val=2, seed=0)
    assert (root / "annotations/train.json").stat().st_mtime_ns == stamp  # not regenerated


def test_the_generator_never_writes_into_a_folder_it_did_not_create(tmp_path):
    import json
    import subprocess
    import sys

    from yolo_asff import load_config
    from yolo_asff.data import DatasetError, build_dataset
    from yolo_asff.data.builtin import generate_builtin

    mine = tmp_path / "mydata"
    (mine / "annotations").mkdir(parents=True)
    (mine / "annotations" / "train.json").write_text(json.dumps({"images": [], "categories": []}))
    before = sorted(p.relative_to(mine) for p in mine.rglob("*"))
    cfg = load_config("configs/builtin.yaml", [f"data.root={mine}"])  # data.builtin: true, root changed
    with pytest.raises(DatasetError, match=r"mydata exists and was not written by the generator.*data.root"):
        build_dataset(cfg, "train")
    with pytest.raises(DatasetError, match="data.builtin: false"):
        generate_builtin(mine, train=1, val=1)
    result = subprocess.run([sys.executable, "-m", "yolo_asff.data.builtin", "--out", str(mine), "--train", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--out" in result.stderr
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    assert (mine / "annotations" / "train.json").read_text() == json.dumps({"images": [], "categories": []})
    (mine / "READY").write_text("my own notes")  # a file that happens to have the generator's name
    with pytest.raises(DatasetError, match="not written by the generator"):
        generate_builtin(mine, train=1, val=1)
    # its own folder, even half written (the marker is its first file), it writes again
    ours = generate_builtin(tmp_path / "ours", train=1, val=1)
    (ours / "READY").unlink()
    assert (generate_builtin(ours, train=2, val=1) / "READY").is_file()


def test_glyphs_kind_boxes_hold_the_letters_ink():
    """Each glyph box holds ink of a colour unlike the background just outside it, and nothing else of the
    picture's class boxes overlaps: the second kind's labels are as exact as the shapes'."""
    from yolo_asff.data.builtin import GLYPHS, render_glyph_image

    rng = np.random.default_rng(3)
    heights = []
    for _ in range(20):
        img, boxes, labels = render_glyph_image(rng, size=(320, 400))
        assert len(boxes) >= 1 and labels.max() < len(GLYPHS)
        for x1, y1, x2, y2 in boxes.astype(int):
            inside = img[y1:y2, x1:x2].reshape(-1, 3).astype(np.float32)
            # The letter's ink stands out from the background under the box (its mean, from a ring around it).
            ring = img[max(0, y1 - 3):y2 + 3, max(0, x1 - 3):x2 + 3].astype(np.float32).copy()
            ring[y1 - max(0, y1 - 3):y1 - max(0, y1 - 3) + y2 - y1, x1 - max(0, x1 - 3):x1 - max(0, x1 - 3) + x2 - x1] = np.nan
            background = np.nanmean(ring.reshape(-1, 3), 0)
            assert (np.abs(inside - background).max(1) > 60).mean() > 0.1
            heights.append(y2 - y1)
        ix = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:]) - np.maximum(boxes[:, None, :2], boxes[None, :, :2])
        touching = (ix > 0).all(-1) & ~np.eye(len(boxes), dtype=bool)
        assert not touching.any()
    assert min(heights) <= 14 and max(heights) >= 50


def test_kind_is_kept_apart_and_regenerated_on_change(tmp_path):
    from yolo_asff.data.builtin import GLYPHS, ensure_builtin

    root = ensure_builtin(tmp_path / "d", kind="glyphs", train=3, val=2, seed=0)
    names = [c["name"] for c in json.loads((root / "annotations/val.json").read_text())["categories"]]
    assert names == list(GLYPHS) and not (root / "video.mp4").exists()
    ensure_builtin(root, kind="shapes", train=3, val=2, seed=0)  # the generator's folder: rewritten as shapes
    names = [c["name"] for c in json.loads((root / "annotations/val.json").read_text())["categories"]]
    assert names == list(CLASSES) and (root / "video.mp4").is_file()


def test_config_picks_the_kind(tmp_path):
    from yolo_asff.config import ConfigError, load_config
    from yolo_asff.data.build import dataset_class_names
    from yolo_asff.data.builtin import GLYPHS

    cfg = load_config("builtin_glyphs", opts=[f"data.root={tmp_path / 'g'}"])
    assert cfg.model.num_classes == len(GLYPHS) and dataset_class_names(cfg) == list(GLYPHS)
    with pytest.raises(ConfigError, match="data.builtin_kind"):
        load_config("builtin", opts=["data.builtin_kind=letters"])
