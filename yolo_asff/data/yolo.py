"""The YOLO txt format (Darknet, ultralytics and annotation-tool exports) → image records.

A data YAML names the splits and the classes::

    path: /data/mydata          # dataset root; relative: to this YAML's folder (default: that folder)
    train: images/train         # a folder, a list of folders, or a .txt list of pictures
    val: images/val
    names: [cat, dog]           # or {0: cat, 1: dog}

Each picture ``.../images/.../NAME.jpg`` has its labels in ``.../labels/.../NAME.txt`` (the
last ``images`` folder of the path replaced by ``labels``; a picture with no ``images`` folder
in its path has them beside it), one object per line: ``class cx cy w h``, the centre and size
normalised by the picture's width and height to [0, 1]. A picture without a label file, or with
an empty one, is background. Lines with another column count, an unknown class index,
coordinates outside [0, 1] beyond rounding, or repeated lines are dropped and counted with file
and line number; a segment polygon (``class x1 y1 x2 y2 ...``) is used as its bounding box.
Category ids are the class indices (0..K-1), as ultralytics writes COCO results for such data.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from .images import is_image_name, probe_images
from .records import Annotations, DatasetError, ObjectBox, ProblemLog, make_record, require_records, summarize

__all__ = [
    "ROUNDING", "YoloDataset", "label_lines", "label_path", "load_yolo", "read_labels", "read_yolo_yaml", "split_images",
]

ROUNDING = 1e-3  # how far outside [0, 1] a normalised coordinate may be and still count as rounding
PathLike = Union[str, os.PathLike]


@dataclass
class YoloDataset:
    """A data YAML read and checked: the dataset root, each split's sources, and the class names."""

    yaml_file: Path
    root: Path
    splits: Dict[str, List[Path]]
    names: List[str]


def _names(value, yaml_file: Path) -> List[str]:
    if isinstance(value, list) and value and all(isinstance(n, (str, int, float)) for n in value):
        return [str(n).strip() for n in value]
    if isinstance(value, dict) and value:
        try:
            by_index = {int(k): str(v).strip() for k, v in value.items()}
        except (TypeError, ValueError):
            by_index = {}
        if by_index and sorted(by_index) == list(range(len(by_index))):
            return [by_index[i] for i in range(len(by_index))]
        raise DatasetError(f"{yaml_file}: 'names' must map the class indices 0..N-1 to names, each once; "
                           f"got keys {sorted(map(str, value))[:10]}")
    raise DatasetError(f"{yaml_file}: 'names' must be a list of class names or a mapping {{0: name, ...}}, "
                       f"got {value!r}"[:300])


def _resolve_root(data: dict, yaml_file: Path) -> Path:
    text = data.get("path")
    if text in (None, ""):
        return yaml_file.parent
    given = Path(str(text)).expanduser()
    if given.is_absolute():
        root = given
    else:
        root = yaml_file.parent / given
        if not root.is_dir() and given.is_dir():  # ultralytics-style paths relative to where one runs
            root = given.resolve()
    if not root.is_dir():
        raise DatasetError(f"{yaml_file}: 'path' {text!r} is not a folder (looked for {root}); it is the dataset "
                           "root, absolute or relative to the YAML file's folder")
    return root


def read_yolo_yaml(yaml_file: PathLike) -> YoloDataset:
    """Read a data YAML (``path``, ``train``, ``val``, ``names``; ``nc`` checked if present).

    Raises:
        DatasetError: the file is missing or not YAML, ``names`` is missing or malformed, or a
            split is missing or names nothing that exists.
    """
    yaml_file = Path(yaml_file)
    if yaml_file.is_dir():  # the dataset's folder: its data.yaml, as ultralytics exports lay it out
        if not (yaml_file / "data.yaml").is_file():
            raise DatasetError(f"data.yolo_file {yaml_file} is a folder without a data.yaml: set data.yolo_file to the "
                               "dataset's YAML file (with path, train, val and names)")
        yaml_file = yaml_file / "data.yaml"
    if not yaml_file.is_file():
        raise DatasetError(f"YOLO data file not found: {yaml_file}. Set data.yolo_file (relative paths start at "
                           "data.root) to the dataset's YAML with path, train, val and names")
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{yaml_file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_file}: expected a mapping with path, train, val and names")
    if "names" not in data:
        raise DatasetError(f"{yaml_file} has no 'names' (the class names, in class-index order)")
    names = _names(data["names"], yaml_file)
    if "nc" in data and data["nc"] != len(names):
        raise DatasetError(f"{yaml_file}: nc is {data['nc']} but 'names' has {len(names)} names")
    root = _resolve_root(data, yaml_file)
    splits = {split: [_split_path(str(e), root) for e in (data[split] if isinstance(data[split], list)
                                                          else [data[split]])]
              for split in ("train", "val") if data.get(split)}
    return YoloDataset(yaml_file, root, splits, names)


