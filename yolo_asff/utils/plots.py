"""The run's plots as pictures: precision-recall and F1 curves, confusion matrix, labels, training curves.

Drawn with matplotlib's object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no window, no global backend change for a notebook that imports us. Each
function returns a BGR ``uint8`` picture of a fixed size in pixels (the ``*_SIZE`` constants,
``(width, height)``), for a PNG in the run folder and a TensorBoard image alike.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence, Tuple, Union

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import atomic_write

__all__ = [
    "CONFUSION_SIZE", "CURVE_SIZE", "LABELS_SIZE", "RESULTS_CELL", "RESULTS_COLUMNS", "confusion_matrix_plot",
    "f1_curve_plot", "labels_plot", "pr_curve_plot", "results_plot", "results_size", "write_picture",
]

_DPI = 100
CURVE_SIZE = (900, 600)  # pixels, (width, height)
CONFUSION_SIZE = (1000, 800)
LABELS_SIZE = (1500, 500)
RESULTS_CELL = (300, 250)  # one small plot of results.png
RESULTS_COLUMNS = 5
_LEGEND_MAX = 20  # more classes than this: grey lines, no per-class legend (it would hide the plot)
_ANNOTATE_MAX = 30  # more classes than this: no numbers in the confusion matrix cells


def _figure(size: Tuple[int, int]) -> Figure:
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _picture(fig: Figure) -> np.ndarray:
    """The figure rendered: ``(H, W, 3)`` BGR uint8 of exactly its size in pixels."""
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., 2::-1])


def write_picture(path: Union[str, os.PathLike], image_bgr: np.ndarray) -> None:
    """Write a BGR picture as PNG or JPEG (by the suffix), atomically (see :func:`~.files.atomic_write`).

    Raises:
        ValueError: OpenCV cannot encode that suffix.
    """
    suffix = os.path.splitext(str(path))[1].lower() or ".png"
    try:
        ok, data = cv2.imencode(suffix, image_bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode a picture as {suffix} for {path}")
    atomic_write(path, lambda f: f.write(data.tobytes()))


def _class_lines(ax, x: np.ndarray, ys: np.ndarray, names: Sequence[str], labels: Sequence[str]) -> None:
    """One thin line per class (NaN rows skipped): coloured with a legend when few, grey when many."""
    few = len(names) <= _LEGEND_MAX
    for y, label in zip(ys, labels):
        if np.isnan(y).all():
            continue
        ax.plot(x, y, linewidth=1, label=label if few else None, color=None if few else "grey", alpha=1 if few else 0.4)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")


def pr_curve_plot(recall: np.ndarray, precision: np.ndarray, ap50: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Precision against recall at IoU 0.5, per class and the mean over classes (bold).

    Args:
        recall: ``(R,)`` recall points.
        precision: ``(K, R)`` interpolated precision per class (NaN rows: no ground truth).
        ap50: ``(K,)`` each row's area (NaN: no ground truth).
    """
    fig = _figure(CURVE_SIZE)
    ax = fig.add_subplot()
    _class_lines(ax, recall, precision, names, [f"{n} {a:.3f}" for n, a in zip(names, ap50)])
    valid = ~np.isnan(ap50)
    if valid.any():
        ax.plot(recall, precision[valid].mean(axis=0), linewidth=3, color="blue",
                label=f"all classes {ap50[valid].mean():.3f} AP50")
    _finish(ax, "recall", "precision", "precision-recall at IoU 0.5 (COCO interpolation)")
    fig.subplots_adjust(left=0.08, right=0.72, bottom=0.1, top=0.93)
    return _picture(fig)


def f1_curve_plot(thresholds: np.ndarray, f1: np.ndarray, names: Sequence[str], best_conf: float) -> np.ndarray:
    """F1 against the confidence threshold, per class and the mean (bold) with its best threshold marked.

    Args:
        thresholds: ``(T,)`` confidence thresholds.
        f1: ``(K, T)`` F1 per class (NaN rows: no ground truth).
        best_conf: the threshold of the highest mean F1.
    """
    fig = _figure(CURVE_SIZE)
    ax = fig.add_subplot()
    _class_lines(ax, thresholds, f1, names, list(names))
    valid = ~np.isnan(f1).all(axis=1)
    if valid.any():
        mean = f1[valid].mean(axis=0)
        best = int(np.argmin(np.abs(thresholds - best_conf)))
        ax.plot(thresholds, mean, linewidth=3, color="blue", label=f"all classes {mean[best]:.2f} at {best_conf:.3f}")
        ax.axvline(best_conf, color="red", linestyle="--", linewidth=1)
        ax.plot([best_conf], [mean[best]], "o", color="red")
    _finish(ax, "confidence", "F1", "F1 against confidence (IoU 0.5)")
    fig.subplots_adjust(left=0.08, right=0.72, bottom=0.1, top=0.93)
    return _picture(fig)


