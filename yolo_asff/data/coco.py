"""COCO-format annotations (``instances_*.json`` or a user's own file) → image records.

Category ids (COCO's run 1–90 with gaps) map to contiguous class indices in id order,
and back through :attr:`~yolo_asff.data.records.Annotations.category_ids` for evaluation.

Files written by annotation tools, converters and scripts differ from COCO's own; the reader
takes them as they come and says what it did:

- **Ids.** Image, annotation and category ids may be ints, floats (``1.0``), numeric strings
  (``"1"``), other strings (``"train_000001"``), missing (annotations) or repeated
  (annotations). pycocotools assumes ids that compare with the results' ids (its ``loadRes``
  asserts it), annotation ids that are unique (``COCO.createIndex`` keys annotations by id: a
  repeated id loses a box) and non-zero (``COCOeval.evaluateImg`` stores the matched ground
  truth's id and ``accumulate`` counts a match with id 0 as a false positive). So a number and its
  text (``1``, ``"1"``, ``1.0``) are one id; records get int image ids (the file's own when they
  are all ints, else 1..N in file order); annotation ids are not used at all; results files are
  written with the file's own ids (:attr:`~yolo_asff.data.records.Annotations.source_image_ids`).
  Two different images (or categories) with one id, or two categories with one name, cannot be
  told apart: that stops with :class:`~yolo_asff.data.records.DatasetError` naming both entries.
- **Flags and numbers** as text (``"iscrowd": "0"`` would make pycocotools ignore every box:
  it tests the value's truth) are read as numbers; a missing ``area`` is the box's.
- **File names** with another extension or letter case, a path from another machine, or a
  folder prefix are found (:class:`~yolo_asff.data.images.PictureFinder`); **sizes** that are
  missing or disagree with the picture are settled by :mod:`~yolo_asff.data.frames`.
- **Encodings**: UTF-8 with or without a byte-order mark, UTF-16 and UTF-32.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .frames import exif_habit
from .images import PictureFinder, probe_pictures
from .records import (
    Annotations, DatasetError, ObjectBox, ProblemLog, make_record, read_flag, require_records, summarize,
)

__all__ = ["id_key", "load_coco", "read_coco_categories"]

_INT_TEXT = re.compile(r"[+-]?\d+")
_INT64 = 2**63
IdKey = Union[int, str]


def id_key(value: Any) -> Optional[IdKey]:
    """A COCO id in one canonical form: ``1``, ``1.0`` and ``" 1 "`` are ``1``; other text stays text.

    Returns None for what cannot be an id (missing, a bool, a list, NaN, empty text).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return int(text) if _INT_TEXT.fullmatch(text) else text
    return None


