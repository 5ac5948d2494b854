"""The files a run's plots are written to: evaluation plots, the labels picture, ``results.csv`` and ``results.png``.

Every file is rewritten whole, atomically, each time (a reader never sees half a picture):

- after an evaluation (the trainer's, and ``tools/eval.py``'s beside its ``--json``):
  ``PR_curve.png``, ``F1_curve.png``, ``confusion_matrix.png``,
  ``confusion_matrix_normalized.png`` (see :mod:`.curves` for what they show);
- at the start of training: ``labels.jpg``, the training boxes;
- ``results.csv`` (one row per epoch) after every epoch, and ``results.png`` (its curves) after
  each evaluation (the last epoch always has one), rewritten from the run's whole history, so
  that they are right after a resume too. The picture waits for evaluations because drawing it
  takes about half a second, more than a short epoch.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from ..config import LOSS_TERMS
from ..data.records import ImageRecord
from ..utils.files import atomic_write
from ..utils.plots import (
    confusion_matrix_plot, f1_curve_plot, labels_plot, pr_curve_plot, results_plot, write_picture,
)
from .curves import EvaluationCurves

__all__ = [
    "EVALUATION_PLOTS", "LABELS_PLOT", "RESULTS_CSV", "RESULTS_PLOT", "evaluation_pictures", "label_boxes",
    "results_table", "write_evaluation_plots", "write_labels_plot", "write_results",
]

PathLike = Union[str, os.PathLike]
EVALUATION_PLOTS = ("PR_curve", "F1_curve", "confusion_matrix", "confusion_matrix_normalized")  # .png each
LABELS_PLOT = "labels.jpg"
RESULTS_CSV = "results.csv"
RESULTS_PLOT = "results.png"
_METRICS = ("precision", "recall", "AP50", "AP", "AP75")


def evaluation_pictures(curves: EvaluationCurves) -> Dict[str, np.ndarray]:
    """``{name: BGR picture}`` for :data:`EVALUATION_PLOTS` (the confusion matrices only when it was computed)."""
    names, conf = curves.class_names, curves.best_conf
    pictures = {
        "PR_curve": pr_curve_plot(curves.recall, curves.precision, curves.ap50, names),
        "F1_curve": f1_curve_plot(curves.thresholds, curves.f1_at, names, conf),
    }
    if curves.confusion is not None:
        pictures["confusion_matrix"] = confusion_matrix_plot(curves.confusion, names, False, conf)
        pictures["confusion_matrix_normalized"] = confusion_matrix_plot(curves.confusion, names, True, conf)
    return pictures


def write_evaluation_plots(curves: EvaluationCurves, folder: PathLike) -> Dict[str, np.ndarray]:
    """Write the evaluation plots as ``folder/<name>.png``; returns the pictures (for TensorBoard)."""
    pictures = evaluation_pictures(curves)
    for name, picture in pictures.items():
        write_picture(Path(folder) / f"{name}.png", picture)
    return pictures


def label_boxes(records: Sequence[ImageRecord], use_ignored: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """The training targets of ``records``: labels ``(N,)`` and boxes ``(N, 4)`` ``cx, cy, w, h`` as fractions
    of their picture's width and height (ignored boxes left out unless ``use_ignored``, as in training)."""
    labels, boxes = [np.zeros(0, np.int64)], [np.zeros((0, 4))]
    for r in records:
        xyxy, lab = r.training_targets(use_ignored)
        scale = np.array([r.width, r.height, r.width, r.height], np.float64)
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4) / np.maximum(scale, 1)
        boxes.append(np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1))
        labels.append(np.asarray(lab, np.int64))
    return np.concatenate(labels), np.concatenate(boxes)


def write_labels_plot(records: Sequence[ImageRecord], class_names: Sequence[str], folder: PathLike,
                      use_ignored: bool = False) -> np.ndarray:
    """Write ``folder/labels.jpg`` (instances per class, box centres, box sizes); returns the picture."""
    labels, boxes = label_boxes(records, use_ignored)
    picture = labels_plot(labels, boxes, class_names)
    write_picture(Path(folder) / LABELS_PLOT, picture)
    return picture


