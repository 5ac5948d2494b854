"""The ``yolo-asff`` command line: one command, a subcommand per job.

    yolo-asff train --config builtin                      # a shipped config by name, or any YAML path
    yolo-asff eval --weights runs/builtin/best.pth        # the config comes from the checkpoint
    yolo-asff demo --weights best.pth --source photo.jpg
    yolo-asff export --weights best.pth --out model.onnx
    yolo-asff benchmark infer --config yolov3_asff_coco
    yolo-asff convert --config mydata.yaml --to yolo --out /data/mydata_yolo
    yolo-asff check --config mydata.yaml
    yolo-asff anchors --config mydata.yaml                # anchors fitted to the training boxes
    python -m yolo_asff ...                               # the same

Each subcommand is a module here whose ``main(argv)`` parses its arguments and makes one call into
the package; ``tools/<name>.py`` in a clone runs the same ``main``. Errors a user can fix end in one
line and exit status 2 (:func:`yolo_asff.utils.cli.tool_main`).
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

__all__ = ["COMMANDS", "main"]

# subcommand -> (module in this package, what it does)
COMMANDS = {
    "train": ("train", "train a detector (one GPU, CPU, or torchrun)"),
    "eval": ("evaluate", "COCO / VOC mAP of weights on a validation set"),
    "demo": ("demo", "detect objects in pictures, folders, videos or a webcam"),
    "export": ("export", "export to ONNX (optionally with NMS)"),
    "benchmark": ("benchmark", "inference, training-step and data-pipeline speed"),
    "convert": ("convert_dataset", "write a dataset as COCO, VOC or YOLO txt"),
    "check": ("check_dataset", "check a dataset without training"),
    "anchors": ("fit_anchors", "fit anchors to a dataset's boxes (best-possible recall before and after)"),
    "browse": ("browse_dataset", "draw augmented training samples"),
    "info": ("model_info", "a model's size, cost and one forward pass"),
    "convert-official": ("convert_official", "an official ASFF checkpoint -> ours"),
}


def _usage() -> str:
    from .. import __version__

    width = max(map(len, COMMANDS))
    lines = [f"yolo-asff {__version__}: YOLOv3 with ASFF (training, evaluation, inference)", "",
             "usage: yolo-asff COMMAND [options]   (yolo-asff COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``yolo-asff COMMAND ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"yolo-asff {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"error: unknown command '{command}'{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".{COMMANDS[command][0]}", __name__)
    sys.argv = [f"yolo-asff {command}", *rest]  # argparse's usage line, and what runs record as the command
    return module.main(rest)
