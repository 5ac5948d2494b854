"""Shared test helpers: small configs and models built the way users build them."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pytest
import torch

from yolo_asff.config import ModelConfig
from yolo_asff.models import build_model
from yolo_asff.utils.logging import get_logger

REPO = Path(__file__).resolve().parents[1]

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


def free_port() -> int:
    """A free TCP port on localhost, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ a tiny COCO set on disk

NAMES = {3: "cat", 7: "dog", 42: "zebra"}  # gapped category ids: they must round-trip
# image id: (width, height, grey level, [(category, [x, y, w, h], iscrowd)])
IMAGES = {
    11: (120, 90, 30, [(3, [10, 10, 20, 15], 0), (7, [40, 30, 50, 40], 0)]),  # small (300 px²), medium (2000)
    12: (96, 128, 60, [(42, [5, 5, 85, 115], 0)]),  # large (9775 > 96²)
    13: (64, 64, 90, [(3, [8, 8, 30, 30], 0), (42, [0, 0, 64, 64], 1)]),  # a crowd box
    14: (100, 60, 150, []),  # no boxes
    15: (80, 100, 200, [(7, [20, 40, 40, 30], 0), (3, [50, 60, 20, 30], 0)]),
}


def write_tiny_coco(root: Path, images=IMAGES, annotations: bool = True) -> Path:
    """Images under root/images and root/ann.json (categories listed out of id order on purpose)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    data = {"images": [], "annotations": [], "categories": [{"id": i, "name": NAMES[i]} for i in (42, 3, 7)]}
    for image_id, (w, h, grey, boxes) in images.items():
        cv2.imwrite(str(root / "images" / f"{image_id}.png"), np.full((h, w, 3), grey, np.uint8))
        data["images"].append({"id": image_id, "file_name": f"{image_id}.png", "width": w, "height": h})
        for cat, bbox, crowd in boxes:
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": cat,
                                        "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": crowd})
    if not annotations:
        del data["annotations"]
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"


def write_eval_config(root: Path, fmt: str = "coco", size: int = 64, num_classes: int = 3, extra: str = "") -> Path:
    """root/config.yaml: a width-0.25 ASFF model on the tiny COCO set of :func:`write_tiny_coco` (or a VOC tree
    with ``fmt="voc"``), evaluated at ``size``."""
    base = REPO / "configs" / "_base_" / "models" / "yolov3_asff.yaml"
    if fmt == "coco":
        data = (f"  format: coco\n  root: {root}\n  train: {{ann_file: ann.json, img_dir: images}}\n"
                "  val: {ann_file: ann.json, img_dir: images}\n")
    else:
        data = (f"  format: voc\n  root: {root}\n  train: {{splits: [[2007, test]]}}\n"
                "  val: {splits: [[2007, test]]}\n")
    text = (f"_base_: {base}\nmodel:\n  num_classes: {num_classes}\n  width: 0.25\ndata:\n{data}  num_workers: 0\n"
            f"{extra}test:\n  img_size: {size}\n  batch_size: 2\n")
    path = root / "config.yaml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ thin objects (anchor fitting)


def thin_config(tmp: Path, root: Path, anchors: str = "null", name: str = "thin.yaml") -> Path:
    """The shipped builtin recipe (ASFF, width 0.125, 256 px, train.anchor_thresh 0.25) on a thin-object set."""
    text = "\n".join([
        f"_base_: {REPO / 'configs' / 'builtin.yaml'}",
        f"model: {{num_classes: 2, anchors: {anchors}}}",
        "data:",
        "  builtin: false",
        f"  root: {root}",
        "  train: {ann_file: annotations/train.json, img_dir: images/train}",
        "  val: {ann_file: annotations/val.json, img_dir: images/val}",
        "  num_workers: 0", ""])
    path = tmp / name
    path.write_text(text)
    return path
