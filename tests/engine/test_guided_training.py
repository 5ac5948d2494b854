"""The guided-anchor head trains: its loss falls on the built-in data, and it runs under DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.conftest import TRAIN, write_config, write_shapes_dataset
from yolo_asff.config import load_config
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # end to end: training runs, one under torchrun


def test_the_guided_head_learns_on_the_builtin_data(tmp_path):
    data = generate_builtin(tmp_path / "data", train=16, val=8, seed=0)
    cfg = load_config(REPO / "configs" / "builtin.yaml", [
        "model.head=guided", f"data.root={data}", "data.builtin=false", "data.num_workers=0",
        "data.img_size=128", "test.img_size=128", "train.epochs=12", "train.batch_size=8",
        "train.nominal_batch_size=8", "train.ref_batch_size=8", "train.warmup_epochs=1", "train.cosine_end_epoch=12",
        "train.eval_interval=12", "train.save_interval=100", "train.ema=false", "runtime.log_interval=100",
    ])
    metrics = Trainer(cfg, tmp_path / "run", progress=False).train()
    epochs = metrics["train_loss"]
    assert len(epochs) == 12 and all("guide" in e for e in epochs)

    def mean(key, rows):
        return sum(r[key] for r in rows) / len(rows)

    first, last = epochs[:2], epochs[-2:]
    # Measured here: total 123 -> 96, guide 8.5 -> 7.7, wh 10.1 -> 6.2 over these 24 steps.
    assert mean("total", last) < 0.85 * mean("total", first)
    assert mean("wh", last) < 0.8 * mean("wh", first)
    assert mean("guide", last) < mean("guide", first)
    assert (tmp_path / "run" / "last.pth").is_file() and len(metrics["history"]) == 1


def test_guided_head_under_ddp_with_batches_without_boxes(tmp_path):
    """Two gloo processes, one image per step, half the images empty: a step where a process has no boxes
    must still give the guide conv a gradient, or DDP fails on the next step."""
    data = write_shapes_dataset(tmp_path / "shapes", images=4)
    ann = json.loads((data / "train.json").read_text())
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] >= 2]
    (data / "train.json").write_text(json.dumps(ann))
    cfg = write_config(tmp_path, data, epochs=2, batch_size=1, nominal_batch_size=1, ref_batch_size=1,
                       eval_interval=100)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(TRAIN), "--config", str(cfg), "--out", str(out),
           "--opts", "model.head=guided", "data.keep_empty_images=true", "data.aug.crop_prob=0"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs_done"] == 2
