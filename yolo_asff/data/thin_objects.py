"""A generated dataset of tall thin objects, whose shapes the default (COCO) anchors fit poorly.

Two classes: ``pole`` (a bar with bands and a lamp, 1:8 to 1:20 wide to tall) and ``walker`` (a
figure with a head, body and legs, 1:4 to 1:6), drawn with random fills over the built-in dataset's
textured, cluttered backgrounds (:mod:`yolo_asff.data.builtin`). It shows what fitting anchors
(``yolo-asff anchors``, ``model.anchors: auto``) does, in the tests and the README's measurement::

    python -m yolo_asff.data.thin_objects --out data/thin [--train 400] [--val 100] [--size 256] [--seed 0]

    DIR/annotations/{train,val}.json        COCO instances files
    DIR/images/{train,val}/*.jpg            square pictures of --size pixels

Deterministic by seed. Like the built-in generator it writes only into a folder that is missing or
that it wrote itself (the marker file ``.yolo-asff-thin-objects``).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import numpy as np

from .builtin import _background, _texture, free_spot, generator_parser, run_generator
from .records import DatasetError

__all__ = ["CLASSES", "generate_thin_objects", "render_thin_image"]

CLASSES = ("pole", "walker")
# (narrowest, widest) width in pixels of a 256-pixel picture, and (least, most) height / width
_WIDTH = {"pole": (7, 14), "walker": (10, 36)}
_ASPECT = {"pole": (8.0, 20.0), "walker": (4.0, 6.0)}
MARKER = ".yolo-asff-thin-objects"


def _mask(name: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A ``h``×``w`` uint8 mask of class ``name``, touching all four sides of its box."""
    m = np.zeros((h, w), np.uint8)
    if name == "pole":
        bar = max(2, int(round(w * rng.uniform(0.4, 0.6))))
        x0 = (w - bar) // 2
        m[:, x0:x0 + bar] = 255
        lamp = max(2, int(round(h * 0.06)))
        m[:lamp] = 255  # the lamp: the full width at the top
        for y in range(lamp + int(rng.integers(4, 10)), h, int(rng.integers(10, 24))):
            m[y:y + 2, :] = 255  # bands around the bar
        return m
    head = max(2, int(round(w * 0.55)))
    cv2.ellipse(m, (w // 2, head // 2), (head // 2, head // 2), 0, 0, 360, 255, -1)
    body_top, legs_top = head, int(h * rng.uniform(0.5, 0.6))
    cv2.ellipse(m, (w // 2, (body_top + legs_top) // 2), (w // 2, max(1, (legs_top - body_top) // 2 + 1)),
                0, 0, 360, 255, -1)
    leg = max(1, w // 4)
    m[legs_top:, w // 2 - leg - 1:w // 2 - 1] = 255
    m[legs_top:, w // 2 + 1:w // 2 + leg + 1] = 255
    return m


def render_thin_image(rng: np.random.Generator, size: int = 256, photos: Sequence[np.ndarray] = ()):
    """One ``size``×``size`` picture: ``(image BGR uint8, boxes (N, 4) xyxy float32, labels (N,) int64)``,
    1 to 6 objects that overlap little (box IoU < 0.1)."""
    img = _background(rng, size, size, photos)
    scale = size / 256
    boxes: List[np.ndarray] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(1, 7))):
        cls = int(rng.integers(len(CLASSES)))
        name = CLASSES[cls]
        w = max(4, int(round(rng.uniform(*_WIDTH[name]) * scale)))
        h = min(size - 4, int(round(w * math.exp(rng.uniform(*np.log(_ASPECT[name]))))))  # >= 4 w: w is whole
        box = free_spot(rng, lambda: (w, h), (size, size), boxes, max_iou=0.1)
        if box is None:
            continue
        x, y = int(box[0]), int(box[1])
        alpha = (_mask(name, w, h, rng).astype(np.float32) / 255.0)[..., None]
        region = img[y:y + h, x:x + w].astype(np.float32)
        img[y:y + h, x:x + w] = (region * (1 - alpha) + _texture(rng, h, w) * alpha).astype(np.uint8)
        boxes.append(box)
        labels.append(cls)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def _write_split(out: Path, split: str, count: int, size: int, rng: np.random.Generator, start_id: int) -> None:
    folder = out / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image_id = start_id + i
        name = f"{split}_{image_id:06d}.jpg"
        img, boxes, labels = render_thin_image(rng, size)
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": c + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": n, "supercategory": "thin"} for i, n in enumerate(CLASSES)]
    coco = {"info": {"description": "yolo-asff thin objects"}, "images": images, "annotations": annotations,
            "categories": categories}
    (out / "annotations").mkdir(exist_ok=True)
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))


def generate_thin_objects(out: os.PathLike | str, train: int = 400, val: int = 100, size: int = 256,
                          seed: int = 0) -> Path:
    """Write the thin-object dataset (see the module docstring) and return its folder.

    Raises:
        DatasetError: ``out`` exists, is not empty, and was not written by this generator.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise DatasetError(f"{out} exists and was not written by the thin-object generator (no {MARKER} file): it "
                           "never writes into a folder of yours; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by yolo_asff.data.thin_objects; it may write here again\n")
    for old in ("images", "annotations"):
        shutil.rmtree(out / old, ignore_errors=True)
    rng = np.random.default_rng(seed)
    _write_split(out, "train", train, size, np.random.default_rng(rng.integers(2**32)), start_id=1)
    _write_split(out, "val", val, size, np.random.default_rng(rng.integers(2**32)), start_id=train + 1)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = generator_parser("Generate a dataset of tall thin objects (COCO layout).", "data/thin", 400, 100)
    parser.add_argument("--size", type=int, default=256, help="picture side in pixels")
    args = parser.parse_args(argv)
    run_generator(lambda: generate_thin_objects(args.out, args.train, args.val, args.size, args.seed),
                  f"thin objects: {args.train} train + {args.val} val pictures of {args.size} px in {args.out}")


if __name__ == "__main__":
    main()
