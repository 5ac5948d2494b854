"""Model smoke check: build a config's model, print its size and cost, run it on one image.

    yolo-asff info --config configs/yolov3_asff_coco.yaml [--image photo.jpg] [--size 608 | --size H W]
    (tools/model_info.py in a clone)

The picture (default: the shipped sample photo) is letterboxed and normalised as at inference. The job
itself is :func:`yolo_asff.engine.model_info.model_info`.
"""
from __future__ import annotations

from typing import List

from ..engine.model_info import model_info
from ..utils.cli import add_config_arguments, add_size_argument, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "model config YAML or shipped config name", "model.num_classes=20", required=True)
    parser.add_argument("--image", help="image file (default: the shipped sample photo)")
    add_size_argument(parser, "test.img_size of the config")
    model_info(**vars(parser.parse_args(argv)))
    return 0
