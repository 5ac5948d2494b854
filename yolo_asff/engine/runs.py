"""Run folders: where a run goes, how it resumes, and what a resume may change.

- A new run goes to ``--out``, or to ``runs/<name>``; a default folder that already holds a run is
  not refused but numbered (``runs/<name>-2``, ``-3``, ...). ``--out`` naming a folder that holds a run
  needs ``--resume`` (continue it) or ``--force`` (start afresh: the old folder is moved aside to
  ``<folder>.replaced-<time>``, so its log and TensorBoard events never mix with the new run's).
- A resumed run uses the config saved with it. ``--config`` / ``--opts`` given with ``--resume`` may
  only change what is safe to change mid-run (:data:`SAFE_ON_RESUME`: length, early-stopping budgets,
  intervals, logging, workers, batch geometry, device); anything else is refused, naming the keys. The run's
  ``config.yaml`` is never rewritten: each resume appends a record to ``resumes.yaml``.
"""
from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from ..config import Config, config_from_dict, load_config
from ..errors import YoloAsffError
from ..utils.files import atomic_write, numbered_folder
from .anchors import checkpoint_anchors
from .checkpoint import load_checkpoint

__all__ = ["RunError", "SAFE_ON_RESUME", "holds_run", "record_resume", "resume_checkpoint", "resumed_config",
           "run_folder"]

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
