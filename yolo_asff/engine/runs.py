"""Run folders: where a run goes, how it resumes, and what a resume may change.

- A new run goes to ``--out``, or to ``runs/<name>``; a default folder that already holds a run is
  not refused but numbered (``runs/<name>-2``, ``-3``, ...). ``--out`` naming a folder that holds a run
  needs ``--resume`` (continue it) or ``--force`` (start afresh: the old folder is moved aside to
  ``<folder>.replaced-<time>``, so its log and TensorBoard events never mix with the new run's).
- A resumed run uses the config saved with it. ``--config`` / ``--opts`` given with ``--resume`` may
  only change what is safe to change mid-run (:data:`SAFE_ON_RESUME`: length, early-stopping budgets,
  intervals, logging, workers, batch geometry, device); anything else is refused, naming the keys. The run's
  ``config.yaml`` is never rewritten: each resume appends a record to ``resumes.yaml``.

:func:`run_training` is ``yolo-asff train``: it plans the run (:func:`plan_run`), makes its folder on
rank 0, and hands it to the :class:`~yolo_asff.engine.trainer.Trainer`.
"""
from __future__ import annotations

import datetime
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import yaml

from ..config import Config, config_from_dict, load_config
from ..errors import YoloAsffError
from ..io.checkpoint import load_checkpoint
from ..utils.files import atomic_write, numbered_folder
from ..utils.logging import get_logger, setup_logging
from . import dist
from .anchors import checkpoint_anchors
from .trainer import Trainer

__all__ = ["RunError", "RunPlan", "SAFE_ON_RESUME", "default_run_folder", "holds_run", "plan_run", "record_resume",
           "resume_checkpoint", "resumed_config", "run_folder", "run_training"]

PathLike = Union[str, os.PathLike]

# What a resumed run may change: how long it runs and how often it evaluates, saves and logs; how the
# data is loaded; the batch geometry (the position is kept in images, see Trainer); where it runs.
SAFE_ON_RESUME = (
    "train.epochs", "train.eval_interval", "train.save_interval", "runtime.log_interval", "runtime.threads",
    "runtime.device", "runtime.deterministic", "data.num_workers", "train.batch_size", "train.nominal_batch_size",
    # where the data is (moved to another disk, or grown: the position keeps its fraction of the epoch)
    "data.root", "data.train.ann_file", "data.train.img_dir", "data.val.ann_file", "data.val.img_dir",
    "data.yolo_file", "data.train.splits", "data.val.splits",
    # when to stop early: budgets of the run (a run stopped on one continues when it is raised)
    "train.patience", "train.time_limit",
    # evaluation only
    "test.batch_size", "test.img_size", "test.conf_thresh", "test.nms_thresh", "test.max_det", "test.coco_backend",
    "test.show_thresh",
    # how the step runs, not what it computes
    "train.compile",
    # naming only (a resumed run stays in its folder)
    "runtime.output_dir", "runtime.name",
)