# ----------------------------------------------------------------------------- results.csv / results.png


def _terms(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """``total`` then the loss terms that appear in ``rows``, in the loss's order (others after, sorted)."""
    seen = {k for r in rows for k in r if k not in ("epoch", "lr", "total")}
    known = [t for t in LOSS_TERMS if t in seen]
    return ["total", *known, *sorted(seen - set(known))]


def results_table(
    loss_history: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]
) -> Tuple[List[str], List[Dict[str, float]]]:
    """The columns and rows of ``results.csv``: one row per epoch, NaN where an epoch has no value.

    Args:
        loss_history: the trainer's per-epoch records ``{epoch, total, <terms>, lr}`` (mean training loss).
        history: its evaluation records ``{epoch, AP, AP50, AP75, precision, recall, val_loss: {total, <terms>}}``.

    Columns: ``epoch``, ``lr``, ``train/<term>`` (``total`` first), ``val/<term>``, then
    ``metrics/precision``, ``metrics/recall`` (at the best-F1 confidence), ``metrics/AP50``,
    ``metrics/AP``, ``metrics/AP75``.
    """
    train = {int(r["epoch"]): r for r in loss_history}
    # A repeated evaluation of an epoch: the last one. A mid-epoch evaluation (train.time_limit, epoch 1.5)
    # belongs to the epoch it stopped in (2).
    evals = {math.ceil(r["epoch"]): r for r in history}
    val_rows = [r.get("val_loss") or {} for r in history]
    train_terms, val_terms = _terms(list(train.values())), _terms(val_rows) if any(val_rows) else []
    columns = ["epoch", "lr", *(f"train/{t}" for t in train_terms), *(f"val/{t}" for t in val_terms),
               *(f"metrics/{m}" for m in _METRICS)]
    rows = []
    for epoch in sorted(set(train) | set(evals)):
        t, e = train.get(epoch, {}), evals.get(epoch, {})
        v = e.get("val_loss") or {}
        row = {"epoch": float(epoch), "lr": t.get("lr", math.nan)}
        row.update({f"train/{k}": t.get(k, math.nan) for k in train_terms})
        row.update({f"val/{k}": v.get(k, math.nan) for k in val_terms})
        row.update({f"metrics/{m}": e.get(m, math.nan) for m in _METRICS})
        rows.append({k: (math.nan if val is None else float(val)) for k, val in row.items()})
    return columns, rows


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([str(int(row[c])) if c == "epoch" else ("" if not math.isfinite(row[c]) else f"{row[c]:.6g}")
                         for c in columns])
    return out.getvalue()


def _panels(columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> Dict[str, Dict[str, List[float]]]:
    """results.png's small plots: each loss term (training and validation together), lr, then each metric."""
    def series(column: str) -> List[float]:
        return [r[column] for r in rows]

    panels: Dict[str, Dict[str, List[float]]] = {}
    for column in columns:
        kind, _, name = column.partition("/")
        if kind in ("train", "val"):
            panels.setdefault(f"loss {name}", {})[kind] = series(column)
    panels["lr"] = {"lr": series("lr")}
    for m in _METRICS:
        panels[m] = {m: series(f"metrics/{m}")}
    return panels


def write_results(folder: PathLike, loss_history: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]],
                  plot: bool = True) -> Tuple[List[str], List[Dict[str, float]]]:
    """Write ``folder/results.csv`` and (with ``plot``) ``folder/results.png`` from the whole history; returns
    the table."""
    columns, rows = results_table(loss_history, history)
    text = _csv_text(columns, rows)
    atomic_write(Path(folder) / RESULTS_CSV, lambda f: f.write(text.encode("utf-8")))
    if rows and plot:
        write_picture(Path(folder) / RESULTS_PLOT, results_plot([r["epoch"] for r in rows], _panels(columns, rows)))
    return columns, rows
