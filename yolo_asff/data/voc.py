"""Pascal VOC (``VOCdevkit/VOC2007|VOC2012/{Annotations,JPEGImages,ImageSets/Main}``) → image records.

VOC boxes are 1-based inclusive pixel indices; as continuous 0-based coordinates a
box covering pixels ``xmin..xmax`` spans ``[xmin - 1, xmax]``, which is what we store.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .records import DatasetError, ImageRecord, ProblemLog, check_box, summarize

__all__ = ["VOC_CLASSES", "VocAnnotations", "load_voc", "parse_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass
class VocAnnotations:
    """A set of VOC splits read and checked (see :class:`~yolo_asff.data.coco.CocoAnnotations`)."""

    records: List[ImageRecord]
    class_names: List[str]
    problems: ProblemLog
    root: str


def _text(node: Optional[ET.Element], tag: str) -> Optional[str]:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def parse_voc_xml(path: Path, class_index: dict, problems: ProblemLog):
    """One annotation file → (width, height, boxes, labels, difficult), or None if unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        problems.add("unreadable annotation XML (image skipped)", f"{path.name}: {exc}")
        return None
    size = root.find("size")
    try:
        width, height = int(float(_text(size, "width"))), int(float(_text(size, "height")))
    except (TypeError, ValueError):
        problems.add("annotation without image size (image skipped)", path.name)
        return None
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = _text(obj, "name")
        if name not in class_index:
            problems.add("object of a class not in data.class_names (dropped)", f"{path.name}: {name}")
            continue
        bnd = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(_text(bnd, k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problems.add("object without a numeric bndbox (dropped)", f"{path.name}: {name}")
            continue
        box = check_box(np.array([xmin - 1, ymin - 1, xmax, ymax], np.float32), width, height, path.name, problems)
        if box is None:
            continue
        boxes.append(box)
        labels.append(class_index[name])
        difficult.append(_text(obj, "difficult") == "1")
    return width, height, boxes, labels, difficult


def load_voc(
    root: Union[str, os.PathLike],
    splits: Sequence[Tuple[Union[int, str], str]],
    class_names: Optional[Sequence[str]] = None,
    keep_empty: bool = True,
    check_files: bool = True,
) -> VocAnnotations:
    """Read and check one or more VOC splits, e.g. ``[(2007, "trainval"), (2012, "trainval")]``.

    ``difficult`` objects are kept with ``ignore=True``: evaluation ignores them as
    the VOC protocol says, and training uses them only when asked to.

    Raises:
        DatasetError: a split list or folder is missing, or no usable image is left.
    """
    root = Path(root)
    names = list(class_names) if class_names is not None else list(VOC_CLASSES)
    class_index = {name: i for i, name in enumerate(names)}
    problems = ProblemLog(str(root))
    if not splits:
        raise DatasetError("no VOC splits given: set data.train.splits, e.g. [[2007, trainval], [2012, trainval]]")
    records: List[ImageRecord] = []
    for year, image_set in splits:
        base = root / f"VOC{year}"
        list_file = base / "ImageSets" / "Main" / f"{image_set}.txt"
        if not list_file.is_file():
            raise DatasetError(
                f"VOC split list not found: {list_file}. data.root must be the VOCdevkit folder holding "
                f"VOC{year}/ImageSets/Main/{image_set}.txt"
            )
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            problems.add("empty split list", str(list_file))
        for image_id in ids:
            xml_path = base / "Annotations" / f"{image_id}.xml"
            img_path = base / "JPEGImages" / f"{image_id}.jpg"
            if not xml_path.is_file():
                problems.add("annotation file missing (image skipped)", str(xml_path))
                continue
            if check_files and not img_path.is_file():
                problems.add("image file missing (skipped)", str(img_path))
                continue
            parsed = parse_voc_xml(xml_path, class_index, problems)
            if parsed is None:
                continue
            width, height, boxes, labels, difficult = parsed
            record = ImageRecord(
                image_id=len(records),
                path=str(img_path),
                width=width,
                height=height,
                boxes=np.array(boxes, np.float32).reshape(-1, 4),
                labels=np.array(labels, np.int64),
                ignore=np.array(difficult, bool),
                name=f"VOC{year}/{image_id}",
            )
            if keep_empty or (~record.ignore).any():
                records.append(record)
    if not records:
        detail = f"; problems: {'; '.join(problems.lines())}" if problems.counts else ""
        raise DatasetError(f"no usable images in the VOC splits {list(splits)} under {root}{detail}")
    summarize(records, names, problems, f"VOC {', '.join(f'{y}/{s}' for y, s in splits)}")
    return VocAnnotations(records, names, problems, str(root))