def _number(value: Any) -> Optional[float]:
    """A finite float from a number or numeric text, else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _example(entry: Any) -> str:
    return json.dumps(entry, default=str)[:120]


def _read_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise DatasetError(
            f"COCO annotation file not found: {ann_file} (looked for {ann_file.absolute()}). Set data.root, or "
            "data.train.ann_file / data.val.ann_file (relative paths start at data.root)."
        )
    try:
        # json.loads on bytes detects UTF-8 (with or without a byte-order mark), UTF-16 and UTF-32.
        data = json.loads(ann_file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{ann_file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file} is not a COCO instances file: its top level is a {type(data).__name__}, "
                           "not an object with images, annotations and categories")
    missing = [k for k in ("images", "categories") if not isinstance(data.get(k), list)]
    if missing or not isinstance(data.get("annotations", []), list):
        what = ", ".join(missing) if missing else "annotations"
        raise DatasetError(f"{ann_file} is not a COCO instances file: it has no {what} list")
    return data


def _entries_with_ids(data: dict, field: str, what: str, problems: ProblemLog) -> Iterator[Tuple[int, dict, IdKey]]:
    """``(index, entry, canonical id)`` of each entry of ``data[field]`` that has a usable id; the others are
    logged as ``"<what> without a usable id (skipped)"``."""
    for i, entry in enumerate(data[field]):
        key = id_key(entry.get("id")) if isinstance(entry, dict) else None
        if key is None:
            problems.add(f"{what} without a usable id (skipped)", f"{field}[{i}]: {_example(entry)}")
            continue
        yield i, entry, key


class _Categories:
    """The file's categories: canonical id → (name, the id as written), in class order."""

    def __init__(self, data: dict, ann_file: Path, problems: ProblemLog) -> None:
        self.names: Dict[IdKey, str] = {}
        self.written: Dict[IdKey, Any] = {}
        first_index: Dict[IdKey, int] = {}
        by_name: Dict[str, int] = {}
        for i, cat, key in _entries_with_ids(data, "categories", "category", problems):
            name = cat.get("name")
            if not isinstance(name, str) or not name.strip():
                name = str(cat["id"])
                problems.add("category without a name (named by its id)", f"categories[{i}]: {_example(cat)}")
            name = name.strip()
            if key in self.names:
                if self.names[key] != name:
                    j = first_index[key]
                    raise DatasetError(
                        f"{ann_file}: categories[{j}] and categories[{i}] have the same id {cat['id']!r} but different "
                        f"names ({self.names[key]!r}, {name!r}): give each category its own id "
                        f"(key 'categories', e.g. {_example(cat)})")
                problems.add("category listed twice (merged)", f"categories[{i}]: {_example(cat)}")
                continue
            if name in by_name:
                raise DatasetError(
                    f"{ann_file}: categories[{by_name[name]}] and categories[{i}] are both named {name!r} "
                    f"(ids {data['categories'][by_name[name]].get('id')!r}, {cat['id']!r}): merge them into one "
                    "category or rename one (key 'categories')")
            self.names[key], self.written[key], first_index[key], by_name[name] = name, cat["id"], i, i
        if not self.names:
            raise DatasetError(f"{ann_file} defines no categories")
        self._drop_group_categories(data, problems)
        keys = list(self.names)
        self.all_int = all(isinstance(k, int) and -_INT64 <= k < _INT64 for k in keys)
        self.order: List[IdKey] = sorted(keys) if self.all_int else keys

    def _drop_group_categories(self, data: dict, problems: ProblemLog) -> None:
        """Drop a category without annotations that only names the others' supercategory (Roboflow exports
        one as category 0); left in, it becomes a class the model is asked to learn and never sees."""
        used = {id_key(a.get("category_id")) for a in data.get("annotations", []) if isinstance(a, dict)}
        groups = {str(c.get("supercategory", "")).strip() for c in data["categories"] if isinstance(c, dict)}
        for key, name in list(self.names.items()):
            if key not in used and name in groups and len(self.names) > 1:
                problems.add("category that only names the others' supercategory, without boxes (dropped)",
                             f"{name!r} (id {self.written[key]!r})")
                del self.names[key], self.written[key]

    def select(self, class_names: Optional[Sequence[str]], ann_file: Path) -> Dict[IdKey, int]:
        """Canonical category id → contiguous class index (all, in id order; or ``class_names``, in that order)."""
        if class_names is None:
            return {key: i for i, key in enumerate(self.order)}
        by_name = {name: key for key, name in self.names.items()}
        unknown = [n for n in class_names if n not in by_name]
        if unknown:
            raise DatasetError(
                f"data.class_names has {unknown} which {ann_file} does not define; its categories are "
                f"{', '.join(self.names[k] for k in self.order)}"
            )
        return {by_name[name]: i for i, name in enumerate(class_names)}

    def int_id(self, key: IdKey) -> int:
        """The int category id evaluation uses: the file's own when all are ints, else 1..K in file order."""
        return int(key) if self.all_int else self.order.index(key) + 1


def read_coco_categories(ann_file: Union[str, os.PathLike]) -> List[str]:
    """The class names of a COCO file, in class order (what :func:`load_coco` would give), without reading images."""
    path = Path(ann_file)
    categories = _Categories(_read_json(path), path, ProblemLog(str(path)))
    return [categories.names[k] for k in categories.order]


class _Image:
    __slots__ = ("key", "written_id", "file_name", "size", "objects")

    def __init__(self, key: IdKey, written_id: Any, file_name: str, size: Optional[Tuple[float, float]]) -> None:
        self.key, self.written_id, self.file_name, self.size = key, written_id, file_name, size
        self.objects: List[ObjectBox] = []


