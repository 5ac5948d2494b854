"""The eval tool's job in the package (yolo_asff/engine/evaluate_weights.py and the evaluator's metric JSON),
called in-process."""
from __future__ import annotations

import math

import pytest

from yolo_asff import load_config
from yolo_asff.engine.evaluate_weights import eval_opts, evaluate_weights
from yolo_asff.engine.evaluator import METRIC_KEYS, metrics_json
from yolo_asff.errors import InvalidInputError, MissingFileError, OutputError


def test_the_shortcuts_become_checked_config_overrides():
    opts = eval_opts(["data.num_workers=0"], size=[64, 96], conf=1e-5, nms=0.5, batch=3)
    assert opts == ["data.num_workers=0", "test.img_size=[64, 96]", "test.conf_thresh=1.0e-05", "test.nms_thresh=0.5",
                    "test.batch_size=3"]
    cfg = load_config("builtin", opts)  # read back as numbers, not strings
    assert (cfg.test.img_size, cfg.test.conf_thresh, cfg.test.batch_size) == ([64, 96], 1e-5, 3)
    assert eval_opts([], size=64) == ["test.img_size=64"] and eval_opts(["a=1"]) == ["a=1"]


def test_metric_json_keeps_the_numbers_not_the_tables():
    metrics = {**{k: 0.5 for k in METRIC_KEYS}, "APs": math.nan, "per_class": {"cat": 0.25}, "summary": "a table",
               "curves": object(), "num_images": 3, "per_class_table": [{"class": "all"}]}
    out = metrics_json(metrics, {"weights": "best.pth"})
    assert set(out) == {*METRIC_KEYS, "per_class", "num_images", "per_class_table", "weights"}
    assert math.isnan(out["APs"]) and out["weights"] == "best.pth"


def test_missing_weights_and_unusable_outputs_are_found_first(tmp_path):
    with pytest.raises(MissingFileError, match="weights file not found"):
        evaluate_weights(tmp_path / "none.pth")
    (tmp_path / "w.pth").write_bytes(b"not read: the output is checked first")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="--plots folder"):
        evaluate_weights(tmp_path / "w.pth", plots=tmp_path / "file")


def test_a_run_folder_and_a_bad_size_are_named_as_the_user_gave_them(tmp_path):
    with pytest.raises(MissingFileError, match=r"is a folder: pass a checkpoint in it, e\.g\. .*best\.pth"):
        evaluate_weights(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"not read: the size is checked first")
    with pytest.raises(InvalidInputError, match=r"--size \(test\.img_size\) must be"):
        evaluate_weights(tmp_path / "w.pth", size=300)
