"""The trainer: it learns, resumes exactly, survives faults, and runs under torchrun (gloo, CPU)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import free_port
from tests.engine.conftest import TRAIN, write_config, write_shapes_dataset
from yolo_asff.config import load_config
from yolo_asff.data.mosaic import Mosaic
from yolo_asff.io.checkpoint import load_checkpoint, save_checkpoint
from yolo_asff.engine.ema import ModelEMA
from yolo_asff.engine.trainer import Trainer, TrainingError, load_initial_weights
from yolo_asff.models import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"))


# ------------------------------------------------------------------------------ learning


@pytest.mark.slow
def test_a_tiny_model_overfits_a_handful_of_images(tmp_path, shapes):
    cfg = load_config(write_config(tmp_path, shapes), [
        "train.epochs=100", "train.batch_size=4", "train.nominal_batch_size=4", "train.ref_batch_size=4",
        "train.lr=0.02", "train.warmup_epochs=3", "train.cosine_start_epoch=70", "train.ema=false",
        "train.label_smooth=false", "train.save_interval=1000", "data.multiscale_range=null",
        "data.aug.photometric_prob=0", "data.aug.expand_prob=0", "data.aug.crop_prob=0", "data.aug.flip_prob=0",
        "data.aug.affine_prob=0", "runtime.log_interval=50",
    ])
    metrics = Trainer(cfg, tmp_path / "run", progress=False).train()
    losses = [e["total"] for e in metrics["train_loss"]]
    assert len(losses) == 100
    assert losses[-1] < 0.2 * losses[0], f"loss fell only from {losses[0]:.2f} to {losses[-1]:.2f}"
    # The predictions recover the boxes: AP50 on the training images, through the evaluator.
    assert metrics["best_AP50"] > 0.9, metrics["history"]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["epochs_done"] == 100 and 0 <= written["best_AP"] <= written["best_AP50"] <= 1
    assert written["train_images_per_s"] > 0


# ------------------------------------------------------------------------------ resume


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path, shapes):
    """Two epochs straight == one epoch, stop, resume for one more (augmentation and multi-scale on)."""
    cfg_path = write_config(tmp_path, shapes, epochs=2, ema=True)
    straight = Trainer(load_config(cfg_path), tmp_path / "straight", progress=False)
    straight.train()
    first = Trainer(load_config(cfg_path), tmp_path / "split", progress=False)
    first.cfg.train.epochs = 1  # stop after one epoch, as a killed run would be
    first.train()
    ckpt = load_checkpoint(tmp_path / "split" / "last.pth")
    assert ckpt["epoch"] == 1 and ckpt["extra"]["batch_in_epoch"] == 0
    resumed = Trainer(load_config(cfg_path), tmp_path / "split", resume=tmp_path / "split" / "last.pth",
                      progress=False)
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ea, eb = straight.ema.state_dict(), resumed.ema.state_dict()
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    # and the run really moved: the weights differ from a fresh model's
    fresh = build_model(load_config(cfg_path)).state_dict()
    assert any(not torch.equal(fresh[k], a[k]) for k in a)


# Mosaic and mixup on every sample: the samples after the cut must be drawn exactly as in the straight run.
MOSAIC_MIXUP = ["data.aug.mosaic_prob=1.0", "train.no_mosaic_epochs=0", "train.mixup=true", "train.mixup_prob=1.0",
                "train.no_mixup_epochs=0"]


@pytest.mark.slow
@pytest.mark.parametrize("opts", [[], MOSAIC_MIXUP], ids=["plain", "mosaic_mixup"])
def test_resume_mid_epoch_after_an_interrupt(tmp_path, shapes, monkeypatch, opts):
    cfg_path = write_config(tmp_path, shapes, epochs=2, ema=False)
    mosaics = []
    real_mosaic = Mosaic.__call__
    monkeypatch.setattr(Mosaic, "__call__", lambda self, *a: mosaics.append(1) or real_mosaic(self, *a))
    straight = Trainer(load_config(cfg_path, opts), tmp_path / "straight", progress=False)
    straight.train()
    assert len(mosaics) == (8 if opts else 0)  # 4 images x 2 epochs (the mixup partners are plain pictures)

    interrupted = Trainer(load_config(cfg_path, opts), tmp_path / "cut", progress=False)
    real_step = interrupted.optimizer.step
    calls = {"n": 0}

    def step_then_stop(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 2, batch 1 of 2: as if SIGTERM or Ctrl-C arrived during it
            interrupted.request_stop()
        return out

    monkeypatch.setattr(interrupted.optimizer, "step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pth")
    assert (ckpt["epoch"], ckpt["extra"]["batch_in_epoch"]) == (1, 1)
    resumed = Trainer(load_config(cfg_path, opts), tmp_path / "cut", resume=tmp_path / "cut" / "last.pth",
                      progress=False)
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ faults


@pytest.mark.slow
def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path, shapes):
    trainer = Trainer(load_config(write_config(tmp_path, shapes, nonfinite_patience=3, epochs=3)),
                      tmp_path / "run", progress=False)
    real = trainer.loss_fn
    calls = {"n": 0}

    def sometimes_nan(*args):
        calls["n"] += 1
        total, terms = real(*args)
        return (total * float("nan"), terms) if calls["n"] in (2,) or calls["n"] >= 4 else (total, terms)

    trainer.loss_fn = sometimes_nan
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingError, match="not finite for 3 steps.*train.lr.*train.amp=false"):
        trainer.train()
    assert trainer.nonfinite_total == 4
    after = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the good steps were taken


def test_fine_tuning_weights_from_another_class_count(tmp_path):
    six = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.width=0.125"]))
    save_checkpoint(tmp_path / "six.pth", six, ema=ModelEMA(six))
    two = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.width=0.125", "model.num_classes=2"]))
    summary = load_initial_weights(two, tmp_path / "six.pth")
    assert summary.startswith("ema weights") and "skipped 6 of another shape" in summary  # weight and bias of 3 output convs
    six_backbone, two_backbone = six.backbone.state_dict(), two.backbone.state_dict()
    assert all(torch.equal(six_backbone[k], two_backbone[k]) for k in six_backbone)
    from yolo_asff.io.darknet import save_darknet_weights

    save_darknet_weights(six, tmp_path / "backbone.conv.74", cutoff=52)
    assert "52 Darknet layers" in load_initial_weights(two, tmp_path / "backbone.conv.74")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_initial_weights(two, tmp_path / "nope.pth")


def _warnings_of(call) -> str:
    """The project's log records at WARNING or above while ``call()`` runs (its logger does not propagate)."""
    records: list = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("yolo_asff")
    logger.addHandler(handler)
    try:
        call()
    finally:
        logger.removeHandler(handler)
    return " ".join(r.getMessage() for r in records)


