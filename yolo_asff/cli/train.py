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
The job itself is :func:`yolo_asff.engine.runs.run_training`.
"""
from __future__ import annotations

from typing import List

from ..engine.runs import run_training
from ..utils.cli import add_config_arguments, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "YAML config file or shipped config name", "train.epochs=5")
    parser.add_argument("--out", help="run folder (default runs/<config name>, numbered when taken)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                        help="continue a run: its folder, a checkpoint, or (alone) the last.pth of --out / the config's "
                             "folder")
    parser.add_argument("--weights", help="initial weights: a checkpoint or a Darknet .weights / .conv.74 file")
    parser.add_argument("--force", action="store_true", help="start afresh in an --out that holds a run (the old run "
                        "is moved aside)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                        help="no progress bars (log lines only)")
    run_training(**vars(parser.parse_args(argv)))
    return 0