def _split_path(entry: str, root: Path) -> Path:
    """A split entry as a path: absolute, or under the dataset root. Roboflow writes ``../train/images`` for a
    YAML that sits in the root; ultralytics then tries the path without the ``../``, and so do we."""
    path = Path(entry)
    if path.is_absolute():
        return path
    if not (root / path).exists() and entry.startswith("../") and (root / entry[3:]).exists():
        return root / entry[3:]
    return root / path


def _list_file_images(list_file: Path, root: Path, problems: ProblemLog) -> List[Path]:
    """The pictures a .txt list names: absolute, or relative to the list's folder, else to the dataset root."""
    images = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        path = Path(text)
        if not path.is_absolute():
            near, under_root = list_file.parent / text, root / text
            path = near if near.exists() or not under_root.exists() else under_root
        if not path.is_file():
            problems.add("image file missing (skipped)", f"{list_file.name}:{number}: {text}")
            continue
        images.append(path)
    return images


def split_images(sources: Sequence[Path], root: Path, problems: ProblemLog) -> List[Path]:
    """Every picture of a split: folders searched recursively (sorted), .txt lists read in order (their
    relative entries against the list's folder, else ``root``)."""
    images: List[Path] = []
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.is_file() and is_image_name(p.name))
            if not found:
                problems.add("folder without pictures", str(source))
            images += found
        elif source.is_file() and source.suffix.lower() == ".txt":
            images += _list_file_images(source, root, problems)
        elif source.is_file() and is_image_name(source.name):
            images.append(source)
        else:
            raise DatasetError(f"split source not found: {source} (a folder of pictures or a .txt list of them)")
    seen, unique = set(), []
    for path in images:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            problems.add("picture listed twice (used once)", str(path))
            continue
        seen.add(key)
        unique.append(path)
    return unique