def test_weights_of_another_model_are_loaded_with_a_loud_warning(tmp_path):
    tiny = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.arch=yolov3_tiny", "model.width=0.125"]))
    save_checkpoint(tmp_path / "tiny.pth", tiny)
    asff = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.width=0.125"]))
    warned = _warnings_of(lambda: load_initial_weights(asff, tmp_path / "tiny.pth"))
    assert "not weights of this model" in warned and "tiny.pth" in warned
    six = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.width=0.125"]))
    save_checkpoint(tmp_path / "six.pth", six)
    assert "not weights of this model" not in _warnings_of(lambda: load_initial_weights(asff, tmp_path / "six.pth"))


@pytest.mark.slow
def test_an_evaluation_that_fails_costs_no_epoch(tmp_path, shapes, monkeypatch, capsys):
    cfg = load_config(write_config(tmp_path, shapes, epochs=2, eval_interval=1))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)

    def broken(*args, **kwargs):
        raise KeyError("id")  # what a COCO file without annotation ids used to raise here

    monkeypatch.setattr(trainer, "_evaluate", broken)
    metrics = trainer.train()
    assert metrics["epochs_done"] == 2 and load_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 2
    terminal = capsys.readouterr().err
    assert terminal.count("evaluation after epoch") == 2 and "KeyError" in terminal and "Traceback" not in terminal
    assert "Traceback" in (tmp_path / "run" / "train.log").read_text()  # the log file keeps the details