def confusion_matrix_plot(counts: np.ndarray, names: Sequence[str], normalize: bool, conf: float) -> np.ndarray:
    """A confusion matrix as a heat map: rows the true class, columns the predicted one, background last.

    Args:
        counts: ``(K + 1, K + 1)`` counts.
        normalize: divide each row by its sum (a row without counts stays 0).
        conf: the confidence threshold the detections were kept at (in the title).
    """
    counts = np.asarray(counts, np.float64)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    labels = [*names, "background"]
    fig = _figure(CONFUSION_SIZE)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if len(labels) <= _ANNOTATE_MAX + 1:
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
        top = values.max() if values.size else 0
        for (i, j), v in np.ndenumerate(values):
            if v:
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center", fontsize="small",
                        color="white" if v > 0.5 * top else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "row-normalised" if normalize else "counts"
    ax.set_title(f"confusion matrix ({what}; IoU 0.5, confidence >= {conf:.3f})")
    fig.subplots_adjust(left=0.15, right=0.95, bottom=0.18, top=0.94)
    return _picture(fig)


def labels_plot(labels: np.ndarray, boxes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """What the training labels hold: instances per class, box centres and box sizes.

    Args:
        labels: ``(N,)`` class indices of every training box.
        boxes: ``(N, 4)`` ``cx, cy, w, h`` as fractions of their picture's width and height.
    """
    fig = _figure(LABELS_SIZE)
    bars, centres, sizes = fig.subplots(1, 3)
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(names))[:len(names)]
    bars.bar(range(len(names)), counts, color=[f"C{i % 10}" for i in range(len(names))])
    bars.set_ylabel("instances")
    bars.set_title(f"{int(counts.sum())} boxes in {len(names)} classes")
    if len(names) <= _LEGEND_MAX:
        bars.set_xticks(range(len(names)), names, rotation=90)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    for ax, (a, b), (xl, yl), title in ((centres, (0, 1), ("x", "y"), "box centres"),
                                        (sizes, (2, 3), ("width", "height"), "box sizes")):
        # cmin=1: empty bins stay white; viridis: a bin of one box is still clearly visible (dark)
        ax.hist2d(boxes[:, a], boxes[:, b], bins=50, range=[[0, 1], [0, 1]], cmap="viridis", cmin=1)
        ax.set_xlabel(f"{xl} (fraction of the picture)")
        ax.set_ylabel(f"{yl} (fraction of the picture)")
        ax.set_title(title)
        ax.set_aspect("equal")
    centres.invert_yaxis()  # picture rows grow downwards
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.25, top=0.9, wspace=0.3)
    return _picture(fig)


def results_size(panels: int) -> Tuple[int, int]:
    """``(width, height)`` of :func:`results_plot` with ``panels`` small plots."""
    rows = max(1, math.ceil(panels / RESULTS_COLUMNS))
    return RESULTS_CELL[0] * RESULTS_COLUMNS, RESULTS_CELL[1] * rows


def results_plot(epochs: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]]) -> np.ndarray:
    """A grid of small line plots of a run's numbers by epoch (``results.png``), :data:`RESULTS_COLUMNS` wide.

    Args:
        epochs: ``(E,)`` the x values.
        panels: ``{panel title: {series name: (E,) values}}``, NaN where a series has no value
            (validation numbers between evaluations): those points are left out, and a series
            with few points has them marked.
    """
    fig = _figure(results_size(len(panels)))
    rows = max(1, math.ceil(len(panels) / RESULTS_COLUMNS))
    axes = fig.subplots(rows, RESULTS_COLUMNS, squeeze=False).ravel()
    x = np.asarray(epochs, np.float64)
    for ax, (title, series) in zip(axes, panels.items()):
        for name, values in series.items():
            y = np.asarray(values, np.float64)
            keep = np.isfinite(y)
            ax.plot(x[keep], y[keep], marker="." if keep.sum() <= 30 else None, linewidth=1.5, label=name)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch", fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, also on a 3-epoch run
        ax.ticklabel_format(axis="y", useOffset=False)  # an lr of 0.00999 reads as such, not as 1e-7 + 9.999e-3
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize="x-small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.3 / rows, top=1 - 0.1 / rows, wspace=0.4, hspace=0.7)
    return _picture(fig)
