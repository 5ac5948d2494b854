"""The torch Dataset over image records, and the collate function that makes batches."""
from __future__ import annotations

import signal
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..utils.logging import get_logger
from .images import decode_picture
from .mixup import mixup
from .mosaic import Mosaic
from .records import Annotations, DatasetError, ImageRecord
from .sampler import SampleRequest
from .transforms import EvalTransform, TrainTransform

__all__ = ["DetectionDataset", "collate", "normalize_images", "read_picture", "worker_init"]


class DetectionDataset(Dataset):
    """Images and targets for training (augmented, per-batch size, mosaic, mixup) or evaluation (letterbox).

    ``dataset[SampleRequest(index, (h, w), mixup, seed, mosaic)]`` (training) or ``dataset[index]``
    returns a dict: ``image`` (h, w, 3) uint8 BGR, ``boxes`` (N, 4) xyxy input pixels,
    ``labels`` (N,), ``weights`` (N,) mixup weights, ``image_id``, ``info`` (the
    :class:`~yolo_asff.data.transforms.LetterboxInfo`, evaluation only).

    A training sample starts from picture ``index``, or, when the request allows mosaic, with
    probability ``data.aug.mosaic_prob`` from a :class:`~yolo_asff.data.mosaic.Mosaic` of it and three
    pictures drawn at random; then the transform; then, when the request allows mixup, with
    probability ``mixup_prob`` a blend with a plain sample (never a mosaic, as in YOLOX).

    An unreadable image is skipped (another one is drawn), counted, and reported
    once per image, so one bad file never stops a run.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        transform: Union[TrainTransform, EvalTransform],
        use_ignored: bool = False,
        mixup_prob: float = 0.5,
        category_ids: Optional[Sequence[int]] = None,
        annotations: Optional[Annotations] = None,
    ) -> None:
        self.records = list(records)
        self.class_names = list(class_names)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
        # What results files need to name images and categories as the annotation file does.
        self.source_image_ids = dict(annotations.source_image_ids) if annotations is not None else {}
        self.source_category_ids = dict(annotations.source_category_ids) if annotations is not None else {}
        self.has_ground_truth = annotations.has_ground_truth if annotations is not None else True
        self.transform = transform
        self.use_ignored = use_ignored
        self.mixup_prob = mixup_prob
        train = isinstance(transform, TrainTransform)
        self.mosaic_prob = transform.p.mosaic_prob if train else 0.0
        self.mosaic = Mosaic(transform.p.min_box_size) if train else None
        self.unreadable: set = set()
        self._rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.records)

    def reseed(self, seed: int) -> None:
        """Seed this process's augmentation randomness (see :func:`worker_init`)."""
        self._rng = np.random.default_rng(seed)
        if isinstance(self.transform, TrainTransform):
            self.transform.reseed(seed)

    def _read(self, index: int):
        """Image ``index``, or the next readable one (counting and reporting unreadable files).

        A picture whose decoded size is not the record's (replaced on disk since the dataset was
        read) is skipped like an unreadable one: its boxes would be in another frame.
        """
        for _ in range(len(self.records)):
            record = self.records[index]
            image = read_picture(record) if index not in self.unreadable else None
            if _as_read(record, image):
                return index, record, image
            if index not in self.unreadable:
                self.unreadable.add(index)
                why = ("missing or corrupt" if image is None else
                       f"now {image.shape[1]}x{image.shape[0]}, read as {record.width}x{record.height} at start-up")
                get_logger("data").warning(
                    "skipping unreadable image %s (%s); %d skipped so far in this process", record.path, why,
                    len(self.unreadable),
                )
            index = int(self._rng.integers(len(self.records)))
        raise DatasetError("no readable image left in the dataset: every picture is missing, corrupt or changed "
                           "since the dataset was read")

    def _eval_sample(self, index: int) -> Dict[str, Any]:
        """Picture ``index`` letterboxed for evaluation. Never another picture in its place: an unreadable
        one comes back blank with ``readable: False`` (the evaluator leaves it out of the score)."""
        record = self.records[index]
        image = read_picture(record)
        readable = _as_read(record, image)
        if not readable:
            if index not in self.unreadable:
                self.unreadable.add(index)
                get_logger("data").warning("cannot read validation image %s (missing, corrupt or changed since the "
                                           "dataset was read): left out of the score", record.path)
            image = np.zeros((record.height, record.width, 3), np.uint8)
        image, info = self.transform(image)
        boxes = (record.boxes * np.array([info.scale_x, info.scale_y] * 2, np.float32)
                 + np.array([info.pad_x, info.pad_y] * 2, np.float32))
        return {"image": image, "boxes": boxes, "labels": record.labels, "weights": np.ones(len(boxes), np.float32),
                "image_id": record.image_id, "info": info, "readable": readable}

    def _train_sample(self, index: int, size, rng, mosaic: bool = False):
        """``(record, image, boxes, labels, weights)``: picture ``index`` (or a mosaic of it) augmented to ``size``."""
        if mosaic:
            record, image, boxes, labels = self._mosaic_picture(index, size, rng)
        else:
            index, record, image = self._read(index)
            boxes, labels = record.training_targets(self.use_ignored)
        image, boxes, keep = self.transform(image, boxes, size, rng)
        return record, image, boxes, labels[keep], np.ones(len(boxes), np.float32)

    def _mosaic_picture(self, index: int, size, rng):
        """``(record, image, boxes, labels)``: picture ``index`` and three drawn from ``rng``, tiled at ``size``;
        ``record`` is picture ``index``'s (its image id names the sample)."""
        picks = [index, *(int(i) for i in rng.integers(len(self.records), size=3))]
        records, pictures, labels = [], [], []
        for pick in picks:
            _, record, image = self._read(pick)
            boxes, picture_labels = record.training_targets(self.use_ignored)
            records.append(record)
            pictures.append((image, boxes))
            labels.append(picture_labels)
        image, boxes, source = self.mosaic(pictures, size, rng)
        return records[0], image, boxes, np.concatenate(labels)[source]

    def __getitem__(self, request: Union[int, SampleRequest]) -> Dict[str, Any]:
        if isinstance(self.transform, EvalTransform):
            return self._eval_sample(int(request.index if isinstance(request, SampleRequest) else request))
        if not isinstance(request, SampleRequest):
            raise TypeError("training samples are requested with a SampleRequest (index, size, mixup, seed, mosaic)")
        rng = self._rng
        if request.seed is not None:
            rng = np.random.default_rng(request.seed)
            if isinstance(self.transform, TrainTransform):
                self.transform.reseed(request.seed % 2**32)
        # No draw while mosaic is off, so that runs without it see the same samples as before it existed.
        mosaic = request.mosaic and self.mosaic_prob > 0 and rng.random() < self.mosaic_prob
        record, image, boxes, labels, weights = self._train_sample(request.index, request.size, rng, mosaic)
        if request.mixup and rng.random() < self.mixup_prob:
            other = int(rng.integers(len(self.records)))
            _, image_b, boxes_b, labels_b, weights_b = self._train_sample(other, request.size, rng)
            image, boxes, weights, _ = mixup(image, boxes, weights, image_b, boxes_b, weights_b, rng)
            labels = np.concatenate([labels, labels_b])
        return {"image": image, "boxes": boxes, "labels": labels, "weights": weights,
                "image_id": record.image_id, "info": None}


