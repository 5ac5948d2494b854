"""Write grids of augmented training samples with their boxes and class names: what the model will see.

Prints the data summary first (images, boxes per class, problems found), as the trainer does;
``tools/check_dataset.py`` checks both splits in more detail.

    python tools/browse_dataset.py --config configs/builtin.yaml [--num 16] [--out runs/browse] [--size 416]

The job itself is :func:`yolo_asff.data.browse.browse_dataset`.
"""
from __future__ import annotations

from typing import List

from ..data.browse import browse_dataset
from ..utils.cli import add_config_arguments, add_size_argument, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "config YAML or shipped config name (its data section)", "data.root=/data/mine",
                         required=True)
    parser.add_argument("--num", type=int, default=16, help="samples to draw")
    add_size_argument(parser, "data.img_size")
    parser.add_argument("--out", default="runs/browse", help="output folder")
    parser.add_argument("--no-mixup", dest="mixup", action="store_false", help="show samples without mixup")
    parser.add_argument("--no-mosaic", dest="mosaic", action="store_false", help="show samples without mosaic")
    parser.add_argument("--seed", type=int, default=0)
    browse_dataset(**vars(parser.parse_args(argv)))
    return 0