@pytest.mark.slow
def test_a_run_killed_during_evaluation_resumes_with_that_evaluation(tmp_path, shapes, monkeypatch):
    cfg_path = write_config(tmp_path, shapes, epochs=2, eval_interval=1)
    first = Trainer(load_config(cfg_path), tmp_path / "run", progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies while evaluating epoch 1

    monkeypatch.setattr(first, "_evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    saved = load_checkpoint(tmp_path / "run" / "last.pth")
    assert saved["epoch"] == 1 and saved["extra"]["eval_pending"]
    resumed = Trainer(load_config(cfg_path), tmp_path / "run", resume=tmp_path / "run" / "last.pth", progress=False)
    metrics = resumed.train()
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and (tmp_path / "run" / "best.pth").is_file()


@pytest.mark.slow
def test_a_coco_file_with_string_ids_and_no_annotation_ids_trains_and_scores_as_the_clean_one(tmp_path, shapes):
    from yolo_asff.engine.evaluator import Evaluator

    data = json.loads((shapes / "train.json").read_text())
    for image in data["images"]:
        image["id"] = f"shot_{image['id']:04d}"
    for ann in data["annotations"]:
        ann["image_id"] = f"shot_{ann['image_id']:04d}"
        del ann["id"]
        ann["iscrowd"] = "0"
    (tmp_path / "quirky.json").write_text(json.dumps(data))
    cfg_path = write_config(tmp_path, shapes, epochs=2, eval_interval=1)
    quirky = load_config(cfg_path, [f"data.train.ann_file={tmp_path / 'quirky.json'}",
                                    f"data.val.ann_file={tmp_path / 'quirky.json'}"])
    metrics = Trainer(quirky, tmp_path / "run", progress=False).train()
    assert len(metrics["history"]) == 2 and (tmp_path / "run" / "best.pth").is_file()
    text = (tmp_path / "run" / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    model = build_model(quirky)
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "best.pth")["ema"])
    on_quirky = Evaluator(quirky).evaluate(model, progress=False)
    on_clean = Evaluator(load_config(cfg_path)).evaluate(model, progress=False)
    assert on_quirky["num_detections"] > 0
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert on_quirky[key] == pytest.approx(on_clean[key], abs=1e-12), key


# ------------------------------------------------------------------------------ the command line


def run_train(*args, env=None, timeout=300):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **(env or {})}
    return subprocess.run([sys.executable, str(TRAIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
def test_cli_refuses_bad_input_without_a_traceback(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes)
    cases = [
        (["--config", tmp_path / "missing.yaml"], "config file not found"),
        (["--config", cfg, "--opts", "train.epoch=3"], "did you mean 'train.epochs'"),
        (["--config", cfg, "--out", tmp_path / "r", "--resume"], "nothing to resume"),
        (["--config", cfg, "--out", tmp_path / "r", "--weights", tmp_path / "none.pth"], "none.pth"),
        ([], "--config is required"),
    ]
    for args, message in cases:
        result = run_train(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_cli_sigterm_saves_then_resume_finishes(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=30)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TRAIN), "--config", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    deadline = time.time() + 120
    for line in proc.stdout:
        if "epoch 2/30 batch 1/2" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest
    assert "interrupted: saved" in rest
    ckpt = load_checkpoint(out / "last.pth")
    assert 1 <= ckpt["epoch"] < 30
    again = run_train("--config", cfg, "--out", out)  # an existing run is never overwritten by accident
    assert again.returncode == 2 and "--resume" in again.stderr
    done = run_train("--config", cfg, "--out", out, "--resume", "--opts", "train.epochs=3")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3
    assert (out / "config.yaml").exists() and (out / "train.log").read_text().count("resumed from") == 1
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())


@pytest.mark.slow
def test_two_process_ddp_on_cpu_with_gloo(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=1, eval_interval=1)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(TRAIN), "--config", str(cfg), "--out", str(out),
           "--opts", "model.norm=syncbn"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pth")) == ["best.pth", "last.pth"]  # written once, by rank 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs_done"] == 1
    assert "2 process(es)" in (out / "train.log").read_text()


# ------------------------------------------------------------------------------ resuming under changes


def _recording(trainer):
    """Record, per batch, (epoch, images of the epoch used) -> (schedule position, lr), and the indices drawn."""
    steps, drawn = {}, []
    schedule, requests = trainer.schedule, trainer.loader.batch_sampler._requests

    class Recorder:  # the schedule, recording what it is asked (and saved with the checkpoint as before)
        def __call__(self, progress):
            lr = schedule(progress)
            steps[(trainer.epoch, trainer.images_in_epoch)] = (progress, lr)
            return lr

        def state_dict(self):
            return schedule.state_dict()

    def record(batch, i):
        drawn.append((trainer.epoch, list(batch)))
        return requests(batch, i)

    trainer.schedule = Recorder()
    trainer.loader.batch_sampler._requests = record
    return steps, drawn


def _stopped_after(trainer, steps: int):
    """Run ``trainer`` until ``steps`` optimizer steps are done, as if SIGTERM arrived then."""
    real_step, calls = trainer.optimizer.step, {"n": 0}

    def step_then_stop(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == steps:
            trainer.request_stop()
        return out

    trainer.optimizer.step = step_then_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


@pytest.fixture(scope="module")
def twelve(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("twelve"), images=12, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["batch size", "accumulation"])
def test_a_resume_with_another_batch_geometry_continues_the_schedule_and_the_order(tmp_path, twelve, change):
    # batch size: 4 images a step as 4 x 1, then as 2 x 2 accumulated: the same lr at the same image.
    # accumulation: 4 a step, then 2 a step: the same point of the schedule (the lr scales with the batch).
    geometry = {"batch size": ({"batch_size": 4, "nominal_batch_size": 4}, ["train.batch_size=2"]),
                "accumulation": ({"batch_size": 2, "nominal_batch_size": 4}, ["train.nominal_batch_size=2"])}
    start, later = geometry[change]
    cfg_path = write_config(tmp_path, twelve, epochs=2, warmup_epochs=1.5, **start)
    straight = Trainer(load_config(cfg_path), tmp_path / "straight", progress=False)
    straight_lr, straight_drawn = _recording(straight)
    straight.train()
    cut = Trainer(load_config(cfg_path), tmp_path / "cut", progress=False)
    cut_lr, cut_drawn = _recording(cut)
    _stopped_after(cut, 1)
    saved = load_checkpoint(tmp_path / "cut" / "last.pth")
    assert (saved["epoch"], saved["extra"]["images_in_epoch"]) == (0, 4)
    resumed = Trainer(load_config(cfg_path, later), tmp_path / "cut", resume=tmp_path / "cut" / "last.pth",
                      progress=False)
    resumed_lr, resumed_drawn = _recording(resumed)
    resumed.train()
    # the same point of the schedule at the same number of images, before and after the change
    both = {**cut_lr, **resumed_lr}
    shared = [k for k in straight_lr if k in both]
    assert len(shared) >= 4 and (0, 4) in shared and (1, 0) in shared
    for key in shared:
        assert both[key][0] == pytest.approx(straight_lr[key][0], rel=1e-12), key
        if change == "batch size":
            assert both[key][1] == pytest.approx(straight_lr[key][1], rel=1e-12), key
    # and the data in the same order: every epoch uses the images a straight run uses, in its order
    used_before_the_cut = [i for e, batch in cut_drawn if e == 0 for i in batch][:4]  # (the loader fetched one more)
    for epoch in (0, 1):
        order = [i for e, batch in straight_drawn if e == epoch for i in batch]
        again = (used_before_the_cut if epoch == 0 else []) + [i for e, b in resumed_drawn if e == epoch for i in b]
        assert again == order and sorted(order) == list(range(12))
    assert "resuming with" in (tmp_path / "cut" / "train.log").read_text()


@pytest.mark.slow
def test_a_resume_on_a_grown_dataset_keeps_the_fraction_of_the_epoch(tmp_path, twelve):
    cfg_path = write_config(tmp_path, twelve, epochs=2, batch_size=4, nominal_batch_size=4)
    cut = Trainer(load_config(cfg_path), tmp_path / "run", progress=False)
    _stopped_after(cut, 1)  # 4 of 12 images: a third of the first epoch
    bigger = write_shapes_dataset(tmp_path / "bigger", images=24, seed=4)
    cfg = load_config(cfg_path, [f"data.root={bigger}"])
    resumed = Trainer(cfg, tmp_path / "run", resume=tmp_path / "run" / "last.pth", progress=False)
    assert (resumed.epoch, resumed.images_in_epoch) == (0, 8)
    assert "24 images now, 12 when this epoch started" in (tmp_path / "run" / "train.log").read_text()
    steps, _ = _recording(resumed)
    resumed.train()
    assert min(steps) == (0, 8) and steps[(0, 8)] == (pytest.approx(1 / 3), pytest.approx(cut.schedule(1 / 3)))


@pytest.mark.slow
def test_config_changes_on_resume_are_checked_recorded_and_the_config_kept(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=1)
    out = tmp_path / "runs" / "cfg"
    assert run_train("--config", cfg, "--out", out).returncode == 0
    written = (out / "config.yaml").read_text()
    refused = run_train("--resume", out, "--opts", "train.lr=0.5", "data.img_size=96")
    assert refused.returncode == 2 and "train.lr: 0.01 -> 0.5" in refused.stderr
    assert "data.img_size: 128 -> 96" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_train("--config", REPO / "configs" / "builtin.yaml", "--resume", out)  # the shipped one: other run
    assert refused.returncode == 2 and "cannot change mid-run" in refused.stderr
    done = run_train("--resume", out, "--opts", "train.epochs=2", "runtime.log_interval=5")  # the folder alone
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "config.yaml").read_text() == written  # never rewritten
    record = yaml.safe_load((out / "resumes.yaml").read_text())
    assert len(record) == 1 and record[0]["changed"] == {"train.epochs": {"was": 1, "now": 2},
                                                          "runtime.log_interval": {"was": 1, "now": 5}}
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == 2


@pytest.mark.slow
def test_new_runs_are_numbered_and_force_moves_the_old_one_aside(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=1)
    opts = ["--opts", f"runtime.output_dir={tmp_path / 'runs'}"]
    assert run_train("--config", cfg, *opts).returncode == 0
    second = run_train("--config", cfg, *opts)
    assert second.returncode == 0 and (tmp_path / "runs" / "cfg-2" / "last.pth").is_file()
    forced = run_train("--config", cfg, "--out", tmp_path / "runs" / "cfg", "--force", *opts)
    assert forced.returncode == 0, forced.stderr[-2000:]
    aside = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("cfg.replaced-")]
    assert len(aside) == 1 and (aside[0] / "last.pth").is_file() and "moved to" in forced.stderr
    log = (tmp_path / "runs" / "cfg" / "train.log").read_text()
    assert log.count("training yolov3_asff") == 1  # a fresh log, not the old one appended to
    events = list((tmp_path / "runs" / "cfg" / "tensorboard").iterdir())
    assert len(events) == 1


