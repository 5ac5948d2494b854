"""The plot pictures: their sizes, the files they are written to, and no pyplot (no global backend change)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_asff.utils.plots import (
    CONFUSION_SIZE, CURVE_SIZE, LABELS_SIZE, confusion_matrix_plot, f1_curve_plot, labels_plot, pr_curve_plot,
    results_plot, results_size, write_picture,
)

REPO = Path(__file__).resolve().parents[2]


def shape(size):
    return (size[1], size[0], 3)


@pytest.mark.parametrize("classes", [3, 40])  # a legend, and grey lines without one
def test_every_picture_has_its_size(classes):
    rng = np.random.default_rng(0)
    names = [f"class{i}" for i in range(classes)]
    recall = np.linspace(0, 1, 101)
    precision = np.sort(rng.random((classes, 101)), axis=1)[:, ::-1]
    precision[1] = np.nan  # a class without ground truth
    ap50 = precision.mean(axis=1)
    assert pr_curve_plot(recall, precision, ap50, names).shape == shape(CURVE_SIZE)
    thresholds = np.linspace(0, 1, 1001)
    assert f1_curve_plot(thresholds, rng.random((classes, 1001)), names, 0.25).shape == shape(CURVE_SIZE)
    counts = rng.integers(0, 20, (classes + 1, classes + 1))
    for normalize in (False, True):
        assert confusion_matrix_plot(counts, names, normalize, 0.25).dtype == np.uint8
        assert confusion_matrix_plot(counts, names, normalize, 0.25).shape == shape(CONFUSION_SIZE)
    labels = rng.integers(0, classes, 500)
    boxes = rng.random((500, 4))
    assert labels_plot(labels, boxes, names).shape == shape(LABELS_SIZE)
    panels = {f"panel {i}": {"train": rng.random(7), "val": [np.nan, 1, np.nan, 2, np.nan, 3, 4]} for i in range(12)}
    assert results_plot(np.arange(1, 8), panels).shape == shape(results_size(12)) == (750, 1500, 3)


def test_empty_inputs_still_draw():
    assert labels_plot(np.zeros(0, np.int64), np.zeros((0, 4)), ["a", "b"]).shape == shape(LABELS_SIZE)
    assert confusion_matrix_plot(np.zeros((3, 3)), ["a", "b"], True, 0.0).shape == shape(CONFUSION_SIZE)
    nan = np.full((2, 101), np.nan)
    assert pr_curve_plot(np.linspace(0, 1, 101), nan, np.full(2, np.nan), ["a", "b"]).shape == shape(CURVE_SIZE)


def test_pictures_are_written_whole_as_png_or_jpeg(tmp_path):
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[10:20, 10:30] = (0, 0, 255)
    write_picture(tmp_path / "sub" / "a.png", picture)
    write_picture(tmp_path / "b.jpg", picture)
    assert np.array_equal(cv2.imread(str(tmp_path / "sub" / "a.png")), picture)
    assert cv2.imread(str(tmp_path / "b.jpg")).shape == (40, 60, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jpg", "sub"]  # no temporary file left
    with pytest.raises(ValueError, match="cannot encode"):
        write_picture(tmp_path / "c.nope", picture)


def test_plotting_never_loads_pyplot():
    """A notebook that imports us keeps its own backend: we draw on Agg canvases, never through pyplot."""
    code = (
        "import sys, numpy as np, matplotlib\n"
        "backend = lambda: dict.__getitem__(matplotlib.rcParams, 'backend')  # read without resolving it\n"
        "before = backend()\n"
        "from yolo_asff.engine import evaluator, plots, trainer\n"
        "from yolo_asff.utils.plots import pr_curve_plot\n"
        "pr_curve_plot(np.linspace(0, 1, 101), np.ones((1, 101)), np.ones(1), ['a'])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert backend() == before, (before, backend())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
