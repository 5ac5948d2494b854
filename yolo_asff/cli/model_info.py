"""Model smoke check: build a config's model, print its size and cost, run it on one image.

    python tools/model_info.py --config configs/yolov3_asff_coco.yaml [--image photo.jpg] [--size 608]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch


from .. import build_model, load_config
from ..engine.predictor import read_image
from ..utils.cli import UserError, tool_main
from ..utils.model_stats import count_flops, count_parameters


def synthetic_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A BGR test picture (shapes on a gradient), so the check needs no download."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    cv2.rectangle(img, (60, 80), (260, 300), (30, 160, 230), -1)
    cv2.circle(img, (450, 240), 110, (200, 60, 60), -1)
    return img


def to_input(image_bgr: np.ndarray, size: int) -> torch.Tensor:
    """Plain resize to ``size``×``size``, RGB, [0, 1], as a ``(1, 3, size, size)`` tensor."""
    rgb = cv2.cvtColor(cv2.resize(image_bgr, (size, size)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="model config YAML")
    parser.add_argument("--image", help="image file (default: a built-in synthetic picture)")
    parser.add_argument("--size", type=int, help="input size (default: test.img_size of the config)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. model.num_classes=20")
    args = parser.parse_args(argv)

    cfg = load_config(args.config, args.opts)
    size = args.size or (cfg.test.img_size if isinstance(cfg.test.img_size, int) else max(cfg.test.img_size))
    if size <= 0 or size % 32:
        raise UserError(f"--size must be a positive multiple of 32, got {size}")
    if args.image:
        image = read_image(args.image)
    else:
        image = synthetic_image()

    model = build_model(cfg).eval()
    params = count_parameters(model)
    flops = count_flops(model, size)
    x = to_input(image, size)
    with torch.no_grad():
        start = time.perf_counter()
        out, maps = model(x, return_fusion=True)
        elapsed = time.perf_counter() - start
    print(f"config      {args.config}")
    print(f"model       {cfg.model.arch} (fusion={cfg.model.fusion}, rfb={cfg.model.rfb}), {cfg.model.num_classes} classes")
    print(f"parameters  {params:,}")
    print(f"GFLOPs      {flops / 1e9:.1f} at {size}x{size}")
    print(f"forward     {tuple(x.shape)} -> {tuple(out.shape)} in {elapsed * 1000:.0f} ms on CPU")
    if maps:
        print("ASFF maps   " + ", ".join("x".join(map(str, m.shape[-2:])) for m in maps))
    return 0
