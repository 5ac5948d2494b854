"""``yolo-asff browse``: augmented training samples drawn with their boxes, as the model will see them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..config import Config, load_config
from ..utils.files import check_writable, make_dir
from ..utils.logging import setup_logging
from ..utils.sizes import Size, parse_size
from ..utils.visualize import draw_boxes, image_grid
from .build import build_dataset
from .sampler import SampleRequest

__all__ = ["browse_dataset", "sample_tiles"]


def sample_tiles(cfg: Config, num: int = 16, size: Tuple[int, int] = (608, 608), seed: int = 0, mixup: bool = True,
                 mosaic: bool = True) -> List[np.ndarray]:
    """``num`` distinct training samples (at most the dataset's size), augmented at ``size = (h, w)`` as the loader
    makes them (``mixup`` and ``mosaic`` as the config allows), drawn as BGR pictures with their boxes and class
    names; a box's number is its mixup weight when below 1. The same for a seed."""
    dataset = build_dataset(cfg, "train")
    dataset.reseed(seed)
    rng = np.random.default_rng(seed)
    tiles = []
    for index in rng.choice(len(dataset), size=min(num, len(dataset)), replace=False):
        sample = dataset[SampleRequest(int(index), size, cfg.train.mixup and mixup, mosaic=mosaic)]
        tiles.append(draw_boxes(sample["image"], sample["boxes"], sample["labels"], dataset.class_names,
                                scores=sample["weights"] if (sample["weights"] < 1).any() else None))
    return tiles


def browse_dataset(config: Union[str, os.PathLike], opts: Sequence[str] = (), *, num: int = 16,
                   size: Optional[Size] = None, out: Union[str, os.PathLike] = "runs/browse", mixup: bool = True,
                   mosaic: bool = True, seed: int = 0) -> Path:
    """Write ``out/train_samples.jpg``, a grid of :func:`sample_tiles` at ``size`` (default ``data.img_size``),
    after the data summary the trainer logs; returns its path.

    Raises:
        ConfigError, DatasetError: a bad config or unusable training data. OutputError: ``out`` cannot be written.
        InvalidInputError: a bad size.
    """
    cfg = load_config(config, opts)
    hw = parse_size(size if size is not None else cfg.data.img_size, "--size" if size is not None else "data.img_size")
    check_writable(out, "--out folder", folder=True)
    setup_logging()  # the readers' summary: images, boxes per class, problems found
    tiles = sample_tiles(cfg, num, hw, seed, mixup, mosaic)
    path = make_dir(out) / "train_samples.jpg"
    cv2.imwrite(str(path), image_grid(tiles, columns=4, cell=hw))
    print(f"wrote {len(tiles)} augmented samples at {hw[0]}x{hw[1]} to {path} (numbers on boxes are mixup weights)")
    return path