def _killed_by_group_sigterm(cmd, out: Path, wait_for: str):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            start_new_session=True,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 180
    for line in proc.stdout:
        if wait_for in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGTERM)  # what timeout, Slurm, Kubernetes and systemd do
    rest = proc.communicate(timeout=180)[0]
    return proc.returncode, rest


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_with_loader_workers_and_the_run_resumes(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=30)
    out = tmp_path / "run"
    code, rest = _killed_by_group_sigterm(
        [sys.executable, str(TRAIN), "--config", str(cfg), "--out", str(out), "--opts", "data.num_workers=2"],
        out, "epoch 2/30 batch 1/2")
    assert code == 130 and "Traceback" not in rest and "interrupted: saved" in rest, rest[-3000:]
    saved = load_checkpoint(out / "last.pth")
    done = run_train("--resume", out, "--opts", f"train.epochs={saved['epoch'] + 1}", "data.num_workers=2")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_sigterm_to_the_process_group_under_torchrun(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=30)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(TRAIN), "--config", str(cfg), "--out", str(out)]
    code, rest = _killed_by_group_sigterm(cmd, out, "epoch 2/30 batch 1/1")
    assert code != 0 and "interrupted: saved" in rest, rest[-3000:]
    saved = load_checkpoint(out / "last.pth")
    assert 1 <= saved["epoch"] < 30 and saved["extra"]["geometry"]["processes"] == 2
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                              "127.0.0.1", "--master_port", str(free_port()), str(TRAIN), "--resume", str(out),
                              "--opts", f"train.epochs={saved['epoch'] + 1}"],
                             capture_output=True, text=True, timeout=300, cwd=REPO,
                             env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == saved["epoch"] + 1


