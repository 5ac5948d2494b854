"""``build_dataset`` / ``build_dataloader``: from a config to batches."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Optional, Union

import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ..config import Config
from .coco import load_coco
from .dataset import DetectionDataset, collate, worker_init
from .sampler import MultiScaleBatchSampler
from .transforms import EvalTransform, TrainTransform
from .voc import load_voc

__all__ = ["build_dataset", "build_dataloader", "under_root"]


def under_root(root: Union[str, os.PathLike], path: Union[str, os.PathLike]) -> Path:
    """A config path (``ann_file``, ``img_dir``) as used: kept when absolute, else under ``root`` (``data.root``).

    The one place this rule lives, so that the dataset, the evaluator and the tools read the same files.
    """
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def build_dataset(cfg: Config, split: str = "train") -> DetectionDataset:
    """The training (augmented) or validation (letterboxed to ``test.img_size``) dataset."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    d = cfg.data
    root = Path(d.root)
    if d.builtin:
        # Imported here so that `python -m yolo_asff.data.builtin` does not import itself twice.
        from .builtin import ensure_builtin

        ensure_builtin(root)
    part = d.train if split == "train" else d.val
    if d.format == "coco":
        ann = load_coco(under_root(root, part.ann_file), under_root(root, part.img_dir), d.class_names,
                        keep_empty=d.keep_empty_images or split == "val")
        records, names, category_ids = ann.records, ann.class_names, ann.category_ids
    else:
        ann = load_voc(root, [tuple(s) for s in part.splits], d.class_names, keep_empty=d.keep_empty_images or split == "val")
        records, names, category_ids = ann.records, ann.class_names, None
    if len(names) != cfg.model.num_classes:
        raise ValueError(
            f"the dataset has {len(names)} classes ({', '.join(names[:10])}{'…' if len(names) > 10 else ''}) "
            f"but model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(names)}"
        )
    if split == "train":
        transform = TrainTransform(d.aug, d.letterbox, seed=cfg.runtime.seed)
    else:
        size = cfg.test.img_size
        transform = EvalTransform((size, size) if isinstance(size, int) else tuple(size), d.letterbox)
    dataset = DetectionDataset(records, names, transform, d.use_difficult, cfg.train.mixup_prob, category_ids)
    dataset.reseed(cfg.runtime.seed)
    return dataset


def build_dataloader(
    cfg: Config, split: str = "train", dataset: Optional[DetectionDataset] = None, distributed: Optional[bool] = None
) -> DataLoader:
    """A DataLoader with workers, pinned memory and, under torch.distributed, a DistributedSampler.

    Training batches come from a :class:`MultiScaleBatchSampler`: call
    ``loader.batch_sampler.set_epoch(epoch)`` at the start of every epoch.
    """
    dataset = dataset if dataset is not None else build_dataset(cfg, split)
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    train = split == "train"
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=cfg.runtime.seed, drop_last=train)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.runtime.seed))
    else:
        sampler = SequentialSampler(dataset)
    workers = cfg.data.num_workers
    common = dict(
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=worker_init,
        collate_fn=partial(collate, mean=cfg.data.mean, std=cfg.data.std),
        generator=torch.Generator().manual_seed(cfg.runtime.seed),
    )
    if not train:
        return DataLoader(dataset, batch_size=cfg.test.batch_size, sampler=sampler, **common)
    t = cfg.train
    batches = MultiScaleBatchSampler(
        sampler, t.batch_size, t.epochs, cfg.data.img_size, cfg.data.multiscale_range, cfg.data.multiscale_interval,
        t.fixed_size_epochs, t.mixup, t.no_mixup_epochs, cfg.runtime.seed,
    )
    return DataLoader(dataset, batch_sampler=batches, **common)
