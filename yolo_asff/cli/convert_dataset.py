"""Convert a config's dataset (both splits) to COCO JSON, a VOC tree or YOLO txt, with a config that trains on it.

    python tools/convert_dataset.py --config configs/mydata.yaml --to yolo --out /data/mydata_yolo [--copy]

The dataset is read through the same readers as training (everything they fix, such as ids,
sizes and file names, is fixed in the output too); pictures are hard-linked (``--copy``: copied);
``OUT/config.yaml`` is the config pointed at the result. ``--out`` must not exist yet.
"""
from __future__ import annotations

from typing import List

from ..config import load_config
from ..data.convert import FORMATS, convert_dataset
from ..utils.cli import add_config_arguments, tool_main, tool_parser
from ..utils.logging import setup_logging


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "config whose data section describes the dataset", "data.root=/data/mine",
                         required=True)
    parser.add_argument("--to", required=True, choices=FORMATS, help="the format to write")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--copy", action="store_true", help="copy the pictures instead of hard-linking them")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    setup_logging()
    report = convert_dataset(cfg, args.to, args.out, copy_files=args.copy)
    print(f"wrote the {args.to} dataset in {report.out}:")
    for line in report.lines():
        print(f"  {line}")
    print(f"config: {report.config}\ntrain on it with: python tools/train.py --config {report.config}")
    return 0
