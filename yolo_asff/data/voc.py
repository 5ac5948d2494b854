"""Pascal VOC (``VOCdevkit/VOC2007|VOC2012/{Annotations,JPEGImages,ImageSets/Main}``) → image records.

VOC boxes are 1-based inclusive pixel indices; as continuous 0-based coordinates a
box covering pixels ``xmin..xmax`` spans ``[xmin - 1, xmax]``, which is what we store.

VOC-layout data made by annotation tools (LabelImg, CVAT, Roboflow exports) differs from
VOC's own: pictures that are ``.png`` or ``.JPG``, a ``<filename>`` that names another file or
a path on the annotating machine, ``<size>`` of 0 × 0 or missing, XML in another encoding than
its declaration (or none), split lists with a byte-order mark or file names instead of ids,
class names in another letter case. The reader finds the picture (the XML's ``<filename>``
when it names an existing file, else the id with any extension OpenCV decodes, in any letter
case), settles the size against the picture (:mod:`~yolo_asff.data.frames`), and counts
everything it had to decide.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .frames import exif_habit
from .images import PictureFinder, is_image_name, probe_pictures
from .records import (
    Annotations, DatasetError, ObjectBox, ProblemLog, make_record, read_flag, require_records, summarize,
)

__all__ = ["VOC_CLASSES", "load_voc", "parse_voc_xml", "read_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _text(node: Optional[ET.Element], tag: str) -> Optional[str]:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def read_voc_xml(path: Path) -> Tuple[ET.Element, Optional[str]]:
    """Parse an annotation XML; returns its root and, when it had to be decoded by hand, the encoding used.

    expat reads UTF-8, UTF-16 and Latin-1; files declared (or written) in another encoding
    (GBK, Shift-JIS, cp1252, ...) are decoded with Python's codecs and parsed as text.

    Raises:
        ET.ParseError, OSError: not XML in any encoding tried, or unreadable.
    """
    raw = path.read_bytes()
    try:
        return ET.fromstring(raw), None
    except (ET.ParseError, ValueError) as first:  # expat: "multi-byte encodings are not supported" (GBK, ...)
        declared = _DECLARED_ENCODING.match(raw)
        encodings = ([declared.group(1).decode("ascii")] if declared else []) + ["utf-8-sig", "gb18030", "cp1252"]
        for encoding in encodings:
            try:
                text = raw.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
            text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text.lstrip("\ufeff"), count=1)
            try:
                return ET.fromstring(text), encoding
            except ET.ParseError:
                continue
        raise first if isinstance(first, ET.ParseError) else ET.ParseError(str(first))


def _size(root: ET.Element) -> Optional[Tuple[float, float]]:
    size = root.find("size")
    try:
        width, height = float(_text(size, "width")), float(_text(size, "height"))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


class _ClassMatcher:
    """Class name as written → class index: exact, else the one class that matches ignoring case and spaces."""

    def __init__(self, names: Sequence[str]) -> None:
        self.index = {name: i for i, name in enumerate(names)}
        folded: Dict[str, List[int]] = {}
        for i, name in enumerate(names):
            folded.setdefault(name.strip().lower(), []).append(i)
        self.folded = {k: v[0] for k, v in folded.items() if len(v) == 1}

    def __call__(self, name: Optional[str]) -> Tuple[Optional[int], bool]:
        """(class index or None, whether only a case/space-insensitive match found it)."""
        if name in self.index:
            return self.index[name], False
        i = self.folded.get((name or "").strip().lower())
        return i, i is not None


def parse_voc_xml(path: Path, classes: _ClassMatcher, problems: ProblemLog, labels_seen: Counter):
    """One annotation file → ``(filename, annotated size or None, [ObjectBox])``, or None if unreadable."""
    try:
        root, encoding = read_voc_xml(path)
    except (ET.ParseError, OSError) as exc:
        problems.add("unreadable annotation XML (image skipped)", f"{path.name}: {exc}")
        return None
    if encoding:
        problems.add("annotation XML in an encoding expat cannot read (decoded as shown)",
                     f"{path.name}: {encoding}")
    objects = []
    for obj in root.iter("object"):
        name = _text(obj, "name")
        labels_seen[name or "<no name>"] += 1
        label, folded = classes(name)
        if label is None:
            problems.add("object of a class not in data.class_names (dropped)", f"{path.name}: {name}")
            continue
        if folded:
            problems.add("class name matched ignoring letter case or spaces", f"{path.name}: {name!r}")
        bnd = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(_text(bnd, k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problems.add("object without a numeric bndbox (dropped)", f"{path.name}: {name}")
            continue
        objects.append(ObjectBox(np.array([xmin - 1, ymin - 1, xmax, ymax]), label, read_flag(_text(obj, "difficult")) is True,
                                 where=path.name))
    return _text(root, "filename"), _size(root), objects


def _split_ids(list_file: Path, problems: ProblemLog) -> List[str]:
    """The ids of a split list: first column, byte-order mark and Windows line ends removed, file names as ids."""
    ids = []
    for line in list_file.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        if not line.strip():
            continue
        image_id = line.split()[0]
        stem = Path(image_id).stem
        if is_image_name(image_id) or image_id.lower().endswith(".xml"):
            problems.add("split list names files instead of ids (extension dropped)", f"{list_file.name}: {image_id}")
            image_id = stem
        ids.append(image_id)
    return ids


def load_voc(
    root: Union[str, os.PathLike],
    splits: Sequence[Tuple[Union[int, str], str]],
    class_names: Optional[Sequence[str]] = None,
    keep_empty: bool = True,
    check_files: bool = True,
) -> Annotations:
    """Read and check one or more VOC splits, e.g. ``[(2007, "trainval"), (2012, "trainval")]``.

    ``difficult`` objects are kept with ``ignore=True``: evaluation ignores them as
    the VOC protocol says, and training uses them only when asked to. ``check_files``:
    see :func:`~yolo_asff.data.coco.load_coco`. Records are numbered 0..N-1; category ids are 1..K.

    Raises:
        DatasetError: a split list or folder is missing, or no usable image is left.
    """
    root = Path(root)
    names = list(class_names) if class_names is not None else list(VOC_CLASSES)
    classes = _ClassMatcher(names)
    problems = ProblemLog(str(root))
    labels_seen: Counter = Counter()
    if not splits:
        raise DatasetError("no VOC splits given: set data.train.splits, e.g. [[2007, trainval], [2012, trainval]]")
    found: List[Tuple[Path, str, Optional[Tuple[float, float]], List[ObjectBox]]] = []
    for year, image_set in splits:
        base = root / f"VOC{year}"
        list_file = base / "ImageSets" / "Main" / f"{image_set}.txt"
        if not list_file.is_file():
            raise DatasetError(
                f"VOC split list not found: {list_file}. data.root must be the VOCdevkit folder holding "
                f"VOC{year}/ImageSets/Main/{image_set}.txt"
            )
        xml_finder, pictures = PictureFinder(base / "Annotations"), PictureFinder(base / "JPEGImages")
        ids = _split_ids(list_file, problems)
        if not ids:
            problems.add("empty split list", str(list_file))
        for image_id in ids:
            xml_path = xml_finder.find_file(f"{image_id}.xml")
            if xml_path is None:
                problems.add("annotation file missing (image skipped)", str(base / "Annotations" / f"{image_id}.xml"))
                continue
            parsed = parse_voc_xml(xml_path, classes, problems, labels_seen)
            if parsed is None:
                continue
            filename, size, objects = parsed
            picture = _find_picture(pictures, filename, image_id, check_files, problems)
            if picture is not None:
                found.append((picture, f"VOC{year}/{image_id}", size, objects))
    probes = probe_pictures([f[0] for f in found], [f[2] for f in found], check_files)
    habit = exif_habit([f[2] for f in found], probes)
    records = []
    for (picture, name, size, objects), probe in zip(found, probes):
        record = make_record(len(records), str(picture), name, size, probe, objects, problems, habit)
        if record is not None and (keep_empty or (~record.ignore).any()):
            records.append(record)
    require_records(records, problems, f"the VOC splits {list(splits)} under {root}")
    summarize(records, names, problems, f"VOC {', '.join(f'{y}/{s}' for y, s in splits)}")
    return Annotations(records, names, list(range(1, len(names) + 1)), problems, str(root), labels_seen)


def _find_picture(
    pictures: PictureFinder, filename: Optional[str], image_id: str, check_files: bool, problems: ProblemLog,
) -> Optional[Path]:
    """The picture of ``image_id``: the XML's ``<filename>`` if it exists, else the id with any extension."""
    if not check_files:  # trusted as VOC lays it out: <filename> may be a path on the annotating machine
        return pictures.root / f"{image_id}.jpg"
    lookup = pictures.find(filename, image_id) if filename else pictures.find(None, image_id)
    if lookup.path is None:
        similar = f" (found {', '.join(lookup.found)}, which OpenCV cannot decode)" if lookup.found else ""
        problems.add("image file missing (skipped)", f"{pictures.root / (filename or image_id)}{similar}")
        return None
    if filename and lookup.rule != "exact":
        problems.add("picture found under another name than the XML's <filename> (used)",
                     f"{image_id}: {filename} -> {lookup.path.name}")
    return lookup.path
