"""Check a config's dataset without training: what the trainer would read, and what is wrong with it.

    python tools/check_dataset.py --config configs/mydata.yaml [--split train|val] [--opts key=value ...]

Prints, for each split, the summary the trainer prints at start (images, boxes per class, images
without boxes, every problem found with its count and example files) and the box size
distribution per class. Exit status 0 when training can use the data, 1 when a split is unusable
(missing files, no box of the configured classes, a class count that is not model.num_classes),
2 for a bad config or command line.
"""
from __future__ import annotations

from typing import List

from ..config import load_config
from ..data.check import box_size_table, check_dataset
from ..utils.cli import add_config_arguments, tool_main, tool_parser
from ..utils.logging import setup_logging


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "config YAML or shipped config name (its data section)", "data.root=/data/mine",
                         required=True)
    parser.add_argument("--split", choices=("train", "val"), help="check one split (default: both)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    setup_logging()
    checks = check_dataset(cfg, [args.split] if args.split else ["train", "val"])
    for split, check in checks.items():
        if check.annotations is not None:
            ann = check.annotations
            print(f"\nbox sizes in the {split} split (pixels of the pictures):")
            print(box_size_table(ann.records, ann.class_names))
    print()
    for split, check in checks.items():
        print(f"{split}: " + ("usable" if check.usable else f"UNUSABLE: {check.error}"))
    return 0 if all(c.usable for c in checks.values()) else 1
