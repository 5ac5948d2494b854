"""The dataset browser and the data benchmark run on the built-in data and report bad input cleanly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from yolo_asff.data.builtin import generate_builtin

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # end to end: the tools in subprocesses


def run(tool, *args):
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_browse_dataset_writes_a_grid(tmp_path):
    root = generate_builtin(tmp_path / "b", train=6, val=2, seed=0)
    out = run("browse_dataset.py", "--config", "configs/builtin.yaml", "--num", "4", "--size", "128",
              "--out", str(tmp_path / "browse"), "--opts", f"data.root={root}")
    assert out.returncode == 0, out.stderr
    assert "6 images" in out.stderr and "boxes per class: circle" in out.stderr  # the data summary
    grid = cv2.imread(str(tmp_path / "browse" / "train_samples.jpg"))
    assert grid is not None and grid.shape == (128, 4 * 128, 3)
    bench = run("benchmark.py", "data", "--config", "configs/builtin.yaml", "--size", "128", "--samples", "8",
                "--opts", f"data.root={root}")
    assert bench.returncode == 0 and "images/s per worker at 128x128" in bench.stdout


def test_browse_dataset_names_a_wrong_path(tmp_path):
    out = run("browse_dataset.py", "--config", "configs/builtin.yaml", "--opts", f"data.root={tmp_path}/none",
              "data.builtin=false")
    assert out.returncode == 2 and "none" in out.stderr and "Traceback" not in out.stderr
