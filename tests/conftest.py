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


# Tensor → Python conversions: each waits for the device to finish (a host synchronisation on a GPU).
_HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "__array__",
               "__format__", "equal", "allclose")
# Operations whose output shape depends on the values: on a GPU each one reads a count back to the host.
_DATA_DEPENDENT = ("nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "bincount")


class HostSyncCounter:
    """Records every tensor → host read made inside ``with counter:`` (see the ``host_syncs`` fixture).

    Counted: ``Tensor.item/tolist/numpy/cpu``, ``bool()``, ``int()``, ``float()``, ``__index__``,
    ``__array__``, formatting, ``torch.equal/allclose``, ``.to()`` from a device to the CPU; and the
    data-dependent shapes: ``nonzero``, ``argwhere``, ``unique``, ``unique_consecutive``,
    ``masked_select``, ``bincount``, one-argument ``torch.where``, ``repeat_interleave`` with tensor
    repeats and no ``output_size``, and indexing or assignment with a boolean mask. Each call appends
    its name to :attr:`calls` (a ``cpu()`` of a CPU tensor too: on a GPU it would wait). On a machine
    with CUDA the block also runs under ``torch.cuda.set_sync_debug_mode("error")``.
    """

    def __init__(self) -> None:
        self.calls: list = []
        self.active = False
        self._saved: list = []
        self._debug_mode = 0

    def _record(self, name: str) -> None:
        if self.active:
            self.calls.append(name)

    def _wrap(self, owner, name: str, counts=lambda *a, **k: True) -> None:
        original = getattr(owner, name)
        counter = self

        def counted(*args, **kwargs):
            if counter.active and counts(*args, **kwargs):
                counter.calls.append(name)
            was, counter.active = counter.active, False  # calls made by the original itself are not counted again
            try:
                return original(*args, **kwargs)
            finally:
                counter.active = was

        self._saved.append((owner, name, owner.__dict__.get(name, None) if isinstance(owner, type) else original))
        setattr(owner, name, counted)

    def install(self) -> None:
        def is_mask(index) -> bool:
            parts = index if isinstance(index, tuple) else (index,)
            return any(isinstance(p, torch.Tensor) and p.dtype in (torch.bool, torch.uint8) for p in parts)

        def to_host(tensor, *args, **kwargs) -> bool:
            target = kwargs.get("device", args[0] if args else None)
            if not isinstance(target, (str, torch.device)) or tensor.device.type == "cpu":
                return False
            return torch.device(target).type == "cpu"

        def tensor_repeats(*args, **kwargs) -> bool:
            """repeat_interleave(input, repeats) with tensor repeats, or repeat_interleave(repeats), sizeless."""
            repeats = kwargs.get("repeats", args[1] if len(args) > 1 else None)
            counts_only = len(args) == 1 and "repeats" not in kwargs
            return (counts_only or isinstance(repeats, torch.Tensor)) and kwargs.get("output_size") is None

        for name in _HOST_READS:
            self._wrap(torch.Tensor, name)
        for name in ("equal", "allclose", *_DATA_DEPENDENT):
            if hasattr(torch, name):
                self._wrap(torch, name)
        for name in _DATA_DEPENDENT:
            if hasattr(torch.Tensor, name) and name not in _HOST_READS:
                self._wrap(torch.Tensor, name)
        self._wrap(torch.Tensor, "to", to_host)
        self._wrap(torch.Tensor, "__getitem__", lambda tensor, index: is_mask(index))
        self._wrap(torch.Tensor, "__setitem__", lambda tensor, index, value: is_mask(index))
        self._wrap(torch, "where", lambda *args, **kwargs: len(args) + len(kwargs) == 1)
        self._wrap(torch, "repeat_interleave", tensor_repeats)
        self._wrap(torch.Tensor, "repeat_interleave", tensor_repeats)

    def uninstall(self) -> None:
        for owner, name, saved in reversed(self._saved):
            if isinstance(owner, type) and saved is None:
                delattr(owner, name)  # it was inherited: remove the override
            else:
                setattr(owner, name, saved)
        self._saved.clear()

    def __enter__(self) -> "HostSyncCounter":
        self.calls.clear()
        if torch.cuda.is_available():
            self._debug_mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(self._debug_mode)


@pytest.fixture
def host_syncs():
    """A :class:`HostSyncCounter`: ``with host_syncs: <code>`` then ``assert host_syncs.calls == []`` (or a budget).

    The conversions are instrumented for the whole test and restored after it; only calls inside
    the ``with`` block are recorded.
    """
    counter = HostSyncCounter()
    counter.install()
    try:
        yield counter
    finally:
        counter.uninstall()