@pytest.mark.slow
def test_every_image_of_a_resumed_epoch_reaches_an_optimizer_step(tmp_path, twelve):
    """Resumed at image 3 with batches of 2 and accumulation 3: 4 batches are left (steps 1-4). Windows keep
    a straight run's alignment (steps 0-2, 3-5), cut short by the resume point and the epoch's end: steps 1-2
    and 3-4, and both reach the optimizer (the last one was lost before)."""
    cfg_path = write_config(tmp_path, twelve, epochs=1, batch_size=3, nominal_batch_size=3)
    cut = Trainer(load_config(cfg_path), tmp_path / "run", progress=False)
    _stopped_after(cut, 1)
    resumed = Trainer(load_config(cfg_path, ["train.batch_size=2", "train.nominal_batch_size=6"]), tmp_path / "run",
                      resume=tmp_path / "run" / "last.pth", progress=False)
    real_step, steps = resumed.optimizer.step, []
    resumed.optimizer.step = lambda *a, **k: (steps.append(resumed.images_in_epoch), real_step(*a, **k))[1]
    resumed.train()
    assert steps == [5, 9]  # after images 3-6 (steps 1-2), then 7-10 (steps 3-4); recorded before counting


# ------------------------------------------------------------------------------ stopping early, freezing


class ScriptedEvaluator:
    """Stands in for the Evaluator: the APs of successive evaluations, as given."""

    def __init__(self, aps):
        self.aps, self.dataset = list(aps), []  # no validation pictures to draw

    def evaluate(self, model, progress=False, loss_fn=None):
        ap = self.aps.pop(0)
        return {"AP": ap, "AP50": ap, "AP75": ap}


