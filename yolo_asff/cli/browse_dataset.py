"""Write grids of augmented training samples with their boxes and class names: what the model will see.

Prints the data summary first (images, boxes per class, problems found), as the trainer does;
``tools/check_dataset.py`` checks both splits in more detail.

    python tools/browse_dataset.py --config configs/builtin.yaml [--num 16] [--out runs/browse] [--size 416]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np


from .. import load_config
from ..data import SampleRequest, build_dataset
from ..utils.cli import tool_main
from ..utils.files import check_writable, make_dir
from ..utils.logging import setup_logging
from ..utils.visualize import draw_boxes, image_grid


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--num", type=int, default=16, help="samples to draw")
    parser.add_argument("--size", type=int, help="input size (default: data.img_size)")
    parser.add_argument("--out", default="runs/browse", help="output folder")
    parser.add_argument("--no-mixup", action="store_true", help="show samples without mixup")
    parser.add_argument("--no-mosaic", action="store_true", help="show samples without mosaic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    check_writable(args.out, "--out folder", folder=True)
    setup_logging()  # the readers' summary: images, boxes per class, problems found
    dataset = build_dataset(cfg, "train")
    size = args.size or (cfg.data.img_size if isinstance(cfg.data.img_size, int) else None)
    hw = (size, size) if size else tuple(cfg.data.img_size)
    dataset.reseed(args.seed)
    rng = np.random.default_rng(args.seed)
    mixup = cfg.train.mixup and not args.no_mixup
    tiles = []
    for index in rng.choice(len(dataset), size=min(args.num, len(dataset)), replace=False):
        sample = dataset[SampleRequest(int(index), hw, mixup, mosaic=not args.no_mosaic)]
        tile = draw_boxes(sample["image"], sample["boxes"], sample["labels"], dataset.class_names,
                          scores=sample["weights"] if (sample["weights"] < 1).any() else None)
        tiles.append(tile)
    path = make_dir(args.out) / "train_samples.jpg"
    cv2.imwrite(str(path), image_grid(tiles, columns=4, cell=hw))
    print(f"wrote {len(tiles)} augmented samples at {hw[0]}x{hw[1]} to {path} (numbers on boxes are mixup weights)")
    return 0
