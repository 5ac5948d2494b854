"""VOC trees as annotation tools write them: pictures that are not .jpg, <filename> that names something
else, sizes of 0 × 0, XML in other encodings, split lists with a byte-order mark or file names, class
names in another letter case. Every box must land on its drawn object."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_asff import load_config
from yolo_asff.data import DatasetError, build_dataset, load_voc

CLASSES = ["cat", "dog"]
RED, BLUE = (0, 0, 230), (230, 0, 0)  # BGR: cats are red, dogs blue


def xml(filename, size, objects, encoding="utf-8", declare=True):
    """``objects``: (name, (xmin, ymin, xmax, ymax) 1-based inclusive)."""
    w, h = size
    body = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    name = f"<filename>{filename}</filename>" if filename is not None else ""
    head = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declare else ""
    return (head + f"<annotation>{name}<folder>狗和猫</folder><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{body}</annotation>").encode(encoding)


def picture(path, w, h, boxes):
    """A dark picture with each (colour, (xmin, ymin, xmax, ymax) 1-based) drawn."""
    img = np.full((h, w, 3), 20, np.uint8)
    for colour, (x1, y1, x2, y2) in boxes:
        img[y1 - 1:y2, x1 - 1:x2] = colour
    assert cv2.imwrite(str(path), img)


@pytest.fixture
def messy_voc(tmp_path):
    """VOC2007/trainval made by hand and by tools: (id -> file name on disk, object colour)."""
    base = tmp_path / "VOCdevkit" / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    cat, dog = ("cat", (11, 21, 40, 50)), ("dog", (61, 11, 90, 40))
    items = {
        # id: (picture on disk, XML bytes)
        "000001": ("000001.png", xml("000001.jpg", (120, 80), [cat])),             # a PNG; XML says .jpg
        "000002": ("000002.JPG", xml(None, (120, 80), [dog])),                     # upper-case, no <filename>
        "000003": ("photo 3.jpeg", xml("photo 3.jpeg", (120, 80), [cat, dog])),   # <filename> names the file
        "000004": ("000004.jpg", xml("000004.jpg", (0, 0), [cat])),               # 0 x 0 size
        "000005": ("000005.png", xml("C:\\labelImg\\000005.jpg", (120, 80), [("Dog", dog[1])])),  # path, case
        "000006": ("000006.jpg", xml("000006.jpg", (120, 80), [cat], encoding="gbk")),  # GBK, declared
        "000007": ("000007.jpg", xml("000007.jpg", (120, 80), [dog], encoding="gbk", declare=False)),  # GBK bytes
    }
    colours = {"cat": RED, "dog": BLUE}
    for image_id, (name, data) in items.items():
        objs = {"000001": [cat], "000002": [dog], "000003": [cat, dog], "000004": [cat], "000005": [dog],
                "000006": [cat], "000007": [dog]}[image_id]
        picture(base / "JPEGImages" / name, 120, 80, [(colours[n], b) for n, b in objs])
        (base / "Annotations" / f"{image_id}.xml").write_bytes(data)
    (base / "JPEGImages" / "000008.jpg.bak").write_bytes(b"an old copy")
    (base / "Annotations" / "000008.xml").write_bytes(xml("000008.jpg", (120, 80), [cat]))
    # a list with a byte-order mark, Windows line ends, one file name instead of an id, and a missing picture
    ids = ["000001", "000002", "000003.jpeg", "000004", "000005", "000006", "000007", "000008"]
    (base / "ImageSets" / "Main" / "trainval.txt").write_bytes(("\ufeff" + "\r\n".join(ids) + "\r\n").encode())
    (base / "Annotations" / "000003.xml").rename(base / "Annotations" / "000003.XML")
    return tmp_path / "VOCdevkit"


def test_every_picture_is_found_and_every_box_lands_on_its_object(messy_voc):
    voc = load_voc(messy_voc, [(2007, "trainval")], CLASSES)
    names = [r.name for r in voc.records]
    assert names == [f"VOC2007/00000{i}" for i in range(1, 8)]
    counts, examples = voc.problems.counts, voc.problems.examples
    assert counts["image file missing (skipped)"] == 1
    assert "000008.jpg.bak" in examples["image file missing (skipped)"][0]  # says what it found instead
    assert counts["no image size in the annotation (used the picture's)"] == 1
    assert counts["class name matched ignoring letter case or spaces"] == 1
    assert counts["picture found under another name than the XML's <filename> (used)"] == 2  # 000001, 000005
    assert counts["split list names files instead of ids (extension dropped)"] == 1
    assert not any("unreadable" in k for k in counts)
    colours = {0: 2, 1: 0}  # the BGR channel each class is drawn in
    for record in voc.records:
        image = cv2.imread(record.path)
        assert (record.width, record.height) == (120, 80)
        for (x1, y1, x2, y2), label in zip(record.boxes.astype(int), record.labels):
            inside = image[y1 + 1:y2 - 1, x1 + 1:x2 - 1].reshape(-1, 3).astype(int)
            assert inside[:, colours[label]].mean() > 200, (record.name, label)


def test_class_names_that_match_nothing_stop_and_list_what_the_files_use(messy_voc, tmp_path):
    cfg = load_config("configs/yolov3_asff_voc.yaml", [
        f"data.root={messy_voc}", "data.train.splits=[[2007, trainval]]", "data.val.splits=[[2007, trainval]]",
        "data.class_names=[bird, horse]", "model.num_classes=2"])
    with pytest.raises(DatasetError, match=r"no usable box of the configured classes \(bird, horse\).*"
                                           r"use: (cat|dog) \(\d\), (cat|dog) \(\d\)") as info:
        build_dataset(cfg, "train")
    assert "data.class_names" in str(info.value)
