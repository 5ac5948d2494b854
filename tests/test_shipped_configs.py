"""Every config shipped in configs/ loads, validates and builds; the VOC config reads the VOC layout."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.data import build_dataset
from yolo_asff.data.voc import VOC_CLASSES
from yolo_asff.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts)


def test_configs_are_found():
    names = {str(p.relative_to(CONFIGS)) for p in SHIPPED}
    assert {"yolov3_asff_coco.yaml", "yolov3_asff_voc.yaml", "builtin.yaml", "official/yolov3_asff_coco.yaml",
            "official/yolov3_asff_star_coco.yaml", "official/yolov3_baseline_coco.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS).with_suffix("")))
def test_config_loads_and_builds(path):
    # Width 0.125 keeps every model small; the architecture, class count and options are the config's.
    cfg = load_config(path, ["model.width=0.125"])
    if cfg.data.format == "voc":
        assert cfg.data.train.splits and cfg.data.val.splits, "a VOC config needs train and val splits"
    else:
        assert cfg.data.train.ann_file and cfg.data.val.ann_file, "a COCO config needs annotation files"
    model = build_model(cfg).eval()
    with torch.no_grad():
        det = model(torch.zeros(1, 3, 64, 64))
    assert det.shape[0] == 1 and det.shape[-1] == 5 + cfg.model.num_classes


def test_voc_config_has_20_classes_and_voc_splits():
    cfg = load_config(CONFIGS / "yolov3_asff_voc.yaml")
    assert cfg.model.arch == "yolov3_asff" and cfg.model.fusion
    assert cfg.model.num_classes == 20 == len(VOC_CLASSES)
    assert cfg.data.format == "voc" and cfg.data.root == "data/VOCdevkit"
    assert cfg.data.train.splits == [[2007, "trainval"], [2012, "trainval"]]
    assert cfg.data.val.splits == [[2007, "test"]]
    # the paper's freebies, on a shorter schedule than COCO's 300 epochs
    t = cfg.train
    assert t.mixup and t.label_smooth and t.scheduler == "cosine" and cfg.data.multiscale_range
    assert t.epochs < 300
    assert t.warmup_epochs < t.cosine_start_epoch < t.cosine_end_epoch <= t.epochs
    assert t.no_mixup_epochs < t.epochs and t.fixed_size_epochs < t.epochs


def _voc_split(root: Path, year: int, image_set: str, image_id: str) -> None:
    base = root / f"VOC{year}"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(base / "JPEGImages" / f"{image_id}.jpg"), np.zeros((40, 60, 3), np.uint8))
    (base / "Annotations" / f"{image_id}.xml").write_text(
        "<annotation><size><width>60</width><height>40</height></size><object><name>dog</name>"
        "<difficult>0</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox>"
        "</object></annotation>"
    )
    (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text(image_id + "\n")


def test_voc_config_reads_the_devkit_layout(tmp_path):
    """The layout scripts/download_voc.sh writes (and data/README.md describes) is what the config reads."""
    _voc_split(tmp_path, 2007, "trainval", "000005")
    _voc_split(tmp_path, 2007, "test", "000001")
    _voc_split(tmp_path, 2012, "trainval", "2008_000001")
    cfg = load_config(CONFIGS / "yolov3_asff_voc.yaml", [f"data.root={tmp_path}"])
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 2 and len(val) == 1
    assert list(train.class_names) == list(VOC_CLASSES)
