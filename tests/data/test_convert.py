"""Converters between COCO, VOC and YOLO txt: round trips keep every box (within 0.5 px) and class, and the
same detections score the same AP on the built-in validation split in all three forms."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from yolo_asff import load_config
from yolo_asff.data import DatasetError, build_dataset, load_split
from yolo_asff.data.builtin import CLASSES, generate_builtin
from yolo_asff.data.convert import convert_dataset, voc_box
from yolo_asff.engine.evaluator import Evaluator

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("coco", "voc", "yolo")


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return generate_builtin(tmp_path_factory.mktemp("forms") / "data", train=6, val=10, seed=4)


def form_opts(root: Path, form: str):
    """Config overrides that read the built-in dataset at ``root`` in one of its three forms."""
    base = [f"data.root={root}", "data.builtin=false", "data.num_workers=0", "test.metric=coco", "test.img_size=256"]
    if form == "voc":
        return base + [f"data.root={root / 'VOCdevkit'}", "data.format=voc", "data.train.splits=[[builtin, train]]",
                       "data.val.splits=[[builtin, val]]", f"data.class_names=[{', '.join(CLASSES)}]"]
    if form == "yolo":
        return base + ["data.format=yolo", f"data.yolo_file={root / 'data.yaml'}"]
    return base


def by_picture(records):
    return {Path(r.path).stem: r for r in records}


def assert_same_boxes(before, after):
    assert set(before) == set(after)
    for stem, r in before.items():
        s = after[stem]
        order_r, order_s = np.lexsort(r.boxes.T[::-1]), np.lexsort(s.boxes.T[::-1])
        np.testing.assert_allclose(s.boxes[order_s], r.boxes[order_r], atol=0.5, err_msg=stem)
        assert s.labels[order_s].tolist() == r.labels[order_r].tolist(), stem
        assert (s.width, s.height) == (r.width, r.height)


@pytest.mark.parametrize("source, target", list(itertools.permutations(FORMATS, 2)))
def test_round_trip_keeps_every_box_and_class(builtin, tmp_path, source, target):
    cfg = load_config(REPO / "configs" / "builtin.yaml", form_opts(builtin, source))
    there = convert_dataset(cfg, target, tmp_path / target)
    assert there.images == {"train": 6, "val": 10} and there.reencoded == 0
    assert load_config(there.config).runtime.name == target  # runs/<output folder>: converted runs do not collide
    back = convert_dataset(load_config(there.config), source, tmp_path / "back")
    for split in ("train", "val"):
        original = by_picture(load_split(cfg, split).records)
        assert_same_boxes(original, by_picture(load_split(load_config(there.config), split).records))
        assert_same_boxes(original, by_picture(load_split(load_config(back.config), split).records))
    assert load_split(load_config(back.config), "val").class_names == list(CLASSES)


def test_the_same_detections_score_the_same_in_every_form(builtin, make_oracle):
    scores = {}
    oracle = None
    for form in FORMATS:
        cfg = load_config(REPO / "configs" / "builtin.yaml", form_opts(builtin, form))
        dataset = build_dataset(cfg, "val")
        oracle = oracle or make_oracle(dataset, cfg.data.mean, cfg.data.std)
        scores[form] = Evaluator(cfg, dataset).evaluate(oracle, progress=False)
    assert 0.2 < scores["coco"]["AP"] < 0.9
    for form in ("voc", "yolo"):
        for key in ("AP", "AP50", "AP75"):
            assert scores[form][key] == pytest.approx(scores["coco"][key], abs=5e-4), (form, key)


def test_voc_boxes_are_whole_one_based_pixels_and_an_existing_folder_is_refused(builtin, tmp_path):
    assert voc_box(np.array([0.0, 9.6, 50.2, 40.0])) == (1, 11, 50, 40)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    cfg = load_config(REPO / "configs" / "builtin.yaml", form_opts(builtin, "coco"))
    with pytest.raises(DatasetError, match="exists"):
        convert_dataset(cfg, "yolo", tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_pictures_sharing_a_stem_keep_their_own_boxes_and_the_class_order_is_kept(tmp_path):
    import json

    import cv2

    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "a.png", "b.jpg"):
        cv2.imwrite(str(tmp_path / "images" / name), np.zeros((50, 60, 3), np.uint8))
    data = {"images": [{"id": i + 1, "file_name": n, "width": 60, "height": 50}
                       for i, n in enumerate(("a.jpg", "a.png", "b.jpg"))],
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [1, 1, 20, 20]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [30, 20, 25, 25]},
                            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 10, 10]}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    cfg = load_config(REPO / "configs" / "builtin.yaml", [
        f"data.root={tmp_path}", "data.builtin=false", "data.train.ann_file=ann.json", "data.train.img_dir=images",
        "data.val.ann_file=ann.json", "data.val.img_dir=images", "data.class_names=[dog, person]",
        "model.num_classes=2"])
    source = {(Path(r.path).name, tuple(r.labels)) for r in load_split(cfg, "val").records}
    for target in FORMATS:
        report = convert_dataset(cfg, target, tmp_path / f"out_{target}")
        converted = load_split(load_config(report.config), "val")
        assert converted.class_names == ["dog", "person"], target
        boxes = sorted((tuple(r.labels), tuple(r.boxes[0].round())) for r in converted.records)
        assert boxes == [((0,), (1, 1, 21, 21)), ((1,), (5, 5, 15, 15)), ((1,), (30, 20, 55, 45))], target
        assert len(source) == 3 and len(converted.records) == 3
