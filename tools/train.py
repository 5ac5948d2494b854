"""Train a detector from a config.

    python tools/train.py --config configs/builtin.yaml [--opts train.epochs=5 ...] [--out DIR]
                          [--resume [CKPT]] [--weights FILE] [--force]
    torchrun --nproc_per_node 4 tools/train.py --config configs/yolov3_asff_coco.yaml

``--out`` defaults to ``runs/<config name>`` (``runtime.output_dir`` / ``runtime.name``).
``--resume`` alone continues ``DIR/last.pth``; with a path, that checkpoint (its config is
used when ``--config`` is left out). ``--weights`` starts from a checkpoint or a Darknet
file (``darknet53.conv.74``), skipping tensors of another shape (another class count).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.config import Config, ConfigError, config_from_dict, load_config  # noqa: E402
from yolo_asff.engine import dist  # noqa: E402
from yolo_asff.engine.checkpoint import load_checkpoint  # noqa: E402
from yolo_asff.engine.trainer import Trainer  # noqa: E402
from yolo_asff.utils.cli import UserError, tool_main  # noqa: E402
from yolo_asff.utils.logging import setup_logging  # noqa: E402


def default_out_dir(cfg: Config) -> Path:
    name = cfg.runtime.name or Path(cfg.source).stem or "run"
    return Path(cfg.runtime.output_dir) / name


def _config_from_checkpoint(path: Path, opts: Sequence[str]) -> Config:
    """The config saved in checkpoint ``path``, with ``opts`` applied (errors name the checkpoint)."""
    saved = load_checkpoint(path).get("config")
    if not saved:
        raise ConfigError(f"{path} holds no config: pass --config with the run's config file")
    cfg = config_from_dict(saved, opts, source=str(path))
    # Runs are named after cfg.source: the run folder's config.yaml, as if it had been passed with --config.
    cfg.source = str(path.parent / "config.yaml")
    return cfg


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                        help="continue a run: DIR/last.pth, or the checkpoint given")
    parser.add_argument("--weights", help="initial weights: a checkpoint or a Darknet .weights / .conv.74 file")
    parser.add_argument("--force", action="store_true", help="start afresh in a folder that already holds a run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    return parser.parse_args(argv)


@tool_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        if args.config:
            cfg = load_config(args.config, args.opts)
        elif args.resume:
            cfg = _config_from_checkpoint(Path(args.resume), args.opts)
        else:
            raise UserError("--config is required (or --resume CKPT to continue a run with its saved config)")
        out = Path(args.out) if args.out else (Path(args.resume).parent if args.resume else default_out_dir(cfg))
        resume = None
        if args.resume is not None:
            resume = Path(args.resume) if args.resume else out / "last.pth"
            if not resume.is_file():
                raise UserError(f"nothing to resume: {resume} does not exist (train without --resume to start a run, "
                                "or pass the checkpoint: --resume path/to/last.pth)")
        elif (out / "last.pth").exists() and not args.force:
            raise UserError(f"{out} already holds a run (last.pth). Continue it with --resume, start afresh there "
                            "with --force, or choose another folder with --out")
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file, not a folder: choose another --out")
        if args.weights and not Path(args.weights).is_file():
            raise UserError(f"--weights: file not found: {args.weights}")
        trainer = Trainer(cfg, out, resume=resume, weights=args.weights,
                          progress=False if args.no_progress else None)
        trainer.train()
        return 0
    except KeyboardInterrupt:
        raise KeyboardInterrupt("interrupted: the last checkpoint was saved; continue with --resume") from None
    finally:
        dist.cleanup()


if __name__ == "__main__":
    sys.exit(main())
