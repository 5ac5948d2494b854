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
the package; ``tools/<name>.py`` in a clone runs the same ``main`` through :func:`launch`. Errors a
user can fix end in one line and exit status 2, Ctrl-C in 130 (:func:`yolo_asff.utils.cli.tool_main`,
which wraps this dispatcher and every subcommand).
"""
from __future__ import annotations

import importlib
import sys
from typing import List

from ..utils.cli import ToolMain, UserError, tool_main

__all__ = ["COMMANDS", "launch", "main"]

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
    from ..version import __version__

    width = max(map(len, COMMANDS))
    lines = [f"yolo-asff {__version__}: YOLOv3 with ASFF (training, evaluation, inference)", "",
             "usage: yolo-asff COMMAND [options]   (yolo-asff COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _command_main(command: str) -> ToolMain:
    return importlib.import_module(f".{COMMANDS[command][0]}", __name__).main


def launch(command: str, caller: str) -> ToolMain:
    """What ``tools/<name>.py`` runs: ``command``'s ``main``, called at once with the exit status going to the
    shell when ``caller`` (the launcher's ``__name__``) is ``"__main__"``, else returned (tests import it)."""
    main = _command_main(command)
    if caller == "__main__":
        sys.exit(main())
    return main


@tool_main
def main(argv: List[str]) -> int:
    """Run ``yolo-asff COMMAND ...``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from ..version import __version__

        print(f"yolo-asff {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown command '{command}'{hint}\n\n{_usage()}")
    sys.argv = [f"yolo-asff {command}", *rest]  # argparse's usage line, and what runs record as the command
    return _command_main(command)(rest)