@pytest.mark.slow
def test_patience_stops_with_a_checkpoint_and_a_resume_continues_only_when_raised(tmp_path, shapes):
    cfg_path = write_config(tmp_path, shapes, epochs=6, eval_interval=1, patience=2, ema=False, batch_size=4,
                            nominal_batch_size=4)  # one step an epoch
    run = tmp_path / "run"
    trainer = Trainer(load_config(cfg_path), run, progress=False)
    trainer.evaluator = ScriptedEvaluator([0.1, 0.3, 0.2, 0.3])  # 0.3 again is not better
    metrics = trainer.train()
    assert metrics["stop_reason"].startswith("patience: no better AP in 2 evaluations since epoch 2")
    assert metrics["epochs_done"] == 4 and metrics["best_epoch"] == 2
    assert json.loads((run / "metrics.json").read_text())["stop_reason"] == metrics["stop_reason"]
    last, best = load_checkpoint(run / "last.pth"), load_checkpoint(run / "best.pth")
    assert (last["epoch"], best["epoch"], last["extra"]["eval_pending"]) == (4, 2, False)
    assert [h["epoch"] for h in last["extra"]["history"]] == [1, 2, 3, 4]  # no evaluation after the last one

    again = Trainer(load_config(cfg_path), run, resume=run / "last.pth", progress=False)
    again.evaluator = ScriptedEvaluator([])  # nothing is evaluated: the weights were, at this very epoch
    assert again.train()["stop_reason"].startswith("patience") and again.epoch == 4

    raised = Trainer(load_config(cfg_path, ["train.patience=4"]), run, resume=run / "last.pth", progress=False)
    raised.evaluator = ScriptedEvaluator([0.2, 0.2])  # 4 evaluations without a better AP: the last epoch
    metrics = raised.train()
    assert metrics["stop_reason"] == "completed" and metrics["epochs_done"] == 6
    assert (metrics["best_AP"], metrics["best_epoch"], len(metrics["history"])) == (0.3, 2, 6)


