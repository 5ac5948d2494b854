"""Helpers of the engine tests: a shapes dataset and a short training config, an oracle model for the evaluator."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from tests.conftest import IMAGES, REPO

TRAIN = REPO / "tools" / "train.py"


def write_shapes_dataset(root: Path, images: int = 4, size: int = 128, seed: int = 0) -> Path:
    """A COCO dataset of big, easy shapes: red squares (class 'square', id 3) and green discs ('disc', id 7)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    anns, infos = [], []
    half = size // 2
    for i in range(images):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        for k in range(2):  # one shape in the top-left quarter, one in the bottom-right: never overlapping
            cls = (i + k) % 2
            side = int(rng.integers(28, 48))
            x = k * half + int(rng.integers(0, half - side))
            y = k * half + int(rng.integers(0, half - side))
            if cls == 0:
                cv2.rectangle(img, (x, y), (x + side - 1, y + side - 1), (0, 0, 230), -1)
            else:
                cv2.circle(img, (x + side // 2, y + side // 2), side // 2, (0, 220, 0), -1)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": [3, 7][cls], "bbox": [x, y, side, side],
                         "area": side * side, "iscrowd": 0})
        name = f"{i:03d}.png"
        cv2.imwrite(str(root / "images" / name), img)
        infos.append({"id": i, "file_name": name, "width": size, "height": size})
    data = {"images": infos, "annotations": anns,
            "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]}
    (root / "train.json").write_text(json.dumps(data))
    return root


def write_config(tmp: Path, data_root: Path, **train) -> Path:
    """tmp/cfg.yaml: a short run (2 epochs, width-0.125 ASFF, 128 px, batches of 2) on the COCO set at
    ``data_root``; ``train`` overrides keys of the train section."""
    opts = {"epochs": 2, "batch_size": 2, "nominal_batch_size": 2, "ref_batch_size": 2, "lr": 0.01,
            "warmup_epochs": 0.5, "cosine_start_epoch": 1, "cosine_end_epoch": 100, "mixup": False,
            "eval_interval": 1000, "save_interval": 1, "fixed_size_epochs": 0, **train}
    train_yaml = ", ".join(f"{k}: {json.dumps(v)}" for k, v in opts.items())
    text = f"""
_base_: {REPO / 'configs' / '_base_' / 'models' / 'yolov3_asff.yaml'}
model: {{num_classes: 2, width: 0.125}}
data:
  format: coco
  root: {data_root}
  train: {{ann_file: train.json, img_dir: images}}
  val: {{ann_file: train.json, img_dir: images}}
  img_size: 128
  multiscale_range: [96, 128]
  multiscale_interval: 1
  num_workers: 0
  aug: {{expand_prob: 0.3, crop_prob: 0.3, affine_prob: 0.3}}
test: {{img_size: 128, batch_size: 4}}
train: {{{train_yaml}}}
runtime: {{log_interval: 1, deterministic: true}}
"""
    path = tmp / "cfg.yaml"
    path.write_text(text)
    return path


class OracleModel(nn.Module):
    """Eval output ``(B, N, 5 + C)``: each image's non-ignored ground truth, in input pixels, shifted by ``shift``."""

    def __init__(self, dataset, grey_of_image: dict, mean, std, shift: float = 0.0, slots: int = 8):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # the evaluator reads the device from the parameters
        self.mean, self.std, self.shift, self.slots = mean[0], std[0], shift, slots
        self.num_classes = len(dataset.class_names)
        self.table = {}
        for i in range(len(dataset)):
            item, record = dataset[i], dataset.records[i]
            keep = ~record.ignore
            self.table[grey_of_image[item["image_id"]]] = (item["boxes"][keep], item["labels"][keep])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        out = torch.zeros(b, self.slots, 5 + self.num_classes)
        for k in range(b):
            grey = round(float((images[k, 0, h // 2, w // 2] * self.std + self.mean) * 255))
            boxes, labels = self.table[grey]
            n = len(boxes)
            out[k, :n, :4] = torch.from_numpy(boxes) + torch.tensor([self.shift, 0, self.shift, 0])
            out[k, :n, 4] = 1.0
            out[k, torch.arange(n), 5 + torch.from_numpy(labels)] = torch.linspace(0.9, 0.8, n)
        return out


def oracle_for(cfg, dataset, shift=0.0, images=IMAGES):
    return OracleModel(dataset, {i: v[2] for i, v in images.items()}, cfg.data.mean, cfg.data.std, shift)


def write_tiny_voc(root: Path) -> dict:
    """VOCdevkit/VOC2007 test split: 2 images, one difficult object. Returns {image index: grey}."""
    base = root / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True, exist_ok=True)
    items = {"000001": (120, 90, 40, [("dog", (11, 11, 60, 50), 0), ("cat", (70, 20, 110, 80), 1)]),
             "000002": (80, 80, 170, [("cat", (5, 5, 40, 44), 0)])}
    for name, (w, h, grey, objects) in items.items():
        cv2.imwrite(str(base / "JPEGImages" / f"{name}.jpg"), np.full((h, w, 3), grey, np.uint8))
        xml = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                      f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height></size>{xml}</annotation>")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    return {0: 40, 1: 170}
