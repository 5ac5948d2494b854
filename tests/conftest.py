"""Shared test helpers: small configs and models built the way users build them."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import torch

from yolo_asff.config import ModelConfig
from yolo_asff.models import build_model
from yolo_asff.utils.logging import get_logger

# The model variants of the zoo, as config overrides of the model section.
VARIANTS = {
    "yolov3": dict(arch="yolov3"),
    "yolov3_asff": dict(arch="yolov3_asff"),
    "baseline": dict(arch="yolov3_asff", fusion=False),
    "asff_star": dict(arch="yolov3_asff", rfb=True, fusion_channels=8, dropblock=True),
    "yolov3_tiny": dict(arch="yolov3_tiny"),
}


def make_model(variant: str = "yolov3_asff", **overrides):
    """Build a zoo variant through the public ``build_model`` with a ModelConfig."""
    return build_model(ModelConfig(**{**VARIANTS[variant], **overrides}))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_logger():
    """Undo what a test's setup_logging() did to the project logger, so the next test starts as a new process."""
    logger = get_logger()
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny models: on a shared 2-core machine two threads wait on each other
    (measured ~10x slower). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class OracleDetector(torch.nn.Module):
    """A stand-in detector for evaluation tests: it recognises each picture by its (normalised) pixels and
    answers with detections fixed in advance, so what the evaluator scores is known exactly.

    ``table`` maps a picture's key (:meth:`key`) to ``(n, 6)`` rows ``x1, y1, x2, y2, score, class`` in
    network-input pixels; the eval output is ``(B, N, 5 + C)`` as a real detector's.
    """

    def __init__(self, table, num_classes: int) -> None:
        super().__init__()
        self.table, self.num_classes = table, num_classes
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the evaluator takes the device from the parameters

    @staticmethod
    def key(image) -> bytes:
        import hashlib

        return hashlib.sha1(image.detach().cpu().float().numpy().round(3).tobytes()).digest()

    def forward(self, images):
        rows = [self.table[self.key(image)] for image in images]
        out = torch.zeros(len(images), max(1, max(len(r) for r in rows)), 5 + self.num_classes)
        for b, r in enumerate(rows):
            r = torch.as_tensor(r, dtype=torch.float32).reshape(-1, 6)
            out[b, :len(r), :4] = r[:, :4]
            out[b, :len(r), 4] = r[:, 4]
            out[b, torch.arange(len(r)), 5 + r[:, 5].long()] = 1.0
        return out.to(images.device)


def noisy_detections(record, boxes_input, num_classes: int, seed_text: str):
    """Detections of one picture that score neither 0 nor 1: each box jittered by up to 15% of its size with
    a random score, one in five missed, and one false positive of a random class. Seeded by ``seed_text``
    (the picture's file name), so the same picture gets the same answers in every dataset form."""
    import zlib

    import numpy as np

    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    rows = []
    for box, label in zip(np.asarray(boxes_input, np.float64).reshape(-1, 4), record.labels.tolist()):
        if rng.random() < 0.2:
            continue
        size = np.tile(box[2:] - box[:2], 2)
        rows.append([*(box + rng.uniform(-0.15, 0.15, 4) * size), rng.uniform(0.3, 1.0), label])
    x, y = rng.uniform(0, 200, 2)
    rows.append([x, y, x + rng.uniform(10, 60), y + rng.uniform(10, 60), rng.uniform(0.05, 0.6),
                 int(rng.integers(num_classes))])
    return np.array(rows, np.float64).reshape(-1, 6)


@pytest.fixture
def make_oracle():
    """``make_oracle(dataset, mean, std, answer=noisy_detections) -> OracleDetector`` for a validation
    DetectionDataset whose batches are normalised with ``mean`` and ``std`` (the config's ``data.mean/std``).

    ``answer(record, boxes_in_input, num_classes, name)`` gives the rows for one picture; the default is
    :func:`noisy_detections`. Pictures are told apart by their pixels, so a dataset written in another
    format (the same picture files) is answered the same.
    """
    from yolo_asff.data.dataset import normalize_images

    def build(dataset, mean, std, answer=noisy_detections):
        table = {}
        for i, record in enumerate(dataset.records):
            sample = dataset[i]
            image = normalize_images(torch.from_numpy(sample["image"][None]), mean, std)[0]
            table[OracleDetector.key(image)] = answer(record, sample["boxes"], len(dataset.class_names),
                                                      Path(record.path).name)
        return OracleDetector(table, len(dataset.class_names))

    return build
