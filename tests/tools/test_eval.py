"""tools/eval.py end to end on a tiny COCO dataset with a small-width model checkpoint, and its user errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_eval_config, write_tiny_coco
from yolo_asff import build_model, load_config
from yolo_asff.cli import evaluate as eval_tool
from yolo_asff.engine.checkpoint import load_weights_file
from yolo_asff.io.checkpoint import save_checkpoint
from yolo_asff.engine.evaluator import METRIC_KEYS
from yolo_asff.io.darknet import save_darknet_weights

REPO = Path(__file__).resolve().parents[2]


def run(*args):
    # One thread: on a shared CPU, two threads contending make a tiny model's forward ~10x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "tools" / "eval.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)


@pytest.mark.slow
def test_eval_end_to_end_writes_metrics_and_detections(tmp_path):
    write_tiny_coco(tmp_path)
    config = write_eval_config(tmp_path)
    model = build_model(load_config(config))
    ckpt = tmp_path / "last.pth"
    save_checkpoint(ckpt, model, ema=build_model(load_config(config)), epoch=1)
    # An untrained model scores about 0.01 × 0.01: a low threshold gives it detections to score.
    out = run("--config", str(config), "--weights", str(ckpt), "--size", "64", "--conf", "0.00001", "--batch", "3",
              "--device", "cpu", "--json", str(tmp_path / "m.json"), "--dets", str(tmp_path / "d.json"))
    assert out.returncode == 0, out.stderr
    assert "(ema weights), 5 images at 64" in out.stdout
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] =" in out.stdout
    assert "per-class AP (%)" in out.stdout and "zebra" in out.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {*METRIC_KEYS, "per_class", "per_class_AP50", "num_images", "num_detections"} <= set(metrics)
    for key in METRIC_KEYS:
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["per_class"]) == {"cat", "dog", "zebra"}
    assert all(0.0 <= v <= 1.0 for v in metrics["per_class"].values())
    dets = json.loads((tmp_path / "d.json").read_text())
    assert len(dets) == metrics["num_detections"] > 0
    assert {d["category_id"] for d in dets} <= {3, 7, 42} and {d["image_id"] for d in dets} <= {11, 12, 13, 14, 15}
    assert all(len(d["bbox"]) == 4 and d["bbox"][2] >= 0 and 0 < d["score"] <= 1 for d in dets)


def test_checkpoint_ema_weights_are_preferred_and_darknet_files_load(tmp_path):
    write_tiny_coco(tmp_path)
    cfg = load_config(write_eval_config(tmp_path))
    model, ema = build_model(cfg), build_model(cfg)
    save_checkpoint(tmp_path / "a.pth", model, ema=ema)
    save_checkpoint(tmp_path / "b.pth", model)
    fresh = build_model(cfg)

    def load_weights(model, path):  # as the eval tool loads them: all of it, or a refusal
        return load_weights_file(model, path, strict=True).source

    assert load_weights(fresh, tmp_path / "a.pth") == "ema"
    name, param = next(iter(ema.state_dict().items()))
    assert torch.equal(fresh.state_dict()[name], param) and not torch.equal(param, model.state_dict()[name])
    assert load_weights(fresh, tmp_path / "b.pth") == "model"
    assert torch.equal(fresh.state_dict()[name], model.state_dict()[name])
    save_darknet_weights(ema, tmp_path / "c.weights")
    assert load_weights(fresh, tmp_path / "c.weights") == "darknet"
    assert torch.equal(fresh.state_dict()[name], param)


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    write_tiny_coco(tmp_path)
    config = write_eval_config(tmp_path)
    assert eval_tool.main(["--config", str(config), "--weights", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights file not found:") and "nope.pth" in err and "Traceback" not in err
    assert eval_tool.main(["--config", str(tmp_path / "none.yaml"), "--weights", str(config)]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert eval_tool.main(["--config", str(config), "--weights", str(config), "--size", "100"]) == 2
    assert "test.img_size" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert eval_tool.main(["--config", str(config), "--weights", str(tmp_path / "bad.pth"), "--device", "cpu"]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    other = build_model(load_config(config, ["model.num_classes=5"]))
    save_checkpoint(tmp_path / "five.pth", other)
    assert eval_tool.main(["--config", str(config), "--weights", str(tmp_path / "five.pth"), "--device", "cpu"]) == 2
    assert "does not fit the model" in capsys.readouterr().err


def test_the_plots_go_beside_the_json_or_to_plots(tmp_path, capsys):
    import cv2

    write_tiny_coco(tmp_path)
    config = write_eval_config(tmp_path)
    ckpt = tmp_path / "last.pth"
    save_checkpoint(ckpt, build_model(load_config(config)), epoch=1)
    common = ["--config", str(config), "--weights", str(ckpt), "--device", "cpu"]
    assert eval_tool.main([*common, "--json", str(tmp_path / "out" / "eval.json")]) == 0
    names = ["PR_curve", "F1_curve", "confusion_matrix", "confusion_matrix_normalized"]
    for name in names:
        picture = cv2.imread(str(tmp_path / "out" / f"{name}.png"))
        assert picture is not None and picture.shape[0] >= 600, name
    printed = capsys.readouterr().out
    assert "instances" in printed and "plots: PR_curve.png" in printed
    metrics = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert [r["class"] for r in metrics["per_class_table"]] == ["all", "cat", "dog", "zebra"]
    assert metrics["confusion_matrix"]["classes"][-1] == "background" and 0 <= metrics["best_f1_conf"] <= 1
    assert eval_tool.main([*common, "--plots", str(tmp_path / "pictures")]) == 0
    assert sorted(p.stem for p in (tmp_path / "pictures").iterdir()) == sorted(names)
    (tmp_path / "file").write_text("")
    assert eval_tool.main([*common, "--plots", str(tmp_path / "file")]) == 2
    assert "--plots folder" in capsys.readouterr().err
