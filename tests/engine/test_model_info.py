"""The model smoke check in the package (yolo_asff/engine/model_info.py), called in-process."""
from __future__ import annotations

import pytest
import torch

from yolo_asff import build_model, load_config
from yolo_asff.assets import sample_image_path
from yolo_asff.engine.model_info import model_info
from yolo_asff.engine.predictor import Predictor, read_image
from yolo_asff.errors import InvalidInputError

SMALL = ["model.width=0.125", "model.num_classes=3"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_figures_of_a_non_square_size_and_the_fusion_maps(capsys):
    info = model_info("configs/yolov3_asff_coco.yaml", SMALL, size=[64, 128])
    assert info["input_shape"] == (1, 3, 64, 128) and info["output_shape"] == (1, 3 * (2 * 4 + 4 * 8 + 8 * 16), 8)
    assert info["fusion_shapes"] == [(8, 16), (4, 8), (2, 4)]
    model = build_model(load_config("yolov3_asff_coco", SMALL))
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    printed = capsys.readouterr().out
    assert "GFLOPs      " in printed and "at 64x128" in printed and "ASFF maps   8x16, 4x8, 2x4" in printed


def test_the_picture_goes_in_as_at_inference(monkeypatch):
    """The forward pass sees the predictor's letterboxed, normalised input, not a plain resize."""
    seen = []
    real = torch.nn.Module.__call__

    def spy(module, *args, **kwargs):
        if not seen and args and isinstance(args[0], torch.Tensor) and kwargs.get("return_fusion"):
            seen.append(args[0])
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    model_info("yolov3_tiny_coco", [*SMALL, "data.letterbox=true"], size=64)
    cfg = load_config("yolov3_tiny_coco", SMALL)
    want, _ = Predictor.from_config(cfg, build_model(cfg), img_size=64, device="cpu").preprocess(
        [read_image(sample_image_path())])
    assert torch.equal(seen[0], want)


def test_a_bad_size_names_the_flag():
    with pytest.raises(InvalidInputError, match="--size must be positive multiples of 32"):
        model_info("yolov3_tiny_coco", SMALL, size=100)
