"""The README's main-job command, end to end at a tiny size, so that it cannot silently break."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # end to end: the main job through scripts/quickstart.sh


def test_quickstart_runs_end_to_end(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    env = {
        **os.environ,
        "SKIP_INSTALL": "1",  # the suite already runs inside the installed environment
        "VENV": str(Path(sys.executable).parents[1]),
        "CONFIG": "configs/builtin.yaml",
        "OUT": str(out),
        "DATA": str(data),
        "BUILTIN_ARGS": "--train 8 --val 4",
        "OPTS": "train.epochs=1 train.batch_size=4 model.width=0.125 data.img_size=128 "
                "data.multiscale_range=null test.img_size=128 data.num_workers=0",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 1 and "best_AP50" in metrics
    evaluation = json.loads((out / "eval.json").read_text())
    assert 0.0 <= evaluation["AP50"] <= 1.0 and set(evaluation["per_class"]) == {
        "circle", "square", "triangle", "star", "ring", "cross"}
    assert "[quickstart] validation COCO mAP" in result.stdout
    photo = cv2.imread(str(out / "demo" / "photo" / "astronaut.jpg"))
    assert photo is not None and photo.shape[:2] == (512, 512)
    written = [p for p in (out / "demo" / "video").iterdir() if p.stem == "video"]
    video, source = cv2.VideoCapture(str(written[0])), cv2.VideoCapture(str(data / "video.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert len(written) == 1 and frames == source.get(cv2.CAP_PROP_FRAME_COUNT) > 0
    assert list((out / "demo" / "video").glob("*_fusion.jpg"))
