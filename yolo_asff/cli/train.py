"""Train a detector from a config.

    yolo-asff train --config builtin [--opts train.epochs=5 ...] [--out DIR] [--weights FILE] [--force]
    yolo-asff train --resume runs/builtin [--opts train.epochs=20]       # continue a run
    torchrun --nproc_per_node 4 -m yolo_asff train --config yolov3_asff_coco

``--config`` is a YAML file or a shipped config's name. A new run goes to ``--out`` or to
``runs/<config name>`` (``runs/<name>-2``, ... when that holds a run already); ``--force`` starts afresh
in an ``--out`` that holds a run, moving the old one aside. ``--resume`` continues a run from its folder
or a checkpoint, with the config saved with it; ``--opts`` (or ``--config``) may then change only what
is safe mid-run (epochs, intervals, logging, workers, batch size and accumulation, device), and the
change is recorded in ``resumes.yaml``. ``--weights`` starts from a checkpoint or a Darknet file
(``darknet53.conv.74``), skipping tensors of another shape (another class count); ``train.freeze``
keeps the backbone, or its first stages, as loaded.

``train.patience`` (evaluations without a better AP) and ``train.time_limit`` (hours of the whole run)
end a run early with exit status 0, ``last.pth`` saved, a final evaluation and ``metrics.json`` saying
why (``stop_reason``). Resuming it continues only with the budget raised:
``--resume runs/NAME --opts train.time_limit=12``. SIGTERM or Ctrl-C save and exit with status 130.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Tuple

from ..config import Config, load_config
from ..engine import dist
from ..engine.runs import record_resume, resume_checkpoint, resumed_config, run_folder
from ..engine.trainer import Trainer
from ..errors import YoloAsffError
from ..utils.cli import UserError, tool_main
from ..utils.logging import get_logger, setup_logging


def default_out_dir(cfg: Config) -> Path:
    name = cfg.runtime.name or Path(cfg.source).stem or "run"
    return Path(cfg.runtime.output_dir) / name


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file or shipped config name")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", help="run folder (default runs/<config name>, numbered when taken)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                        help="continue a run: its folder, a checkpoint, or (alone) the last.pth of --out / the config's "
                             "folder")
    parser.add_argument("--weights", help="initial weights: a checkpoint or a Darknet .weights / .conv.74 file")
    parser.add_argument("--force", action="store_true", help="start afresh in an --out that holds a run (the old run "
                        "is moved aside)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    return parser.parse_args(argv)


def _decide(args: argparse.Namespace) -> Tuple[Config, Path, Optional[Path], dict]:
    """The config, run folder, checkpoint to resume (or None) and the changes a resume makes."""
    if args.resume is not None:
        if args.weights or args.force:
            raise UserError(f"{'--weights' if args.weights else '--force'} cannot be combined with --resume: a resumed "
                            "run continues from its own checkpoint (start a new run to use them)")
        if args.resume and args.out and Path(args.resume).resolve() not in (Path(args.out).resolve(),
                                                                            Path(args.out).resolve() / "last.pth"):
            raise UserError(f"--resume {args.resume} and --out {args.out} name different runs: a resumed run stays "
                            "in its folder (leave out --out)")
        default = default_out_dir(load_config(args.config, args.opts)) if args.config and args.out is None else None
        checkpoint = resume_checkpoint(args.resume, args.out, default)
        cfg, changes = resumed_config(checkpoint, args.config, args.opts)
        return cfg, checkpoint.parent, checkpoint, changes
    if not args.config:
        raise UserError("--config is required (or --resume runs/NAME to continue a run with its saved config)")
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights: file not found: {args.weights}")
    cfg = load_config(args.config, args.opts)
    return cfg, Path(args.out) if args.out else default_out_dir(cfg), None, {}


def _new_run_folder(cfg: Config, args: argparse.Namespace, default: Path) -> Path:
    """The folder of a new run, decided on rank 0 (it may number or move folders), the same on every rank."""
    folder, message = None, None
    if dist.is_main_process():
        try:
            folder, notes = run_folder(cfg, args.out, args.force, default)
            for note in notes:
                get_logger("train").info("%s", note)
        except YoloAsffError as exc:
            message = str(exc)
    folder, message = dist.broadcast_object((str(folder) if folder else None, message))
    if message is not None:
        raise UserError(message)
    return Path(folder)


@tool_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    trainer, out = None, None
    try:
        cfg, out, checkpoint, changes = _decide(args)  # reads files only: every rank decides the same
        dist.init_distributed(cfg.runtime.device)
        if not dist.is_main_process():
            get_logger().setLevel(logging.WARNING)  # rank 0 tells; the others speak up only about problems
        if checkpoint is None:
            out = _new_run_folder(cfg, args, out)
        trainer = Trainer(cfg, out, resume=checkpoint, weights=args.weights,
                          progress=False if args.no_progress else None)
        if checkpoint is not None and dist.is_main_process():
            if changes:
                get_logger("train").warning("resumed with changed settings: %s", ", ".join(
                    f"{k} {b!r} (was {a!r})" for k, (a, b) in changes.items()))
            record_resume(out, checkpoint, changes, f"epoch {trainer.epoch + 1}, image {trainer.images_in_epoch}")
        trainer.train()
        return 0
    except KeyboardInterrupt:
        if trainer is not None and trainer.saved_on_stop:
            raise KeyboardInterrupt(f"interrupted: saved; continue with --resume {out}") from None
        raise KeyboardInterrupt(f"stopped at once, without saving: --resume {out} continues from the last checkpoint "
                                "saved, if there is one") from None
    finally:
        dist.cleanup()
