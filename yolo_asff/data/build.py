"""``build_dataset`` / ``build_dataloader``: from a config to batches."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import List, Optional, Union

import torch
from torch.utils.data import DataLoader, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ..config import Config
from ..utils.sizes import parse_size
from .coco import load_coco, read_coco_categories
from .dataset import DetectionDataset, collate, worker_init
from .records import Annotations, DatasetError
from .sampler import EpochOrder, MultiScaleBatchSampler
from .transforms import EvalTransform, TrainTransform
from .voc import VOC_CLASSES, load_voc
from .yolo import load_yolo, read_yolo_yaml

__all__ = [
    "build_dataloader", "build_dataset", "dataset_class_names", "load_split", "under_root", "usable_cpus",
]


def under_root(root: Union[str, os.PathLike], path: Union[str, os.PathLike]) -> Path:
    """A config path (``ann_file``, ``img_dir``) as used: kept when absolute, else under ``root`` (``data.root``).

    The one place this rule lives, so that the dataset, the evaluator and the tools read the same files.
    """
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def usable_cpus() -> int:
    """CPUs this process may use, shared by the processes of this machine under torchrun: the most
    data-loading workers worth starting (more only wait on each other)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def data_location(cfg: Config) -> str:
    """Where ``cfg``'s dataset is, as a user would name it: the data YAML for YOLO txt, else ``data.root``."""
    d = cfg.data
    return str(under_root(d.root, d.yolo_file)) if d.format == "yolo" else d.root


def load_split(cfg: Config, split: str = "train") -> Annotations:
    """Read and check one split of ``cfg``'s dataset, whatever its format, as training and evaluation see it.

    Logs the start-up summary (images, boxes per class, problems counted with examples). The
    built-in dataset is generated first when ``data.builtin`` is set.

    Raises:
        DatasetError: the files are missing or malformed, or the split holds no box of the
            configured classes (the message lists the classes the files do use).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    d = cfg.data
    root = Path(d.root)
    if d.builtin:
        # Imported here so that `python -m yolo_asff.data.builtin` does not import itself twice.
        from .builtin import ensure_builtin

        ensure_builtin(root, kind=d.builtin_kind)
    part = d.train if split == "train" else d.val
    keep_empty = d.keep_empty_images or split == "val"
    if d.format == "coco":
        ann = load_coco(under_root(root, part.ann_file), under_root(root, part.img_dir), d.class_names,
                        keep_empty=keep_empty, check_files=d.check_images)
    elif d.format == "voc":
        ann = load_voc(root, [tuple(s) for s in part.splits], d.class_names, keep_empty=keep_empty,
                       check_files=d.check_images)
    else:
        ann = load_yolo(under_root(root, d.yolo_file), split, d.class_names, keep_empty=keep_empty)
    _check_usable(ann, split, d.use_difficult)
    return ann


def _check_usable(ann: Annotations, split: str, use_difficult: bool) -> None:
    """Stop when a split has no box to learn from or score against, saying which classes the files use."""
    if not ann.has_ground_truth:
        return
    counted = sum(int(len(r.labels) if (use_difficult or split == "val") else (~r.ignore).sum()) for r in ann.records)
    if counted:
        return
    if ann.labels_seen:
        used = ", ".join(f"{name} ({count})" for name, count in ann.labels_seen.most_common(20))
        what = f"the annotation files use: {used}"
    else:
        what = "the annotation files hold no objects at all"
    kept = ", ".join(ann.class_names[:20]) + (", ..." if len(ann.class_names) > 20 else "")
    raise DatasetError(
        f"the {split} split ({ann.source}) has no usable box of the configured classes ({kept}); {what}. "
        "Set data.class_names (and model.num_classes) to the classes you want, or fix the annotation files"
        + ("; `tools/check_dataset.py --config ...` lists every problem" if ann.problems.counts else ""))


def dataset_class_names(cfg: Config) -> List[str]:
    """The class names that ``cfg``'s dataset gives, read cheaply (no pictures opened).

    ``data.class_names`` when set; else the COCO file's categories (validation file first), the
    YOLO data YAML's names, the built-in classes, or the VOC classes.

    Raises:
        DatasetError: the annotation file or data YAML cannot be read.
    """
    d = cfg.data
    if d.class_names:
        return list(d.class_names)
    if d.format == "yolo":
        return read_yolo_yaml(under_root(d.root, d.yolo_file)).names
    if d.format == "voc":
        return list(VOC_CLASSES)
    for part in (d.val, d.train):
        ann_file = under_root(d.root, part.ann_file)
        if part.ann_file and ann_file.is_file():
            return read_coco_categories(ann_file)
    if d.builtin:
        from .builtin import class_names

        return list(class_names(d.builtin_kind))
    raise DatasetError(f"no class names: {under_root(d.root, d.val.ann_file)} not found and data.class_names unset")


def build_dataset(cfg: Config, split: str = "train", annotations: Optional[Annotations] = None) -> DetectionDataset:
    """The training (augmented) or validation (letterboxed to ``test.img_size``) dataset.

    ``annotations``: the split as :func:`load_split` read it already (else it is read here).

    Raises:
        DatasetError: see :func:`load_split`; also when the dataset's class count is not
            ``model.num_classes``.
    """
    ann = annotations if annotations is not None else load_split(cfg, split)
    names = ann.class_names
    if len(names) != cfg.model.num_classes:
        raise DatasetError(
            f"the dataset has {len(names)} classes ({', '.join(names[:10])}{'…' if len(names) > 10 else ''}) "
            f"but model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(names)}, or set "
            "data.class_names to the classes to train (in their order)"
        )
    d = cfg.data
    if split == "train":
        transform = TrainTransform(d.aug, d.letterbox, seed=cfg.runtime.seed)
    else:
        transform = EvalTransform(parse_size(cfg.test.img_size, "test.img_size"), d.letterbox)
    dataset = DetectionDataset(ann.records, names, transform, d.use_difficult, cfg.train.mixup_prob, ann.category_ids,
                               annotations=ann)
    dataset.reseed(cfg.runtime.seed)
    return dataset


def build_dataloader(
    cfg: Config, split: str = "train", dataset: Optional[DetectionDataset] = None, distributed: Optional[bool] = None
) -> DataLoader:
    """A DataLoader with workers (at most :func:`usable_cpus`) and pinned memory.

    Training batches come from a :class:`MultiScaleBatchSampler` over an :class:`EpochOrder` (each
    process's share of one order of the whole dataset per epoch): call
    ``loader.batch_sampler.set_epoch(epoch, start_image=...)`` at the start of every epoch.
    Validation under torch.distributed shards the images with a DistributedSampler.
    """
    dataset = dataset if dataset is not None else build_dataset(cfg, split)
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    train = split == "train"
    if train:
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
        sampler = EpochOrder(len(dataset), cfg.runtime.seed, shuffle=True, rank=rank, world=world)
    elif distributed:
        sampler = DistributedSampler(dataset, shuffle=False)
    else:
        sampler = SequentialSampler(dataset)
    workers = min(cfg.data.num_workers, usable_cpus())
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
        mosaic=cfg.data.aug.mosaic_prob > 0, no_mosaic_epochs=t.no_mosaic_epochs,
    )
    return DataLoader(dataset, batch_sampler=batches, **common)
