"""VOC reader on a generated VOCdevkit tree: difficult flags, 1-based boxes, several splits, bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_asff.data.records import DatasetError
from yolo_asff.data.voc import VOC_CLASSES, load_voc


def obj(name, box, difficult=0):
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def make_voc(root, year, split, items, w=120, h=90):
    base = root / f"VOC{year}"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for image_id, objects in items.items():
        cv2.imwrite(str(base / "JPEGImages" / f"{image_id}.jpg"), np.zeros((h, w, 3), np.uint8))
        xml = f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
        (base / "Annotations" / f"{image_id}.xml").write_text(xml)
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(items) + "\n")


def test_one_based_boxes_difficult_flags_and_two_splits(tmp_path):
    make_voc(tmp_path, 2007, "trainval", {"000001": [obj("dog", (1, 1, 50, 40)), obj("cat", (10, 10, 30, 30), 1)]})
    make_voc(tmp_path, 2012, "trainval", {"2012_000001": [obj("person", (5, 6, 120, 90))]})
    voc = load_voc(tmp_path, [(2007, "trainval"), (2012, "trainval")])
    assert voc.class_names == list(VOC_CLASSES) and len(voc.records) == 2
    first, second = voc.records
    # pixels 1..50 (1-based, inclusive) are the continuous span [0, 50]
    np.testing.assert_allclose(first.boxes, [[0, 0, 50, 40], [9, 9, 30, 30]])
    assert [VOC_CLASSES[i] for i in first.labels] == ["dog", "cat"]
    assert first.ignore.tolist() == [False, True]
    assert first.training_targets()[1].tolist() == [VOC_CLASSES.index("dog")]
    assert len(first.training_targets(use_ignored=True)[1]) == 2  # difficult selectable for training
    np.testing.assert_allclose(second.boxes, [[4, 5, 120, 90]])  # touching the border is not clipping
    assert not voc.problems.counts


def test_class_list_from_config_and_unknown_names(tmp_path):
    make_voc(tmp_path, 2007, "test", {"a": [obj("widget", (1, 1, 10, 10)), obj("gadget", (20, 20, 40, 40))]})
    voc = load_voc(tmp_path, [(2007, "test")], class_names=["gadget"])
    assert voc.records[0].labels.tolist() == [0]
    assert voc.problems.counts["object of a class not in data.class_names (dropped)"] == 1


def test_bad_files_are_counted(tmp_path):
    make_voc(tmp_path, 2007, "train", {
        "ok": [obj("dog", (1, 1, 10, 10))],
        "flat": [obj("dog", (10, 10, 8, 30))],  # xmax < xmin (xmin == xmax is one pixel wide)
        "outside": [obj("dog", (500, 500, 600, 600))],
        "broken": [],
        "noimage": [obj("dog", (1, 1, 10, 10))],
    })
    base = tmp_path / "VOC2007"
    (base / "Annotations" / "broken.xml").write_text("<annotation><size>")
    (base / "JPEGImages" / "noimage.jpg").unlink()
    with open(base / "ImageSets/Main/train.txt", "a") as f:
        f.write("ghost\n")
    voc = load_voc(tmp_path, [(2007, "train")])
    c = voc.problems.counts
    assert c["box with zero or negative size (dropped)"] == 1 and c["box outside the image (dropped)"] == 1
    assert c["unreadable annotation XML (image skipped)"] == 1 and c["image file missing (skipped)"] == 1
    assert c["annotation file missing (image skipped)"] == 1
    assert sorted(r.name for r in voc.records) == ["VOC2007/flat", "VOC2007/ok", "VOC2007/outside"]


def test_unusable_layouts_stop_with_the_path(tmp_path):
    with pytest.raises(DatasetError, match=r"VOC2012/ImageSets/Main/trainval.txt"):
        load_voc(tmp_path, [(2012, "trainval")])
    with pytest.raises(DatasetError, match="data.train.splits"):
        load_voc(tmp_path, [])
    make_voc(tmp_path, 2007, "empty", {})
    with pytest.raises(DatasetError, match="no usable images.*empty split list"):
        load_voc(tmp_path, [(2007, "empty")])
