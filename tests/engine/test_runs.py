"""What ``yolo-asff train`` decides before training (yolo_asff/engine/runs.py plan_run), called in-process:
the config, the run folder, the checkpoint to resume and the changes a resume makes."""
from __future__ import annotations

from pathlib import Path

import pytest

from yolo_asff import build_model, load_config
from yolo_asff.config import ConfigError
from yolo_asff.engine.checkpoint import save_checkpoint
from yolo_asff.engine.runs import RunError, default_run_folder, plan_run

SMALL = ["model.width=0.125"]


def test_a_new_run_goes_to_out_or_to_the_config_name_under_the_output_folder(tmp_path):
    plan = plan_run("builtin", [*SMALL, f"runtime.output_dir={tmp_path}"])
    assert plan.folder == tmp_path / "builtin" == default_run_folder(plan.cfg)
    assert plan.checkpoint is None and plan.changes == {} and plan.cfg.model.width == 0.125
    assert plan_run("builtin", ["runtime.name=mine"]).folder == Path("runs/mine")
    assert plan_run("builtin", out=tmp_path / "here").folder == tmp_path / "here"


def test_combinations_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(RunError, match="--config is required"):
        plan_run(None)
    with pytest.raises(RunError, match="--weights: file not found"):
        plan_run("builtin", weights=tmp_path / "none.pth")
    for kwargs, flag in ((dict(weights="w.pth"), "--weights"), (dict(force=True), "--force")):
        with pytest.raises(RunError, match=f"{flag} cannot be combined with --resume"):
            plan_run("builtin", resume="runs/x", **kwargs)
    with pytest.raises(RunError, match="name different runs"):
        plan_run(None, resume=str(tmp_path / "a"), out=tmp_path / "b")
    with pytest.raises(RunError, match="--resume needs a run"):
        plan_run(None, resume="")
    with pytest.raises(RunError, match="nothing to resume"):
        plan_run(None, resume=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="did you mean 'model.num_classes'"):
        plan_run("builtin", ["model.num_clases=3"])


def test_a_resume_uses_the_saved_config_with_the_safe_changes(tmp_path):
    cfg = load_config("builtin", SMALL)
    run = tmp_path / "run"
    save_checkpoint(run / "last.pth", build_model(cfg), config=cfg.to_dict())
    plan = plan_run(None, ["train.epochs=3", "test.show_thresh=0.5"], resume=str(run))
    assert (plan.folder, plan.checkpoint) == (run, run / "last.pth")
    assert plan.changes == {"train.epochs": (cfg.train.epochs, 3), "test.show_thresh": (0.3, 0.5)}
    assert plan.cfg.model.width == 0.125 and plan.cfg.source == str(run / "config.yaml")
    assert plan_run(None, out=run, resume="").checkpoint == run / "last.pth"  # --resume alone: the --out run's
    with pytest.raises(RunError, match="cannot change mid-run"):
        plan_run(None, ["model.width=0.25"], resume=str(run / "last.pth"))
