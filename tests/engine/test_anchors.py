"""Anchors at the start of training (yolo_asff/engine/anchors.py): the recall warning, and model.anchors: auto
fitted once, stored in the run's config.yaml and checkpoints, and used by evaluation and resumes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import thin_config
from yolo_asff.cli import evaluate
from yolo_asff.config import load_config
from yolo_asff.data import load_split
from yolo_asff.data.records import DatasetError
from yolo_asff.data.thin_objects import generate_thin_objects
from yolo_asff.engine.anchors import fit_for_config, level_strides
from yolo_asff.io.checkpoint import load_checkpoint
from yolo_asff.engine.loading import model_for_weights
from yolo_asff.engine.runs import resumed_config
from yolo_asff.engine.trainer import Trainer
from yolo_asff.models.build import YOLOV3_ANCHORS

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = ["train.epochs=1", "train.batch_size=2", "train.nominal_batch_size=2", "train.ref_batch_size=2",
         "train.eval_interval=1000", "train.ema=false", "test.batch_size=2", "runtime.log_interval=100"]


@pytest.fixture(scope="module")
def thin(tmp_path_factory) -> Path:
    return generate_thin_objects(tmp_path_factory.mktemp("thin") / "data", train=6, val=2, seed=1)


def test_the_trainer_warns_with_the_command_when_recall_is_low(tmp_path, thin):
    config = thin_config(tmp_path, thin)
    Trainer(load_config(config, SHORT), tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "anchors (default): best-possible recall 0." in log
    assert "WARNING the anchors fit this data poorly" in log and f"`yolo-asff anchors --config {config}`" in log
    assert "or set model.anchors: auto" in log


def test_good_anchors_get_no_warning(tmp_path, thin):
    fitted = fit_for_config(load_config(thin_config(tmp_path, thin)), load_split(load_config(thin_config(
        tmp_path, thin)), "train").records)
    cfg = load_config(thin_config(tmp_path, thin), [*SHORT, f"model.anchors={fitted.anchor_list()}"])
    Trainer(cfg, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "anchors (configured): best-possible recall 1.000" in log and "fit this data poorly" not in log


@pytest.mark.slow
def test_an_auto_run_fits_once_and_every_later_use_has_the_fitted_anchors(tmp_path, thin, capsys):
    config = thin_config(tmp_path, thin, "auto")
    cfg = load_config(config, SHORT)
    expected = fit_for_config(cfg, load_split(cfg, "train").records).anchor_list()  # deterministic for the seed
    assert expected != [list(map(float, a)) for a in YOLOV3_ANCHORS]
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert cfg.model.anchors == expected
    assert torch.allclose(trainer.model.head.anchors.reshape(-1, 2), torch.tensor(expected))
    assert torch.allclose(trainer.loss_fn.anchors.reshape(-1, 2), torch.tensor(expected))
    trainer.train()
    run = tmp_path / "run"
    log = (run / "train.log").read_text()
    assert "model.anchors: auto: fitted to" in log and "fit this data poorly" not in log
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["anchors"] == expected
    assert load_checkpoint(run / "last.pth")["config"]["model"]["anchors"] == expected
    # eval, demo and export rebuild the model from the checkpoint: with its fitted anchors
    for given in (None, config):  # the checkpoint's own config, or the auto config beside it
        ready = model_for_weights(run / "last.pth", given)
        assert torch.allclose(ready.model.head.anchors.reshape(-1, 2), torch.tensor(expected))
    assert any("model.anchors: the checkpoint's" in note for note in model_for_weights(run / "last.pth", config).notes)
    assert evaluate.main(["--weights", str(run / "last.pth"), "--device", "cpu"]) == 0
    assert "2 images at 256" in capsys.readouterr().out
    # a resume with the auto config keeps the run's anchors (no refit, no refused change)
    resumed, changes = resumed_config(run / "last.pth", config, [*SHORT, "train.epochs=2"])
    assert resumed.model.anchors == expected and set(changes) == {"train.epochs"}


def test_too_few_boxes_for_auto_is_a_dataset_error(tmp_path):
    one = generate_thin_objects(tmp_path / "one", train=1, val=1, seed=0)
    cfg = load_config(thin_config(tmp_path, one, "auto"), SHORT)
    with pytest.raises(DatasetError, match=r"model.anchors: auto: only \d usable training boxes.*9 anchors"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_a_model_built_before_the_fit_has_the_default_anchors(tmp_path, thin):
    from yolo_asff.models import build_model

    model = build_model(load_config(thin_config(tmp_path, thin, "auto")))
    assert np.allclose(model.head.anchors.reshape(-1, 2).numpy(), YOLOV3_ANCHORS)


@pytest.mark.parametrize("opts, layout, strides", [
    (["model.arch=yolov3_tiny"], (2, 3, 2), (16, 32)),
    ([f"model.anchors={[[4 * k, 12 * k] for k in range(1, 13)]}"], (3, 4, 2), (8, 16, 32)),
])
def test_the_fit_has_the_models_levels_and_anchors_per_level(tmp_path, thin, opts, layout, strides):
    cfg = load_config(thin_config(tmp_path, thin), opts)
    fit = fit_for_config(cfg, load_split(cfg, "train").records, generations=50)
    assert fit.anchors.shape == layout and level_strides(cfg) == strides
    assert fit.before.bpr < fit.after.bpr


def test_the_trainer_says_how_many_training_boxes_the_size_rule_drops(tmp_path, thin):
    config = thin_config(tmp_path, thin)
    Trainer(load_config(config, [*SHORT, "data.aug.min_box_size=12"]), tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "training boxes" in log and "have a side of data.aug.min_box_size=12 px or less" in log
    Trainer(load_config(config, [*SHORT, "data.aug.min_box_size=0"]), tmp_path / "run0", progress=False)
    assert "min_box_size=0 px or less" not in (tmp_path / "run0" / "train.log").read_text()


def test_auto_with_one_anchor_per_box_says_what_that_costs(tmp_path, thin):
    cfg = load_config(thin_config(tmp_path, thin, "auto"), [*SHORT, "train.anchor_thresh=null"])
    Trainer(cfg, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "WARNING model.anchors: auto: train.anchor_thresh is null, so each box trains only its best anchor" in log
    assert isinstance(cfg.model.anchors, list)
