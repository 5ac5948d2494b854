"""A dataset check without training: what ``tools/check_dataset.py`` prints and the trainer logs at start.

For each split: the readers' start-up summary (images, boxes per class, images without boxes,
every problem counted with examples; :func:`~yolo_asff.data.records.summarize`), then the box
size distribution per class (:func:`box_size_table`). A split that cannot be used (missing files,
no box of the configured classes, a class count that is not ``model.num_classes``) is reported
with what to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from ..config import Config
from .build import load_split
from .records import Annotations, DatasetError, ImageRecord

__all__ = ["SplitCheck", "box_size_table", "check_dataset"]

# COCO's size ranges (pixels²): small < 32², medium < 96², large above.
_SMALL, _MEDIUM = 32**2, 96**2


@dataclass
class SplitCheck:
    """One split checked: its annotations, or the error that makes it unusable."""

    split: str
    annotations: Optional[Annotations] = None
    error: Optional[str] = None

    @property
    def usable(self) -> bool:
        return self.error is None


def _percentiles(values: np.ndarray) -> str:
    lo, mid, hi = np.percentile(values, [5, 50, 95])
    return f"{mid:6.0f} ({lo:.0f}-{hi:.0f})"


def box_size_table(records: Sequence[ImageRecord], class_names: Sequence[str]) -> str:
    """Per class: boxes, images, median width and height in picture pixels (5th-95th percentile),
    median aspect w/h, and the share of COCO small / medium / large boxes. Ignored boxes are left out."""
    keep = [~r.ignore for r in records]
    labels = np.concatenate([r.labels[k] for r, k in zip(records, keep)] + [np.zeros(0, np.int64)])
    boxes = np.concatenate([r.boxes[k] for r, k in zip(records, keep)] + [np.zeros((0, 4), np.float32)])
    image_of = np.concatenate([np.full(int(k.sum()), i) for i, k in enumerate(keep)] + [np.zeros(0, np.int64)])
    sizes = (boxes[:, 2:] - boxes[:, :2]).astype(np.float64)
    rows = [f"{'class':<16} {'boxes':>7} {'images':>7} {'width px (5-95%)':>18} {'height px (5-95%)':>18} "
            f"{'w/h':>5}  small/medium/large"]
    for k, name in enumerate(class_names):
        mine = labels == k
        if not mine.any():
            rows.append(f"{name[:16]:<16} {0:>7} {0:>7}  (no boxes)")
            continue
        wh = sizes[mine]
        area = wh[:, 0] * wh[:, 1]
        shares = [(area < _SMALL).mean(), ((area >= _SMALL) & (area < _MEDIUM)).mean(), (area >= _MEDIUM).mean()]
        rows.append(f"{name[:16]:<16} {len(wh):>7} {len(np.unique(image_of[mine])):>7} "
                    f"{_percentiles(wh[:, 0]):>18} {_percentiles(wh[:, 1]):>18} "
                    f"{np.median(wh[:, 0] / wh[:, 1]):>5.2f}  " + "/".join(f"{100 * s:.0f}%" for s in shares))
    return "\n".join(rows)


def check_dataset(cfg: Config, splits: Sequence[str] = ("train", "val")) -> Dict[str, SplitCheck]:
    """Read each split of ``cfg``'s dataset as training would, and say whether it can be used.

    The readers log their summaries (set up logging to see them); a split's :class:`SplitCheck`
    holds its annotations or the reason it is unusable. Never raises for bad data.
    """
    checks = {}
    for split in splits:
        check = SplitCheck(split)
        try:
            check.annotations = load_split(cfg, split)
        except DatasetError as exc:
            check.error = str(exc)
        else:
            names = check.annotations.class_names
            if len(names) != cfg.model.num_classes:
                check.error = (f"the dataset has {len(names)} classes ({', '.join(names[:10])}) but "
                               f"model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(names)}, "
                               "or data.class_names to the classes to train")
        checks[split] = check
    return checks
