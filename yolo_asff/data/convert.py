"""Write a dataset that any of our readers can read in another format: COCO JSON, a VOC tree, or YOLO txt.

:func:`convert_dataset` reads both splits of a config's dataset through the same readers training
uses (so everything they fix, such as ids, sizes and file names, is fixed in the output too) and
writes them as:

- ``coco``: ``OUT/annotations/{train,val}.json``, ``OUT/images/{train,val}/``; category ids as
  the dataset has them (a COCO file's own, 1..K from VOC, 0..K-1 from YOLO txt), boxes
  ``[x, y, w, h]`` in pixels, crowd or difficult boxes as ``iscrowd: 1``;
- ``voc``: ``OUT/VOCdevkit/VOCdata/{Annotations,JPEGImages,ImageSets/Main/{train,val}.txt}``,
  boxes as VOC's 1-based inclusive pixel indices (rounded to whole pixels: within 0.5 px),
  crowd boxes as ``difficult``;
- ``yolo``: ``OUT/data.yaml``, ``OUT/images/{train,val}/``, ``OUT/labels/{train,val}/*.txt`` with
  ``class cx cy w h`` normalised to [0, 1] (6 decimals); YOLO txt has no ignore flag, so crowd or
  difficult boxes are left out and counted.

Pictures are hard-linked (copied across file systems, or always with ``copy=True``). A picture
whose boxes are in its stored frame while OpenCV would turn it by its EXIF orientation is written
as a PNG of the pixels as used, without EXIF, so that no reader can turn it the wrong way.
``OUT/config.yaml`` is the config with its data section pointed at the result. The output folder
must not exist: this never writes into a folder it did not create.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union
from xml.sax.saxutils import escape

import cv2
import numpy as np
import yaml

from ..config import Config, dump_config
from ..errors import OutputError
from ..utils.files import check_writable, link_or_copy, make_dir
from .build import load_split
from .dataset import read_picture
from .records import Annotations, DatasetError, ImageRecord
from .yolo import label_lines

__all__ = ["FORMATS", "ConversionReport", "convert_dataset", "voc_box"]

FORMATS = ("coco", "voc", "yolo")
VOC_YEAR = "data"  # the converted tree is VOCdevkit/VOCdata
SPLITS = ("train", "val")


@dataclass
class ConversionReport:
    """What :func:`convert_dataset` wrote: per split images and boxes, and what it had to change."""

    out: Path
    config: Path
    images: Dict[str, int] = field(default_factory=dict)
    boxes: Dict[str, int] = field(default_factory=dict)
    dropped_ignored: Dict[str, int] = field(default_factory=dict)
    reencoded: int = 0
    copied: int = 0

    def lines(self) -> List[str]:
        out = [f"{split}: {self.images[split]} images, {self.boxes[split]} boxes"
               + (f" ({self.dropped_ignored[split]} crowd/difficult boxes left out: YOLO txt has no ignore flag)"
                  if self.dropped_ignored.get(split) else "") for split in self.images]
        if self.reencoded:
            out.append(f"{self.reencoded} EXIF-rotated pictures written as PNG in the frame their boxes are in")
        if self.copied:
            out.append(f"{self.copied} pictures copied (hard links not possible)")
        return out


def voc_box(box_xyxy: np.ndarray) -> Tuple[int, int, int, int]:
    """A continuous 0-based box as VOC's 1-based inclusive pixel indices ``xmin, ymin, xmax, ymax``."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    xmin, ymin = int(round(x1)) + 1, int(round(y1)) + 1
    return xmin, ymin, max(xmin, int(round(x2))), max(ymin, int(round(y2)))


def _safe_stem(name: str) -> str:
    """A file stem usable as a VOC id and a file name: no folders, no whitespace."""
    return re.sub(r"\s+", "_", Path(name.replace("\\", "/")).stem) or "image"


class _PictureWriter:
    """Puts each picture under a name whose stem is unique in the whole output (VOC ids, label files and
    JPEGImages are named by stem), hard-linked, copied or re-encoded."""

    def __init__(self, copy_files: bool, report: ConversionReport) -> None:
        self.copy_files, self.report = copy_files, report
        self.taken: set = set()

    def name_for(self, record: ImageRecord, split: str) -> str:
        suffix = ".png" if record.ignore_orientation else Path(record.path).suffix.lower()
        stem = base = _safe_stem(record.path)
        n = 1
        while stem.lower() in self.taken:
            n += 1
            stem = f"{base}_{n}"
        self.taken.add(stem.lower())
        return f"{stem}{suffix}"

    def write(self, record: ImageRecord, dst: Path) -> None:
        make_dir(dst.parent)
        if record.ignore_orientation:
            image = read_picture(record)
            if image is None or not cv2.imwrite(str(dst), image):
                raise OutputError(f"cannot re-encode {record.path} to {dst}")
            self.report.reencoded += 1
            return
        if link_or_copy(record.path, dst, copy=self.copy_files) and not self.copy_files:
            self.report.copied += 1


