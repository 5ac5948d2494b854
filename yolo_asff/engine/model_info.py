"""``yolo-asff info``: a config's model, its size and cost, and one forward pass on a picture (a smoke check).

The picture goes in as every picture does at inference (:meth:`Predictor.preprocess
<yolo_asff.engine.predictor.Predictor.preprocess>`: the config's letterbox or stretch, RGB, ``/255``,
``(x - mean) / std``), so the check runs the model on the input it will get.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..assets import sample_image_path
from ..config import load_config
from ..models import build_model
from ..utils.model_stats import count_flops, count_parameters
from ..utils.sizes import Size, parse_size
from .predictor import Predictor, read_image

__all__ = ["model_info"]


PathLike = Union[str, os.PathLike]


def model_info(config: PathLike, opts: Sequence[str] = (), image: Optional[PathLike] = None,
               size: Optional[Size] = None) -> Dict[str, Any]:
    """Build ``config``'s model (fresh weights), print its parameters and GFLOPs at ``size`` (default
    ``test.img_size``), and time one forward pass on the CPU on ``image`` (default: the shipped sample photo).

    Returns ``{"parameters", "flops", "input_shape" (1, 3, H, W), "output_shape" (1, N, 5 + C),
    "forward_ms", "fusion_shapes" [(h, w) per level; [] without ASFF]}``.

    Raises:
        ConfigError: a bad config or override. InvalidInputError: a bad size, or a picture OpenCV cannot decode.
        MissingFileError: no picture at ``image``.
    """
    cfg = load_config(config, opts)
    h, w = parse_size(size if size is not None else cfg.test.img_size, "--size" if size is not None else
                      "test.img_size")
    picture = read_image(image if image is not None else sample_image_path())
    model = build_model(cfg).eval()
    params, flops = count_parameters(model), count_flops(model, (h, w))
    x, _ = Predictor.from_config(cfg, model, img_size=(h, w), device="cpu").preprocess([picture])
    with torch.no_grad():
        start = time.perf_counter()
        out, maps = model(x, return_fusion=True)
        elapsed = time.perf_counter() - start
    m = cfg.model
    print(f"config      {config}")
    print(f"model       {m.arch} (fusion={m.fusion}, rfb={m.rfb}), {m.num_classes} classes")
    print(f"parameters  {params:,}")
    print(f"GFLOPs      {flops / 1e9:.1f} at {h}x{w}")
    print(f"forward     {tuple(x.shape)} -> {tuple(out.shape)} in {elapsed * 1000:.0f} ms on CPU")
    fusion = [tuple(level.shape[-2:]) for level in maps]
    if fusion:
        print("ASFF maps   " + ", ".join("x".join(map(str, hw)) for hw in fusion))
    return {"parameters": params, "flops": flops, "input_shape": tuple(x.shape), "output_shape": tuple(out.shape),
            "forward_ms": elapsed * 1000, "fusion_shapes": fusion}
