"""The YOLO txt reader on generated datasets in the real layout, with the malformed lines exporters write."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_asff.data import DatasetError, load_yolo
from yolo_asff.data.yolo import label_path, read_yolo_yaml


def draw(path, w=200, h=100, boxes=()):
    """A dark picture with red rectangles at the given pixel boxes (x1, y1, x2, y2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 20, np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[y1:y2, x1:x2] = (0, 0, 230)
    assert cv2.imwrite(str(path), img)


def yolo_line(cls, box, w=200, h=100):
    x1, y1, x2, y2 = box
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "shapes"
    box = (20, 10, 60, 50)
    draw(root / "images" / "train" / "a.jpg", boxes=[box])
    draw(root / "images" / "train" / "sub" / "b.png", boxes=[box])  # folders are searched recursively
    draw(root / "images" / "train" / "background.jpg")
    draw(root / "images" / "val" / "c.jpg", boxes=[box])
    labels = root / "labels"
    (labels / "train" / "sub").mkdir(parents=True)
    (labels / "val").mkdir(parents=True)
    (labels / "train" / "a.txt").write_bytes(("\ufeff" + "\r\n".join([
        yolo_line(0, box),
        yolo_line(0, box),                            # the same line twice
        "1 0.5 0.5 0.2",                              # four columns
        "1 0.5 0.5 0.2 0.2 0.97",                     # six: a saved prediction with its confidence
        "7 0.5 0.5 0.2 0.2",                          # no class 7
        "1 100 50 40 40",                             # pixels, not normalised
        "1 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5",          # a segment polygon: used as its bounding box
        "x 0.5 0.5 0.2 0.2",                          # not numbers
        "",
    ]) + "\r\n").encode())
    (labels / "train" / "sub" / "b.txt").write_text(yolo_line(1, box) + "\n")
    (labels / "val" / "c.txt").write_text(yolo_line(0, box) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: [images/val]\nnames: {0: circle, '1': square}\n")
    return root


def test_layout_classes_and_every_malformed_line_counted_with_file_and_line(dataset):
    train = load_yolo(dataset / "data.yaml", "train")
    assert train.class_names == ["circle", "square"] and train.category_ids == [0, 1]
    assert [r.name for r in train.records] == ["images/train/a.jpg", "images/train/background.jpg",
                                               "images/train/sub/b.png"]
    a, background, b = train.records
    np.testing.assert_allclose(a.boxes, [[20, 10, 60, 50], [20, 10, 60, 50]], atol=1e-3)  # the box, the polygon
    assert a.labels.tolist() == [0, 1] and len(background.boxes) == 0 and b.labels.tolist() == [1]
    counts, examples = train.problems.counts, train.problems.examples
    assert counts["repeated line (dropped)"] == 1 and examples["repeated line (dropped)"] == ["a.txt:2"]
    assert counts["line with 4 columns, not 5 (class cx cy w h) (dropped)"] == 1
    assert counts["line with 6 columns, not 5 (class cx cy w h) (dropped)"] == 1
    assert counts["unknown class index (dropped)"] == 1 and "a.txt:5" in examples["unknown class index (dropped)"][0]
    pixels = next(k for k in counts if k.startswith("coordinates outside [0, 1]"))
    assert "pixel coordinates?" in pixels and "a.txt:6" in examples[pixels][0]
    assert counts["segment polygon (used its bounding box)"] == 1
    assert counts["line that is not numbers (dropped)"] == 1
    assert counts["picture without a label file (background)"] == 1
    val = load_yolo(dataset / "data.yaml", "val")
    assert [r.name for r in val.records] == ["images/val/c.jpg"] and not val.problems.counts
    image = cv2.imread(val.records[0].path)
    (x1, y1, x2, y2), = val.records[0].boxes.round().astype(int)
    assert image[y1:y2, x1:x2, 2].mean() > 200 and image[:, :x1, 2].mean() < 40  # on the red square


def test_a_txt_list_of_pictures_and_a_yaml_elsewhere(dataset, tmp_path):
    (dataset / "train.txt").write_text("./images/train/a.jpg\nimages/val/c.jpg\nimages/train/none.jpg\n")
    other = tmp_path / "configs"
    other.mkdir()
    (other / "data.yaml").write_text(f"path: {dataset}\ntrain: train.txt\nval: images/val\nnc: 2\nnames: [c, s]\n")
    train = load_yolo(other / "data.yaml", "train")
    assert [r.name for r in train.records] == ["images/train/a.jpg", "images/val/c.jpg"]
    assert train.problems.counts["image file missing (skipped)"] == 1
    assert train.source_image_ids == {1: "a", 2: "c"}


def test_the_dataset_folder_stands_for_its_data_yaml(dataset, tmp_path):
    by_folder, by_file = load_yolo(dataset, "val"), load_yolo(dataset / "data.yaml", "val")
    assert [r.name for r in by_folder.records] == [r.name for r in by_file.records] == ["images/val/c.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is a folder without a data.yaml"):
        load_yolo(tmp_path / "empty", "train")


@pytest.mark.parametrize("text, message", [
    ("train: images/train\nval: images/val\n", "has no 'names'"),
    ("train: images/train\nnames: [a]\nnc: 3\n", "nc is 3 but 'names' has 1"),
    ("train: images/train\nnames: {0: a, 2: b}\n", "must map the class indices 0..N-1"),
    ("path: nowhere\ntrain: images/train\nnames: [a]\n", "'path' 'nowhere' is not a folder"),
    ("[1, 2\n", "not valid YAML"),
])
def test_a_bad_data_yaml_stops_with_the_reason(tmp_path, text, message):
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_yolo(tmp_path / "data.yaml", "train")


def test_label_paths_mirror_the_last_images_folder(tmp_path):
    assert label_path(tmp_path / "images" / "x" / "images" / "a.b.jpg") == tmp_path / "images" / "x" / "labels" / "a.b.txt"
    assert label_path(tmp_path / "pics" / "a.png") == tmp_path / "pics" / "a.txt"
    with pytest.raises(DatasetError, match="no 'val' split"):
        (tmp_path / "d.yaml").write_text("train: .\nnames: [a]\n")
        load_yolo(tmp_path / "d.yaml", "val")
    assert read_yolo_yaml(tmp_path / "d.yaml").root == tmp_path


def test_result_ids_stay_unique_and_odd_stems_are_text(tmp_path):
    for name in ("0001.jpg", "1.jpg", "².jpg"):
        draw(tmp_path / "images" / "val" / name)
    (tmp_path / "data.yaml").write_text("train: images/val\nval: images/val\nnames: [a]\n")
    ids = load_yolo(tmp_path / "data.yaml", "val").source_image_ids
    assert sorted(map(str, ids.values())) == ["0001", "1", "²"] and 1 in ids.values()


def test_a_roboflow_export_with_parent_relative_splits(tmp_path):
    """Roboflow writes train: ../train/images beside the splits; ultralytics then drops the ../, and so do we."""
    draw(tmp_path / "train" / "images" / "a.jpg", boxes=[(20, 10, 60, 50)])
    draw(tmp_path / "valid" / "images" / "b.jpg", boxes=[(20, 10, 60, 50)])
    for split, name in (("train", "a"), ("valid", "b")):
        (tmp_path / split / "labels").mkdir()
        (tmp_path / split / "labels" / f"{name}.txt").write_text(yolo_line(0, (20, 10, 60, 50)) + "\n")
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    assert [r.name for r in load_yolo(tmp_path / "data.yaml", "val").records] == ["valid/images/b.jpg"]
    assert len(load_yolo(tmp_path / "data.yaml", "train").records[0].boxes) == 1