def _read_images(data: dict, ann_file: Path, problems: ProblemLog) -> Dict[IdKey, _Image]:
    images: Dict[IdKey, _Image] = {}
    first_index: Dict[IdKey, int] = {}
    for i, entry, key in _entries_with_ids(data, "images", "image entry", problems):
        file_name = entry.get("file_name") or entry.get("path")
        if not isinstance(file_name, str) or not file_name.strip():
            problems.add("image entry without a file_name (skipped)", f"images[{i}]: {_example(entry)}")
            continue
        width, height = _number(entry.get("width")), _number(entry.get("height"))
        size = (width, height) if width and height and width > 0 and height > 0 else None
        if key in images:
            if images[key].file_name != file_name:
                raise DatasetError(
                    f"{ann_file}: images[{first_index[key]}] ({images[key].file_name}) and images[{i}] ({file_name}) "
                    f"have the same id {entry['id']!r}: annotations cannot say which picture they belong to. Give "
                    f"each image its own id (key 'images', e.g. {_example(entry)})")
            problems.add("image listed twice (merged)", f"images[{i}]: {_example(entry)}")
            continue
        images[key], first_index[key] = _Image(key, entry["id"], file_name, size), i
    return images


def _read_objects(
    data: dict, images: Dict[IdKey, _Image], categories: _Categories, selected: Dict[IdKey, int],
    problems: ProblemLog, labels_seen: Counter,
) -> None:
    """Attach each usable annotation to its image as an :class:`ObjectBox` (annotation pixels, xyxy)."""
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            problems.add("annotation that is not an object (skipped)", f"annotations[{i}]: {_example(ann)}")
            continue
        where = f"annotation {ann['id']!r}" if "id" in ann else f"annotations[{i}]"
        image = images.get(id_key(ann.get("image_id")))
        if image is None:
            problems.add("annotation for an unknown image_id (skipped)", f"{where}: image_id {ann.get('image_id')!r}")
            continue
        cat = id_key(ann.get("category_id"))
        if cat not in categories.names:
            problems.add("annotation with an unknown category_id (skipped)", f"{where}: {ann.get('category_id')!r}")
            continue
        labels_seen[categories.names[cat]] += 1
        if cat not in selected:
            continue
        bbox = ann.get("bbox")
        values = [_number(v) for v in bbox] if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else None
        if values is None or None in values:
            values = _segment_bbox(ann.get("segmentation"))
            if values is None:
                problems.add("annotation without a 4-number bbox (skipped)", f"{where}: bbox {bbox!r}"[:120])
                continue
            problems.add("annotation without a bbox (taken from its segmentation)", where)
        crowd = read_flag(ann.get("iscrowd"))
        if crowd is None:
            problems.add("iscrowd that is not 0 or 1 (taken as 0)", f"{where}: {ann.get('iscrowd')!r}")
            crowd = False
        area = _number(ann.get("area"))
        if area is None and ann.get("area") is not None:
            problems.add("area that is not a number (used the box's)", f"{where}: {ann.get('area')!r}")
        x, y, w, h = values
        image.objects.append(ObjectBox(np.array([x, y, x + w, y + h]), selected[cat], crowd, area,
                                       f"{image.file_name} {where}"))


