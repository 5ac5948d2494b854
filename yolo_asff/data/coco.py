"""COCO-format annotations (``instances_*.json`` or a user's own file) → image records.

Category ids (COCO's run 1–90 with gaps) map to contiguous class indices in id
order, and back through :attr:`CocoAnnotations.category_ids` for evaluation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .records import DatasetError, ImageRecord, ProblemLog, check_box, summarize

__all__ = ["CocoAnnotations", "load_coco"]


@dataclass
class CocoAnnotations:
    """A COCO annotation file read and checked.

    Attributes:
        records: one per usable image.
        class_names: contiguous class index → name.
        category_ids: contiguous class index → the file's category id.
        problems: what was wrong in the file, counted.
        ann_file: the file read.
    """

    records: List[ImageRecord]
    class_names: List[str]
    category_ids: List[int]
    problems: ProblemLog
    ann_file: str


def _read_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise DatasetError(
            f"COCO annotation file not found: {ann_file}. Set data.train.ann_file / data.val.ann_file "
            "(relative paths start at data.root)."
        )
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{ann_file} is not valid JSON: {exc}") from exc
    missing = [k for k in ("images", "categories") if not isinstance(data.get(k), list)]
    if missing or not isinstance(data.get("annotations", []), list):
        what = ", ".join(missing) if missing else "annotations"
        raise DatasetError(f"{ann_file} is not a COCO instances file: it has no {what} list")
    # An image-info file (COCO test-dev) has no annotations: images to predict on, nothing to score.
    data.setdefault("annotations", [])
    return data


def _select_categories(data: dict, ann_file: Path, class_names: Optional[Sequence[str]]) -> Dict[int, int]:
    """Category id → contiguous index, in id order (or in the order of ``class_names``)."""
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if not categories:
        raise DatasetError(f"{ann_file} defines no categories")
    by_name = {c["name"]: c["id"] for c in categories}
    if class_names is None:
        return {c["id"]: i for i, c in enumerate(categories)}
    unknown = [n for n in class_names if n not in by_name]
    if unknown:
        raise DatasetError(
            f"data.class_names has {unknown} which {ann_file} does not define; its categories are "
            f"{', '.join(by_name)}"
        )
    return {by_name[name]: i for i, name in enumerate(class_names)}


def load_coco(
    ann_file: os.PathLike | str,
    img_dir: os.PathLike | str,
    class_names: Optional[Sequence[str]] = None,
    keep_empty: bool = True,
    check_files: bool = True,
) -> CocoAnnotations:
    """Read and check a COCO instances file.

    Args:
        ann_file: the JSON file.
        img_dir: folder that the images' ``file_name`` are relative to.
        class_names: keep only these categories, in this order (None: all, by id).
        keep_empty: keep images without boxes (they teach background).
        check_files: drop (and count) images whose file does not exist.

    Raises:
        DatasetError: the file is missing or not COCO, or no usable image is left.
    """
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    data = _read_json(ann_file)
    problems = ProblemLog(str(ann_file))
    cat_to_index = _select_categories(data, ann_file, class_names)
    names = {c["id"]: c["name"] for c in data["categories"]}
    ordered_ids = sorted(cat_to_index, key=cat_to_index.get)

    images: Dict[int, dict] = {}
    for img in data["images"]:
        if not all(k in img for k in ("id", "file_name", "width", "height")):
            problems.add("image entry without id/file_name/width/height (skipped)", str(img)[:80])
            continue
        images[img["id"]] = img
    boxes: Dict[int, List[np.ndarray]] = {i: [] for i in images}
    labels: Dict[int, List[int]] = {i: [] for i in images}
    crowd: Dict[int, List[bool]] = {i: [] for i in images}
    for ann in data["annotations"]:
        img = images.get(ann.get("image_id"))
        if img is None:
            problems.add("annotation for an unknown image_id (skipped)", f"annotation {ann.get('id')}")
            continue
        cat = ann.get("category_id")
        if cat not in cat_to_index:
            if class_names is None or cat not in names:
                problems.add("annotation with an unknown category_id (skipped)", f"annotation {ann.get('id')}: {cat}")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            problems.add("annotation without a 4-number bbox (skipped)", f"annotation {ann.get('id')}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = check_box(np.array([x, y, x + w, y + h], np.float32), img["width"], img["height"],
                        f"{img['file_name']} annotation {ann.get('id')}", problems)
        if box is None:
            continue
        boxes[img["id"]].append(box)
        labels[img["id"]].append(cat_to_index[cat])
        crowd[img["id"]].append(bool(ann.get("iscrowd", 0)))

    records = []
    for image_id, img in images.items():
        path = img_dir / img["file_name"]
        if check_files and not path.is_file():
            problems.add("image file missing (skipped)", str(path))
            continue
        record = ImageRecord(
            image_id=int(image_id),
            path=str(path),
            width=int(img["width"]),
            height=int(img["height"]),
            boxes=np.array(boxes[image_id], np.float32).reshape(-1, 4),
            labels=np.array(labels[image_id], np.int64),
            ignore=np.array(crowd[image_id], bool),
            name=img["file_name"],
        )
        if not keep_empty and not (~record.ignore).any():
            continue
        records.append(record)
    if not records:
        detail = f"; problems: {'; '.join(problems.lines())}" if problems.counts else ""
        raise DatasetError(f"no usable images in {ann_file} with images under {img_dir}{detail}")
    class_list = [names[i] for i in ordered_ids]
    summarize(records, class_list, problems, f"COCO {ann_file.name}")
    return CocoAnnotations(records, class_list, ordered_ids, problems, str(ann_file))