def _clock_jumps_after(trainer, steps: int, seconds: float) -> None:
    """After ``steps`` optimizer steps, ``seconds`` of the run's time are used up at once."""
    real_step, calls = trainer.optimizer.step, {"n": 0}

    def step_then_jump(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == steps:
            trainer.wall_time += seconds
        return out

    trainer.optimizer.step = step_then_jump


@pytest.mark.slow
def test_time_limit_stops_mid_epoch_with_a_checkpoint_and_a_final_evaluation(tmp_path, shapes):
    cfg_path = write_config(tmp_path, shapes, epochs=3, eval_interval=1000, time_limit=0.5)
    run = tmp_path / "run"
    trainer = Trainer(load_config(cfg_path), run, progress=False)
    trainer.evaluator = ScriptedEvaluator([0.25])
    _clock_jumps_after(trainer, 3, 1800.0)  # epoch 2, after its first of two steps
    metrics = trainer.train()  # returns: no KeyboardInterrupt
    reason = metrics["stop_reason"]
    assert reason.startswith("time_limit: 0.5") and "in epoch 2 at image 2 of 4" in reason
    assert metrics["epochs_done"] == 1 and [h["epoch"] for h in metrics["history"]] == [1.5]
    assert metrics["wall_time_s"] >= 1800 and (run / "metrics.json").is_file() and (run / "best.pth").is_file()
    last = load_checkpoint(run / "last.pth")
    assert (last["epoch"], last["extra"]["images_in_epoch"], last["extra"]["eval_pending"]) == (1, 2, False)
    assert last["extra"]["wall_time"] >= 1800

    # The budget is the run's: resumed as it is, the run is done; with more time it goes on from image 2.
    again = Trainer(load_config(cfg_path), run, resume=run / "last.pth", progress=False)
    again.evaluator = ScriptedEvaluator([])
    assert again.train()["stop_reason"].startswith("time_limit") and again.iteration == 3
    more = Trainer(load_config(cfg_path, ["train.time_limit=1"]), run, resume=run / "last.pth", progress=False)
    more.evaluator = ScriptedEvaluator([0.5])
    metrics = more.train()
    assert metrics["stop_reason"] == "completed" and metrics["epochs_done"] == 3 and more.iteration == 6
    assert [h["epoch"] for h in metrics["history"]] == [1.5, 3]


@pytest.mark.slow
def test_cli_time_limit_exits_normally_and_a_resume_without_it_finishes(tmp_path, shapes):
    cfg = write_config(tmp_path, shapes, epochs=2, time_limit=1e-7)  # spent before the first step
    out = tmp_path / "run"
    stopped = run_train("--config", cfg, "--out", out)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped early, time_limit" in stopped.stderr and "Traceback" not in stopped.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_reason"].startswith("time_limit") and metrics["epochs_done"] == 0
    assert [h["epoch"] for h in metrics["history"]] == [0] and (out / "last.pth").is_file()
    done = run_train("--resume", out, "--opts", "train.time_limit=null")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_reason"] == "completed" and metrics["epochs_done"] == 2
    assert "train.time_limit" in (out / "resumes.yaml").read_text()


def _batchnorms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.slow
@pytest.mark.parametrize("freeze, frozen_stages", [(3, 3), ("backbone", 6)])
def test_frozen_stages_stay_bit_identical_in_the_model_and_the_ema(tmp_path, shapes, freeze, frozen_stages):
    cfg = load_config(write_config(tmp_path, shapes, epochs=1, ema=True, freeze=freeze))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    stages = trainer.model.backbone.stage_modules()
    frozen, trained = stages[:frozen_stages], stages[frozen_stages:] + [trainer.model.head]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen + trained]
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for m in frozen for p in m.parameters()}
    assert all(id(p) in optimized for m in trained for p in m.parameters())
    trainer.train()
    trainer.model.train()  # as every epoch starts: the frozen BatchNorm layers stay in eval mode
    assert all(not bn.training for m in frozen for bn in _batchnorms(m))
    assert all(bn.training for m in trained for bn in _batchnorms(m))
    ema_stages = trainer.ema.module.backbone.stage_modules()
    for k, module in enumerate(frozen):  # weights and running statistics, in the model and in its EMA
        for name, value in module.state_dict().items():
            assert torch.equal(value, before[k][name]), name
            assert torch.equal(ema_stages[k].state_dict()[name], before[k][name]), name
    for k, module in enumerate(trained, start=len(frozen)):
        assert any(not torch.equal(p, before[k][n]) for n, p in module.named_parameters()), k  # they did train
    assert "frozen: " in (tmp_path / "run" / "train.log").read_text()


def test_an_unusable_validation_split_stops_the_run_before_it_trains(tmp_path, shapes):
    from yolo_asff.data.records import DatasetError

    cfg = load_config(write_config(tmp_path, shapes, epochs=1))
    cfg.data.val.ann_file = str(tmp_path / "no such file.json")
    with pytest.raises(DatasetError, match="no such file"):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pth").exists()


def test_mosaic_or_mixup_that_the_schedule_never_reaches_is_said(tmp_path, shapes, capsys):
    cfg = load_config(write_config(tmp_path, shapes, epochs=2))
    cfg.data.aug.mosaic_prob = 1.0
    cfg.train.no_mosaic_epochs = 15
    Trainer(cfg, tmp_path / "run", progress=False)
    assert "train.no_mosaic_epochs (15) covers the whole run (train.epochs=2)" in capsys.readouterr().err
