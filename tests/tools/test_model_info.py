"""The model smoke check that the README's main-job command runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "model_info.py"

pytestmark = pytest.mark.slow  # end to end: the tool in a subprocess


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_smoke_check_on_builtin_picture_and_on_a_file(tmp_path):
    small = ["--opts", "model.width=0.25", "model.num_classes=3"]
    out = run("--config", "configs/yolov3_asff_coco.yaml", "--size", "128", *small)
    assert out.returncode == 0, out.stderr
    assert "parameters" in out.stdout and "(1, 3, 128, 128) -> (1, 1008, 8)" in out.stdout
    assert "ASFF maps   16x16, 8x8, 4x4" in out.stdout
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), np.full((50, 70, 3), 128, np.uint8))
    out = run("--config", "configs/yolov3_tiny_coco.yaml", "--size", "64", "--image", str(image), *small)
    assert out.returncode == 0, out.stderr


def test_smoke_check_reports_user_errors_without_traceback(tmp_path):
    out = run("--config", "configs/yolov3_asff_coco.yaml", "--opts", "model.num_clases=3")
    assert out.returncode == 2 and "did you mean 'model.num_classes'" in out.stderr
    assert "Traceback" not in out.stderr
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = run("--config", "configs/yolov3_tiny_coco.yaml", "--image", str(bad), "--opts", "model.width=0.25")
    assert out.returncode == 2 and "cannot read image" in out.stderr and "Traceback" not in out.stderr
    out = run("--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml" in out.stderr
