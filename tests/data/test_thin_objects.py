"""The thin-object dataset generator: tall thin boxes of two classes, COCO layout, deterministic, and it never
writes into a folder of the user's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from yolo_asff.data.records import DatasetError
from yolo_asff.data.thin_objects import CLASSES, generate_thin_objects


def test_boxes_are_tall_thin_and_of_both_classes(tmp_path):
    out = generate_thin_objects(tmp_path / "thin", train=8, val=2, size=256, seed=3)
    coco = json.loads((out / "annotations" / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES) and len(coco["images"]) == 8
    wh = np.array([a["bbox"][2:] for a in coco["annotations"]])
    assert len(wh) >= 8 and (wh[:, 1] >= 4 * wh[:, 0]).all()  # 1:4 and thinner
    labels = {a["category_id"] for a in coco["annotations"]}
    assert labels == {1, 2}
    assert all((out / "images" / "train" / i["file_name"]).is_file() for i in coco["images"])
    assert len(json.loads((out / "annotations" / "val.json").read_text())["images"]) == 2


def test_the_same_seed_gives_the_same_data_and_a_folder_of_yours_is_refused(tmp_path):
    a = generate_thin_objects(tmp_path / "a", train=3, val=1, seed=5)
    b = generate_thin_objects(tmp_path / "b", train=3, val=1, seed=5)
    assert (a / "annotations" / "train.json").read_text() == (b / "annotations" / "train.json").read_text()
    generate_thin_objects(a, train=2, val=1, seed=6)  # its own folder: written again
    assert len(json.loads((a / "annotations" / "train.json").read_text())["images"]) == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="never writes into a folder of yours"):
        generate_thin_objects(mine, train=1, val=1)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