def _coco_split(ann: Annotations, split: str, out: Path, pictures: _PictureWriter, report: ConversionReport) -> None:
    images, annotations = [], []
    for record in ann.records:
        name = pictures.name_for(record, split)
        pictures.write(record, out / "images" / split / name)
        images.append({"id": int(record.image_id), "file_name": name, "width": int(record.width),
                       "height": int(record.height)})
        _, areas = record.scoring_boxes()
        for box, label, ignore, area in zip(record.boxes.tolist(), record.labels.tolist(), record.ignore.tolist(),
                                            areas.tolist()):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": int(record.image_id),
                                "category_id": int(ann.category_ids[label]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": float(area), "iscrowd": int(ignore)})
    categories = [{"id": int(i), "name": n} for i, n in zip(ann.category_ids, ann.class_names)]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    text = json.dumps({"images": images, "annotations": annotations, "categories": categories}, allow_nan=False)
    (out / "annotations" / f"{split}.json").write_text(text, encoding="utf-8")
    report.images[split], report.boxes[split] = len(images), len(annotations)


def _voc_xml(name: str, record: ImageRecord, class_names: Sequence[str]) -> str:
    objects = "".join(
        f"  <object><name>{escape(class_names[label])}</name><difficult>{int(ignore)}</difficult><bndbox>"
        "<xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>\n".format(*voc_box(box))
        for box, label, ignore in zip(record.boxes, record.labels.tolist(), record.ignore.tolist())
    )
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n  <filename>{escape(name)}</filename>\n'
            f"  <size><width>{record.width}</width><height>{record.height}</height><depth>3</depth></size>\n"
            f"{objects}</annotation>\n")


def _voc_split(ann: Annotations, split: str, out: Path, pictures: _PictureWriter, report: ConversionReport) -> None:
    base = out / "VOCdevkit" / f"VOC{VOC_YEAR}"
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    ids, boxes = [], 0
    for record in ann.records:
        name = pictures.name_for(record, split)
        pictures.write(record, base / "JPEGImages" / name)
        image_id = Path(name).stem
        (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(name, record, ann.class_names),
                                                               encoding="utf-8")
        ids.append(image_id)
        boxes += len(record.labels)
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    report.images[split], report.boxes[split] = len(ids), boxes


def _yolo_lines(record: ImageRecord) -> Tuple[str, int]:
    keep = ~record.ignore
    return label_lines(record.boxes[keep], record.labels[keep].tolist(), record.width, record.height), \
        int((~keep).sum())


def _yolo_split(ann: Annotations, split: str, out: Path, pictures: _PictureWriter, report: ConversionReport) -> None:
    boxes = dropped = 0
    for record in ann.records:
        name = pictures.name_for(record, split)
        pictures.write(record, out / "images" / split / name)
        text, left_out = _yolo_lines(record)
        label_file = out / "labels" / split / f"{Path(name).stem}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text(text, encoding="utf-8")
        boxes += len(record.labels) - left_out
        dropped += left_out
    report.images[split], report.boxes[split], report.dropped_ignored[split] = len(ann.records), boxes, dropped


def _data_section(cfg: Config, to: str, out: Path, class_names: Sequence[str]) -> None:
    """Point ``cfg.data`` at the converted dataset in ``out``."""
    d = cfg.data
    d.format, d.builtin, d.root = to, False, str(out)
    if to == "coco":  # class_names keep the class order (the file lists categories by id)
        d.train.ann_file, d.train.img_dir = "annotations/train.json", "images/train"
        d.val.ann_file, d.val.img_dir = "annotations/val.json", "images/val"
        d.train.splits, d.val.splits, d.yolo_file = [], [], ""
        d.class_names = list(class_names)
    elif to == "voc":
        d.root = str(out / "VOCdevkit")
        d.train.splits, d.val.splits = [[VOC_YEAR, "train"]], [[VOC_YEAR, "val"]]
        d.class_names, d.yolo_file = list(class_names), ""
    else:
        d.yolo_file, d.class_names = str(out / "data.yaml"), None


def convert_dataset(cfg: Config, to: str, out: Union[str, os.PathLike], copy_files: bool = False) -> ConversionReport:
    """Read both splits of ``cfg``'s dataset and write them in format ``to`` under ``out`` (see the module docstring).

    Raises:
        DatasetError: ``to`` is not a format, ``out`` exists, or a split cannot be read.
    """
    if to not in FORMATS:
        raise DatasetError(f"unknown format {to!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise DatasetError(f"{out} exists: give --out a folder that does not exist yet (nothing is written into "
                           "an existing folder)")
    check_writable(out, "--out folder", folder=True)
    source = copy.deepcopy(cfg)
    source.data.keep_empty_images = True  # background pictures are part of the dataset
    splits = {split: load_split(source, split) for split in SPLITS}
    class_names = splits["train"].class_names
    if splits["val"].class_names != class_names:
        raise DatasetError(f"the train and val splits have different classes ({class_names} vs "
                           f"{splits['val'].class_names}); set data.class_names")
    make_dir(out, "--out folder")
    report = ConversionReport(out, out / "config.yaml")
    pictures = _PictureWriter(copy_files, report)
    writer = {"coco": _coco_split, "voc": _voc_split, "yolo": _yolo_split}[to]
    for split, ann in splits.items():
        writer(ann, split, out, pictures, report)
    if to == "yolo":
        (out / "data.yaml").write_text(yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "names": list(class_names)},
            sort_keys=False, allow_unicode=True), encoding="utf-8")
    result = copy.deepcopy(cfg)
    _data_section(result, to, out.resolve(), class_names)
    result.runtime.name = out.resolve().name  # runs/<output folder>, not runs/config
    dump_config(result, report.config)
    return report