class RunError(YoloAsffError, RuntimeError):
    """A run folder or resume that cannot be used as asked; the message says what to do."""


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run of ours: a checkpoint, or the config and log a run starts with (a
    folder of the user's holding just a config.yaml is not one)."""
    return (folder / "last.pth").exists() or ((folder / "config.yaml").exists() and (folder / "train.log").exists())


def _flat(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_checkpoint(resume: str, out: Optional[PathLike], config_out: Optional[Path]) -> Path:
    """The checkpoint ``--resume`` means: a checkpoint file, a run folder (its ``last.pth``), or with no
    value the ``last.pth`` of ``--out`` (or of the config's default folder ``config_out``)."""
    if resume:
        path = Path(resume)
        path = path / "last.pth" if path.is_dir() else path
    elif out is not None or config_out is not None:
        path = Path(out if out is not None else config_out) / "last.pth"
    else:
        raise RunError("--resume needs a run: --resume runs/NAME (its folder), --resume path/to/last.pth, or "
                       "--config with the run's config")
    if not path.is_file():
        raise RunError(f"nothing to resume: {path} does not exist (train without --resume to start a run, or pass "
                       "the run's folder or checkpoint: --resume runs/NAME)")
    return path


def resumed_config(checkpoint: Path, config: Optional[PathLike], opts: Sequence[str]) -> Tuple[Config, Dict[str, Tuple]]:
    """The config a resumed run uses (its saved one), with the safe changes ``config`` / ``opts`` ask for.

    Returns the config and ``{key: (saved, new)}`` of what changed.

    Raises:
        RunError: the checkpoint holds no config, or a change outside :data:`SAFE_ON_RESUME` is asked for
            (every such key is named with both values).
    """
    saved = load_checkpoint(checkpoint).get("config")
    if not saved:
        raise RunError(f"{checkpoint} holds no config, so it cannot be resumed as a run; start from it with "
                       "--weights instead")
    base = config_from_dict(saved, source=f"{checkpoint} (its saved config)")
    wanted = load_config(config, opts) if config is not None else config_from_dict(saved, opts, source=str(checkpoint))
    checkpoint_anchors(wanted, base.to_dict()["model"])  # a config saying auto: the anchors the run fitted
    before, after = _flat(base.to_dict()), _flat(wanted.to_dict())
    changes = {k: (before.get(k), after.get(k)) for k in after if before.get(k) != after.get(k)}
    unsafe = {k: v for k, v in changes.items() if k not in SAFE_ON_RESUME}
    if unsafe:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(unsafe.items())[:8])
        more = f" and {len(unsafe) - 8} more" if len(unsafe) > 8 else ""
        raise RunError(
            f"resuming {checkpoint} would change {len(unsafe)} setting(s) of the run that cannot change mid-run: "
            f"{shown}{more}. A resumed run uses its own config (leave out --config); only "
            f"{', '.join(SAFE_ON_RESUME)} may be changed, with --opts. Start a new run for anything else")
    wanted.source = str(checkpoint.parent / "config.yaml")
    return wanted, changes


def run_folder(cfg: Config, out: Optional[PathLike], force: bool, default: Path) -> Tuple[Path, List[str]]:
    """The folder of a new run, and what was done to make it free (lines to log).

    ``out`` given: used as it is; holding a run, it needs ``force`` (the old folder is then moved aside),
    except a run that stopped before its first checkpoint (a failed start), which is moved aside anyway.
    Not given: ``default``, numbered when it holds a run already.

    Raises:
        RunError: ``out`` holds a run and ``force`` is off, or it is a file.
    """
    notes: List[str] = []
    if out is None:
        folder = numbered_folder(default, taken=holds_run)
        if folder != default:
            notes.append(f"{default} holds a run already: this one goes to {folder}")
        return folder, notes
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder} is a file, not a folder: choose another --out")
    if holds_run(folder):
        failed_start = not (folder / "last.pth").exists() and not (folder / "best.pth").exists()
        if not force and not failed_start:
            raise RunError(f"{folder} already holds a run. Continue it with --resume {folder}, start afresh there "
                           "with --force (the old run is moved aside), or choose another folder with --out")
        aside = _move_aside(folder, "--force" if force else "a new start")
        why = "--force: the old run" if not failed_start else "a run that stopped before its first checkpoint"
        notes.append(f"{why} in {folder} was moved to {aside} (nothing deleted)")
    return folder, notes


def _move_aside(folder: Path, why: str) -> Path:
    """Rename ``folder`` to ``<folder>.replaced-<time>`` (numbered if taken); returns the new path."""
    real = folder.resolve()
    if real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        raise RunError(f"{why} would move {folder} aside, and this command runs inside it: run it from "
                       "another folder, or choose another --out")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = numbered_folder(real.with_name(f"{real.name}.replaced-{stamp}"))
    try:
        real.rename(aside)
    except OSError as exc:
        raise RunError(f"{why}: cannot move the old run {folder} aside to {aside}: {exc.strerror or exc}") from exc
    return aside


def record_resume(folder: Path, checkpoint: Path, changes: Mapping[str, Tuple], position: str) -> None:
    """Append what this resume changed to ``folder/resumes.yaml`` (config.yaml is never rewritten)."""
    path = folder / "resumes.yaml"
    entries = []
    if path.is_file():
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    entries.append({
        "time": datetime.datetime.now().isoformat(timespec="seconds"), "checkpoint": str(checkpoint),
        "position": position, "command": " ".join([sys.argv[0], *map(shlex.quote, sys.argv[1:])]),
        "changed": {k: {"was": a, "now": b} for k, (a, b) in changes.items()},
    })
    text = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ----------------------------------------------------------------------------- yolo-asff train


def default_run_folder(cfg: Config) -> Path:
    """``runtime.output_dir/<runtime.name or the config file's name>``, before any numbering."""
    name = cfg.runtime.name or Path(cfg.source).stem or "run"
    return Path(cfg.runtime.output_dir) / name


class RunPlan(NamedTuple):
    """What a train command means: the config, the run folder (before numbering, for a new run), the checkpoint
    to resume (None for a new run) and ``{key: (saved, new)}`` of the settings a resume changes."""

    cfg: Config
    folder: Path
    checkpoint: Optional[Path]
    changes: Dict[str, Tuple]


