"""COCO reader on generated files in the real format, including every bad-input case."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from yolo_asff.data.coco import load_coco
from yolo_asff.data.records import DatasetError


def make_coco(tmp_path, images, annotations, categories=None, write_images=True):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    for img in images:
        if write_images:
            cv2.imwrite(str(img_dir / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    categories = categories or [{"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}, {"id": 90, "name": "toothbrush"}]
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann, img_dir


def img(i, w=100, h=80):
    return {"id": i, "file_name": f"{i}.jpg", "width": w, "height": h}


def box(i, image_id, cat, bbox, crowd=0):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd, "area": 1.0}


def test_gapped_category_ids_map_to_contiguous_classes_and_back(tmp_path):
    ann, imgs = make_coco(tmp_path, [img(1), img(2)], [
        box(1, 1, 90, [10, 20, 30, 40]), box(2, 1, 5, [0, 0, 5, 5]), box(3, 2, 1, [50, 10, 20, 20]),
    ])
    coco = load_coco(ann, imgs)
    assert coco.class_names == ["person", "airplane", "toothbrush"]
    assert coco.category_ids == [1, 5, 90]
    first = next(r for r in coco.records if r.image_id == 1)
    np.testing.assert_array_equal(first.labels, [2, 1])
    np.testing.assert_allclose(first.boxes[0], [10, 20, 40, 60])  # xywh -> xyxy


def test_crowd_boxes_are_kept_out_of_training_targets(tmp_path):
    ann, imgs = make_coco(tmp_path, [img(1)], [box(1, 1, 1, [10, 10, 20, 20]), box(2, 1, 5, [40, 10, 30, 30], crowd=1)])
    record = load_coco(ann, imgs).records[0]
    assert record.ignore.tolist() == [False, True]
    boxes, labels = record.training_targets()
    assert labels.tolist() == [0] and boxes.shape == (1, 4)


def test_empty_images_kept_unless_asked(tmp_path):
    ann, imgs = make_coco(tmp_path, [img(1), img(2)], [box(1, 1, 1, [10, 10, 20, 20])])
    assert len(load_coco(ann, imgs).records) == 2
    assert [r.image_id for r in load_coco(ann, imgs, keep_empty=False).records] == [1]


def test_bad_annotations_are_counted_and_reported(tmp_path, caplog):
    ann, imgs = make_coco(tmp_path, [img(1), img(2), img(3)], [
        box(1, 1, 1, [10, 10, 0, 5]),        # zero width
        box(2, 1, 1, [10, 10, -5, 5]),       # negative width
        box(3, 1, 1, [200, 200, 10, 10]),    # entirely outside the 100x80 image
        box(4, 1, 1, [90, 70, 20, 20]),      # partly outside: clipped to [90, 70, 100, 80]
        box(5, 1, 77, [10, 10, 10, 10]),     # unknown category
        box(6, 99, 1, [10, 10, 10, 10]),     # unknown image
        box(7, 2, 1, [1, 1, 10, 10]),
    ])
    (imgs / "3.jpg").unlink()  # missing image file
    with caplog.at_level(logging.INFO, logger="yolo_asff"):
        coco = load_coco(ann, imgs)
    counts = coco.problems.counts
    assert counts["box with zero or negative size (dropped)"] == 2
    assert counts["box outside the image (dropped)"] == 1
    assert counts["box partly outside the image (clipped)"] == 1
    assert counts["annotation with an unknown category_id (skipped)"] == 1
    assert counts["annotation for an unknown image_id (skipped)"] == 1
    assert counts["image file missing (skipped)"] == 1
    assert sorted(r.image_id for r in coco.records) == [1, 2]
    np.testing.assert_allclose(coco.records[0].boxes, [[90, 70, 100, 80]])
    assert "problems found in" in caplog.text and "3.jpg" in caplog.text
    assert "3 images" not in caplog.text and "2 images" in caplog.text


def test_class_name_subset_and_unknown_name(tmp_path):
    ann, imgs = make_coco(tmp_path, [img(1)], [box(1, 1, 1, [10, 10, 20, 20]), box(2, 1, 90, [40, 10, 20, 20])])
    coco = load_coco(ann, imgs, class_names=["toothbrush"])
    assert coco.class_names == ["toothbrush"] and coco.category_ids == [90]
    assert coco.records[0].labels.tolist() == [0] and not coco.problems.counts
    with pytest.raises(DatasetError, match="'zebra'.*person, airplane, toothbrush"):
        load_coco(ann, imgs, class_names=["zebra"])


def test_unusable_datasets_stop_with_the_path(tmp_path):
    with pytest.raises(DatasetError, match="not found: .*nope.json.*data.train.ann_file"):
        load_coco(tmp_path / "nope.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json is not valid JSON"):
        load_coco(bad, tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="no categories"):
        load_coco(other, tmp_path)
    ann, _ = make_coco(tmp_path, [img(1)], [], write_images=False)
    with pytest.raises(DatasetError, match=r"no usable images in .*instances.json with images under .*wrong.*image file missing"):
        load_coco(ann, tmp_path / "wrong")


def test_image_info_file_without_annotations_loads_for_test_dev(tmp_path):
    ann, img_dir = make_coco(tmp_path, [img(1), img(2)], [])
    data = json.loads(ann.read_text())
    del data["annotations"]  # as in COCO's image_info_test-dev2017.json
    ann.write_text(json.dumps(data))
    loaded = load_coco(ann, img_dir)
    assert [r.image_id for r in loaded.records] == [1, 2] and all(len(r.boxes) == 0 for r in loaded.records)
