"""What ``yolo-asff train`` decides before training (yolo_asff/engine/runs.py plan_run), called in-process:
the config, the run folder, the checkpoint to resume and the changes a resume makes."""
from __future__ import annotations

from pathlib import Path

import pytest

from yolo_asff import build_model, load_config
from yolo_asff.config import ConfigError
from yolo_asff.engine.runs import RunError, default_run_folder, holds_run, plan_run, run_folder
from yolo_asff.io.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
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


def test_run_folder_rules(tmp_path, monkeypatch):
    cfg = load_config(REPO / "configs" / "builtin.yaml")
    mine = tmp_path / "experiment"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes")
    assert not holds_run(mine)  # a user's folder with a config.yaml is not a run
    (mine / "last.pth").write_bytes(b"x")
    monkeypatch.chdir(mine)
    with pytest.raises(RunError, match="runs inside it"):
        run_folder(cfg, ".", True, tmp_path / "runs" / "x")
    monkeypatch.chdir(tmp_path)
    folder, notes = run_folder(cfg, "experiment", True, tmp_path / "runs" / "x")
    assert folder == Path("experiment") and not folder.exists() and "moved to" in notes[0]


def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_folder(tmp_path, monkeypatch):
    cfg = load_config(REPO / "configs" / "builtin.yaml")
    failed = tmp_path / "run"
    failed.mkdir()
    (failed / "config.yaml").write_text("model: {}\n")
    (failed / "train.log").write_text("error: the training set has 3 images, fewer than one step takes\n")
    monkeypatch.chdir(tmp_path)
    folder, notes = run_folder(cfg, "run", False, tmp_path / "runs" / "x")  # no --force needed
    assert folder == Path("run") and not folder.exists() and "before its first checkpoint" in notes[0]
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(moved) == 1 and (moved[0] / "train.log").is_file()  # nothing deleted
    failed.mkdir()
    (failed / "config.yaml").write_text("model: {}\n")
    (failed / "train.log").write_text("")
    (failed / "last.pth").write_bytes(b"x")
    with pytest.raises(RunError, match="already holds a run"):  # a run with a checkpoint still needs --force
        run_folder(cfg, "run", False, tmp_path / "runs" / "x")