def _as_read(record: ImageRecord, image: Optional[np.ndarray]) -> bool:
    """Whether ``image`` is the record's picture as it was read at start-up (decoded, and of the checked size)."""
    return image is not None and (not record.size_checked or image.shape[:2] == (record.height, record.width))


def read_picture(record: ImageRecord) -> Optional[np.ndarray]:
    """The record's picture as BGR uint8 ``(H, W, 3)``, in the frame its boxes are in; None if unreadable.

    OpenCV turns pictures by their EXIF orientation unless the record says the boxes are in the
    stored frame (:attr:`ImageRecord.ignore_orientation`).
    """
    return decode_picture(record.path, record.ignore_orientation)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a distinct, reproducible seed for each worker's augmentation.

    Workers ignore SIGTERM and SIGINT: ``kill -TERM -PGID`` (what ``timeout``, Slurm, Kubernetes and
    systemd send) reaches the whole process group, and a worker that died of it would make the
    next batch fail before the training process could save. The training process stops at the
    next step, saves, and shuts its workers down itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    if isinstance(dataset, DetectionDataset):
        dataset.reseed(torch.initial_seed() % 2**32)


def normalize_images(
    images: Tensor, mean: Union[Sequence[float], Tensor], std: Union[Sequence[float], Tensor]
) -> Tensor:
    """Pictures as network input: ``(B, H, W, 3)`` uint8 BGR → ``(B, 3, H, W)`` float32 RGB.

    Each pixel becomes ``(x / 255 − mean) / std``, as in training. Works on the device ``images``
    are on, so that a caller can move the 4× smaller uint8 batch there first. ``mean`` and ``std``
    are 3 RGB numbers, or tensors of 3 already on that device (used without a copy).
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    # BGR → RGB while still uint8: a quarter of the bytes of the float tensor.
    out = images.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)
    return out.sub_(mean_t).div_(std_t).contiguous()


def collate(samples: List[Dict[str, Any]], mean: Sequence[float], std: Sequence[float]) -> Dict[str, Any]:
    """Stack samples into a batch.

    Returns a dict with ``images`` ``(B, 3, H, W)`` float32, RGB, ``(x / 255 − mean) / std``;
    ``targets`` ``(M, 7)`` float32 rows ``[batch index, class, x1, y1, x2, y2, weight]``
    in input pixels; ``max_boxes``, the most boxes of one image (an int, counted here on the host so
    that the loss need not read it back from the device); ``image_ids``, ``infos`` and ``readable``
    (evaluation: False for a picture that could not be read) lists.
    """
    images = normalize_images(torch.from_numpy(np.stack([s["image"] for s in samples])), mean, std)
    rows = [
        np.concatenate([np.full((len(s["boxes"]), 1), i), s["labels"].reshape(-1, 1), s["boxes"].reshape(-1, 4),
                        s["weights"].reshape(-1, 1)], axis=1)
        for i, s in enumerate(samples)
    ]
    targets = torch.from_numpy(np.concatenate(rows).astype(np.float32)) if rows else torch.zeros(0, 7)
    return {"images": images, "targets": targets.reshape(-1, 7), "max_boxes": max((len(r) for r in rows), default=0),
            "image_ids": [s["image_id"] for s in samples],
            "infos": [s["info"] for s in samples], "readable": [s.get("readable", True) for s in samples]}