def label_path(image: Path) -> Path:
    """The label file of a picture: the last ``images`` folder of its path replaced by ``labels``, ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def label_lines(boxes_xyxy: np.ndarray, labels: Sequence[int], width: float, height: float) -> str:
    """YOLO txt lines ``class cx cy w h`` (6 decimals) for ``(N, 4)`` pixel boxes of a ``width`` × ``height`` picture."""
    scale = np.array([width, height, width, height], np.float64)
    lines = []
    for (x1, y1, x2, y2), label in zip(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4) / scale, labels):
        lines.append(f"{int(label)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n")
    return "".join(lines)


def _parse_line(values: List[float], num_classes: int) -> Tuple[Optional[str], Optional[np.ndarray], bool]:
    """(problem or None, normalised xyxy box or None, whether it was a polygon) for one label line."""
    cls = values[0]
    coords = np.array(values[1:], np.float64)
    polygon = len(coords) > 4
    if len(coords) < 4 or (polygon and (len(coords) % 2 or len(coords) < 6)):
        return f"line with {len(values)} columns, not 5 (class cx cy w h) (dropped)", None, False
    if not float(cls).is_integer() or not 0 <= cls < num_classes:
        return "unknown class index (dropped)", None, polygon
    if (coords < -ROUNDING).any() or (coords > 1 + ROUNDING).any():
        pixels = (coords > 1 + ROUNDING).all()
        hint = "; pixel coordinates? YOLO labels are normalised to [0, 1]" if pixels else ""
        return f"coordinates outside [0, 1] (dropped{hint})", None, polygon
    if polygon:
        xs, ys = coords[0::2], coords[1::2]
        return None, np.array([xs.min(), ys.min(), xs.max(), ys.max()]), True
    cx, cy, w, h = coords
    return None, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), False


def read_labels(
    path: Path, width: int, height: int, label_map: Dict[int, int], num_classes: int, problems: ProblemLog,
    labels_seen: Counter, names: Sequence[str],
) -> List[ObjectBox]:
    """The objects of one label file in pixels of a ``width`` × ``height`` picture (classes through ``label_map``)."""
    objects: List[ObjectBox] = []
    seen_lines = set()
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    scale = np.array([width, height, width, height], np.float64)
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path.name}:{number}"
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            problems.add("line that is not numbers (dropped)", f"{where}: {line.strip()[:60]}")
            continue
        key = tuple(values)
        if key in seen_lines:
            problems.add("repeated line (dropped)", where)
            continue
        seen_lines.add(key)
        problem, box, polygon = _parse_line(values, num_classes)
        if 0 <= values[0] < num_classes and float(values[0]).is_integer():
            labels_seen[names[int(values[0])]] += 1
        else:
            labels_seen[f"index {values[0]:g}"] += 1
        if problem:
            problems.add(problem, f"{where}: {line.strip()[:60]}")
            continue
        if polygon:
            problems.add("segment polygon (used its bounding box)", where)
        if int(values[0]) in label_map:
            objects.append(ObjectBox(box * scale, label_map[int(values[0])], where=where))
    return objects


def load_yolo(
    yaml_file: PathLike,
    split: str,
    class_names: Optional[Sequence[str]] = None,
    keep_empty: bool = True,
) -> Annotations:
    """Read and check one split (``train`` or ``val``) of a YOLO txt dataset.

    Args:
        yaml_file: the data YAML (see the module docstring).
        split: ``train`` or ``val``.
        class_names: keep only these classes, in this order (None: all of ``names``).
        keep_empty: keep pictures without boxes.

    Every picture's header is read (the labels are normalised: the size is needed). Records
    are numbered 1..N; ``source_image_ids`` gives each picture's stem (its relative path when
    stems repeat), as results files name them.

    Raises:
        DatasetError: the YAML or a split is missing or malformed, a class name is unknown, or
            no usable picture is left.
    """
    dataset = read_yolo_yaml(yaml_file)
    if split not in dataset.splits:
        raise DatasetError(f"{dataset.yaml_file} has no '{split}' split (a folder, list of folders or .txt list)")
    names = dataset.names
    if class_names is not None:
        unknown = [n for n in class_names if n not in names]
        if unknown:
            raise DatasetError(f"data.class_names has {unknown} which {dataset.yaml_file} does not name; its names "
                               f"are {', '.join(names)}")
        label_map = {names.index(n): i for i, n in enumerate(class_names)}
        kept_names = list(class_names)
    else:
        label_map, kept_names = {i: i for i in range(len(names))}, list(names)
    problems = ProblemLog(str(dataset.yaml_file))
    labels_seen: Counter = Counter()
    images = split_images(dataset.splits[split], dataset.root, problems)
    probes = probe_images(images)
    records = []
    for path, probe in zip(images, probes):
        labels = label_path(path)
        objects: List[ObjectBox] = []
        if probe.error is None and labels.is_file():
            objects = read_labels(labels, probe.width, probe.height, label_map, len(names), problems, labels_seen,
                                  names)
        elif probe.error is None:
            problems.add("picture without a label file (background)", str(labels))
        size = (probe.width, probe.height) if probe.error is None else None
        record = make_record(len(records) + 1, str(path), _short(path, dataset.root), size, probe, objects, problems)
        if record is not None and (keep_empty or (~record.ignore).any()):
            records.append(record)
    require_records(records, problems, f"the '{split}' split of {dataset.yaml_file}")
    summarize(records, kept_names, problems, f"YOLO {dataset.yaml_file.name} {split}")
    return Annotations(records, kept_names, list(range(len(kept_names))), problems, str(dataset.yaml_file),
                       labels_seen, _source_ids(records, dataset.root))


def _short(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _source_ids(records, root: Path) -> Dict[int, object]:
    """Record id → the picture's stem (an int when it is digits), or its relative path when stems repeat."""
    ids = [_number_or_text(Path(r.path).stem) for r in records]
    if len(set(ids)) == len(ids):
        return {r.image_id: i for r, i in zip(records, ids)}
    return {r.image_id: str(Path(_short(Path(r.path), root)).with_suffix("")) for r in records}


def _number_or_text(stem: str):
    """``"000123"`` stays text (it is not the number's own spelling); ``"123"`` becomes 123."""
    return int(stem) if stem.isascii() and stem.isdigit() and str(int(stem)) == stem else stem