def _segment_bbox(segmentation: Any) -> Optional[List[float]]:
    """``[x, y, w, h]`` around a COCO segmentation (polygons, or RLE through pycocotools), else None."""
    if isinstance(segmentation, list) and segmentation:
        try:
            points = np.concatenate([np.asarray(poly, np.float64).reshape(-1, 2) for poly in segmentation])
        except (TypeError, ValueError):
            return None
        if not len(points) or not np.isfinite(points).all():
            return None
        (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
        return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        try:
            from pycocotools import mask as mask_utils

            rle = segmentation
            if isinstance(rle["counts"], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(rle, *rle["size"])
            return [float(v) for v in mask_utils.toBbox(rle)]
        except Exception:  # a malformed RLE: the annotation is skipped and counted
            return None
    return None


def _warn_corner_boxes(images: Dict[IdKey, _Image], problems: ProblemLog) -> None:
    """Count a file whose ``bbox`` look like ``[x1, y1, x2, y2]`` corners rather than ``[x, y, w, h]``.

    A common exporter mistake: as width and height most such boxes reach past the picture, as corners
    they fit it. Only reported (the boxes are read as COCO says), so that the user can fix the exporter.
    """
    suspicious = total = 0
    for image in images.values():
        if image.size is None:
            continue
        w, h = image.size
        for obj in image.objects:
            x, y, x2, y2 = obj.box  # x2 = x + bw as read
            bw, bh = x2 - x, y2 - y
            total += 1
            past = x2 > w + 2 or y2 > h + 2
            as_corners = bw > x and bh > y and bw <= w + 2 and bh <= h + 2
            suspicious += bool(past and as_corners)
    if suspicious >= 5 and suspicious > total / 2:
        problems.add("bbox values look like [x1, y1, x2, y2] corners, not [x, y, width, height] (read as COCO "
                     "says: check the exporter)", f"{suspicious} of {total} boxes reach past their picture")


def _image_int_ids(images: Sequence[_Image]) -> Tuple[List[int], Dict[int, Any]]:
    """Record ids (the file's own ints, else 1..N in file order) and record id → the id as written, where it differs."""
    keys = [im.key for im in images]
    if all(isinstance(k, int) and -_INT64 <= k < _INT64 for k in keys):
        ids = [int(k) for k in keys]
    else:
        ids = list(range(1, len(images) + 1))
    written = {i: im.written_id for i, im in zip(ids, images) if type(im.written_id) is not int or im.written_id != i}
    return ids, written


def load_coco(
    ann_file: Union[str, os.PathLike],
    img_dir: Union[str, os.PathLike],
    class_names: Optional[Sequence[str]] = None,
    keep_empty: bool = True,
    check_files: bool = True,
) -> Annotations:
    """Read and check a COCO instances file.

    Args:
        ann_file: the JSON file.
        img_dir: folder that the images' ``file_name`` are relative to.
        class_names: keep only these categories, in this order (None: all, by id).
        keep_empty: keep images without boxes (they teach background).
        check_files: find each picture and read its header: size checked against the
            annotation, missing or undecodable pictures skipped and counted. False trusts the
            file (pictures are read only where the annotation gives no size).

    Returns:
        :class:`~yolo_asff.data.records.Annotations` with int ``category_ids`` (the file's own
        when they are ints).

    Raises:
        DatasetError: the file is missing or not COCO, two images or categories cannot be told
            apart, or no usable image is left.
    """
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    data = _read_json(ann_file)
    problems = ProblemLog(str(ann_file))
    categories = _Categories(data, ann_file, problems)
    selected = categories.select(class_names, ann_file)
    images = _read_images(data, ann_file, problems)
    labels_seen: Counter = Counter()
    _read_objects(data, images, categories, selected, problems, labels_seen)
    _warn_corner_boxes(images, problems)

    entries = list(images.values())
    finder = PictureFinder(img_dir)
    paths: List[Optional[Path]] = []
    for im in entries:
        if not check_files:
            paths.append(img_dir / im.file_name)
            continue
        lookup = finder.find(im.file_name)
        if lookup.path is None:
            similar = f" (found {', '.join(lookup.found)}, which OpenCV cannot decode)" if lookup.found else ""
            problems.add("image file missing (skipped)", f"{img_dir / im.file_name}{similar}")
        elif lookup.rule != "exact":
            problems.add("picture found under another name (used)", f"{im.file_name} -> {lookup.path.name}")
        paths.append(lookup.path)
    ids, source_image_ids = _image_int_ids(entries)
    found = [(image_id, im, path) for image_id, im, path in zip(ids, entries, paths) if path is not None]
    probes = probe_pictures([path for _, _, path in found], [im.size for _, im, _ in found], check_files)
    habit = exif_habit([im.size for _, im, _ in found], probes)
    records = []
    for (image_id, im, path), probe in zip(found, probes):
        record = make_record(image_id, str(path), im.file_name, im.size, probe, im.objects, problems, habit)
        if record is not None and (keep_empty or (~record.ignore).any()):
            records.append(record)
    require_records(records, problems, f"{ann_file} with images under {img_dir}")
    ordered = sorted(selected, key=selected.get)
    class_list = [categories.names[k] for k in ordered]
    category_ids = [categories.int_id(k) for k in ordered]
    source_category_ids = {i: categories.written[k] for i, k in enumerate(ordered)
                           if type(categories.written[k]) is not int or categories.written[k] != category_ids[i]}
    kept_ids = {r.image_id for r in records}
    summarize(records, class_list, problems, f"COCO {ann_file.name}")
    return Annotations(records, class_list, category_ids, problems, str(ann_file), labels_seen,
                       {k: v for k, v in source_image_ids.items() if k in kept_ids}, source_category_ids,
                       has_ground_truth="annotations" in data)
