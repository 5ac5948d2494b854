"""`yolo-asff anchors` / tools/fit_anchors.py: the figures before and after, the JSON, and a model.anchors block
that pastes into a config."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import thin_config
from yolo_asff.cli import COMMANDS
from yolo_asff.cli import main as yolo_asff
from yolo_asff.config import load_config
from yolo_asff.data.thin_objects import generate_thin_objects

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def thin(tmp_path_factory) -> Path:
    return generate_thin_objects(tmp_path_factory.mktemp("thin") / "data", train=12, val=1, seed=2)


def test_the_command_prints_both_and_writes_the_figures_and_a_block_to_paste(tmp_path, thin, capsys):
    assert "anchors" in COMMANDS
    config = thin_config(tmp_path, thin)
    figures, block = tmp_path / "out" / "anchors.json", tmp_path / "out" / "anchors.yaml"
    assert yolo_asff(["anchors", "--config", str(config), "--json", str(figures), "--yaml", str(block),
                      "--generations", "300"]) == 0
    out = capsys.readouterr().out
    written = json.loads(figures.read_text())
    assert written["bpr_before"] < 0.98 <= written["bpr_after"]
    assert written["mean_iou_before"] < written["mean_iou_after"] and written["threshold"] == 0.25
    assert len(written["anchors"]) == 9 and written["seed"] == 0 and written["generations"] == 300
    assert f"{written['bpr_before']:.4f}" in out and f"{written['bpr_after']:.4f}" in out
    assert "current (default)" in out and "fitted" in out and "shape IoU > 0.25 (train.anchor_thresh)" in out
    assert "note:" not in out
    text = block.read_text()
    assert text in out and "# stride 8" in text and "# stride 32" in text
    # the block pasted into a config gives these anchors
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"_base_: {config}\n" + text)
    assert load_config(mine).model.anchors == written["anchors"]
    # the same seed gives the same anchors; the null rule is named when train.anchor_thresh is null
    again = tmp_path / "again.json"
    assert yolo_asff(["anchors", "--config", str(config), "--json", str(again), "--generations", "300",
                      "--opts", "train.anchor_thresh=null"]) == 0
    assert json.loads(again.read_text())["anchors"] == written["anchors"]
    out = capsys.readouterr().out
    assert "(the rule when train.anchor_thresh is null)" in out and "note: train.anchor_thresh is null" in out


@pytest.mark.slow
def test_the_tool_reports_user_errors_in_one_line(tmp_path, thin):
    one = generate_thin_objects(tmp_path / "one", train=1, val=1, seed=0)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cases = [
        (["--config", str(thin_config(tmp_path, one, name="one.yaml"))], "fewer than the 9 anchors to fit"),
        (["--config", str(thin_config(tmp_path, thin)), "--opts", "model.anchors=fit"],
         "'model.anchors' must be a list of list of float or 'auto' or null"),
        (["--config", str(thin_config(tmp_path, thin)), "--json", str(tmp_path)], "it is a folder"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, str(REPO / "tools" / "fit_anchors.py"), *args], capture_output=True,
                                text=True, cwd=REPO, env=env, timeout=300)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
