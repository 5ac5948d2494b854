"""Model size and cost: trainable parameters and forward FLOPs."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn
import torchvision  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d)
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from .sizes import parse_size

__all__ = ["count_parameters", "count_flops"]


@register_flop_formula(torch.ops.torchvision.deform_conv2d)
def _deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """A deformable conv counted like the plain conv it generalises (its bilinear sampling is not counted)."""
    out_channels, in_per_group, kh, kw = weight_shape
    batch, _, oh, ow = out_shape
    return 2 * batch * out_channels * oh * ow * in_per_group * kh * kw


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, size: Union[int, Sequence[int]] = 608) -> int:
    """Forward FLOPs (multiply and add counted separately) of one ``3×H×W`` image, eval mode.

    Measured with ``torch.utils.flop_counter``, which counts convolutions (deformable ones
    included) and matrix products; element-wise ops (BN, activations, pooling) are not counted.
    """
    h, w = parse_size(size, "size")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return int(counter.get_total_flops())
