"""Shared test helpers: small configs and models built the way users build them."""
from __future__ import annotations

import os

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