def plan_run(config: Optional[PathLike], opts: Sequence[str] = (), out: Optional[PathLike] = None,
             resume: Optional[str] = None, weights: Optional[PathLike] = None, force: bool = False) -> RunPlan:
    """Decide, from files only (so every rank decides the same), what ``yolo-asff train`` is asked to do.

    ``resume``: None for a new run; ``""`` for the ``last.pth`` of ``out`` or of the config's default folder;
    else a run folder or a checkpoint.

    Raises:
        RunError: a combination that cannot work (``resume`` with ``weights``, ``force`` or another ``out``; a new
            run without ``config``; missing ``weights``), or see :func:`resume_checkpoint` and :func:`resumed_config`.
        ConfigError: a bad config or override.
    """
    if resume is not None:
        if weights or force:
            raise RunError(f"{'--weights' if weights else '--force'} cannot be combined with --resume: a resumed "
                           "run continues from its own checkpoint (start a new run to use them)")
        if resume and out and Path(resume).resolve() not in (Path(out).resolve(), Path(out).resolve() / "last.pth"):
            raise RunError(f"--resume {resume} and --out {out} name different runs: a resumed run stays "
                           "in its folder (leave out --out)")
        default = default_run_folder(load_config(config, opts)) if config and out is None else None
        checkpoint = resume_checkpoint(resume, out, default)
        cfg, changes = resumed_config(checkpoint, config, opts)
        return RunPlan(cfg, checkpoint.parent, checkpoint, changes)
    if not config:
        raise RunError("--config is required (or --resume runs/NAME to continue a run with its saved config)")
    if weights and not Path(weights).is_file():
        raise RunError(f"--weights: file not found: {weights}")
    cfg = load_config(config, opts)
    return RunPlan(cfg, Path(out) if out else default_run_folder(cfg), None, {})


def _new_run_folder(cfg: Config, out: Optional[PathLike], force: bool, default: Path) -> Path:
    """The folder of a new run, decided on rank 0 (it may number or move folders), the same on every rank."""
    folder, message = None, None
    if dist.is_main_process():
        try:
            folder, notes = run_folder(cfg, out, force, default)
            for note in notes:
                get_logger("train").info("%s", note)
        except YoloAsffError as exc:
            message = str(exc)
    folder, message = dist.broadcast_object((str(folder) if folder else None, message))
    if message is not None:
        raise RunError(message)
    return Path(folder)


def run_training(config: Optional[PathLike] = None, opts: Sequence[str] = (), out: Optional[PathLike] = None,
                 resume: Optional[str] = None, weights: Optional[PathLike] = None, force: bool = False,
                 progress: Optional[bool] = None) -> None:
    """``yolo-asff train``: start a run (``config``, ``opts``, ``out``, ``weights``, ``force``) or continue one
    (``resume``, see :func:`plan_run`), on one process or under torchrun, until it ends or stops early.

    A resume's changed settings are logged and recorded in ``resumes.yaml``. ``progress``: progress bars
    (None: on a terminal).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM; its message says whether the run was saved and how to continue.
        YoloAsffError: what :func:`plan_run`, :func:`run_folder` or the trainer refuse.
    """
    setup_logging()
    trainer, folder = None, out
    try:
        plan = plan_run(config, opts, out, resume, weights, force)
        folder = plan.folder
        dist.init_distributed(plan.cfg.runtime.device)
        if not dist.is_main_process():
            get_logger().setLevel(logging.WARNING)  # rank 0 tells; the others speak up only about problems
        if plan.checkpoint is None:
            folder = _new_run_folder(plan.cfg, out, force, plan.folder)
        trainer = Trainer(plan.cfg, folder, resume=plan.checkpoint, weights=weights, progress=progress)
        if plan.checkpoint is not None and dist.is_main_process():
            if plan.changes:
                get_logger("train").warning("resumed with changed settings: %s", ", ".join(
                    f"{k} {b!r} (was {a!r})" for k, (a, b) in plan.changes.items()))
            record_resume(folder, plan.checkpoint, plan.changes,
                          f"epoch {trainer.epoch + 1}, image {trainer.images_in_epoch}")
        trainer.train()
    except KeyboardInterrupt:
        if trainer is not None and trainer.saved_on_stop:
            raise KeyboardInterrupt(f"interrupted: saved; continue with --resume {folder}") from None
        raise KeyboardInterrupt(f"stopped at once, without saving: --resume {folder} continues from the last "
                                "checkpoint saved, if there is one") from None
    finally:
        dist.cleanup()
