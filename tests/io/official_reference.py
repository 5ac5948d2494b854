"""An independent, functional re-implementation of the official ASFF models' eval-mode forward.

Test code only. It reads an official-layout state_dict by the official key names
(``module_list.N.*``, ``level_l_fusion.*``, ``level_l_header.*``; level 0 = stride 32) and
uses nothing but ``torch.nn.functional`` and ``torchvision.ops.deform_conv2d``: no module of
this package is imported, so a wrong key mapping or a wiring mistake in our model cannot be
mirrored here. It is written for clarity, not speed (Python loops are fine).

The output is the official code's eval output: ``(B, N, 5 + C)`` with columns
``cx, cy, w, h`` (input pixels), objectness, class probabilities; levels stride 32, 16, 8,
each in (slot, y, x) order with four slots per cell (three anchors, one anchor-free).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import deform_conv2d

__all__ = ["official_forward", "OFFICIAL_ANCHORS", "NUM_SLOTS"]

NUM_SLOTS = 4  # three anchor slots and one anchor-free slot per cell
BN_EPS = 1e-5
LEAKY_SLOPE = 0.1
# (w, h) in input pixels per stride (the official set: its ninth anchor is not YOLOv3's).
OFFICIAL_ANCHORS: Dict[int, List[Tuple[float, float]]] = {
    8: [(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)],
    16: [(30.0, 61.0), (62.0, 45.0), (42.0, 119.0)],
    32: [(116.0, 90.0), (156.0, 198.0), (121.0, 240.0)],
}
FREE_SLOT_STRIDES = 4.0  # the anchor-free slot's base size, in strides

State = Dict[str, Tensor]


def _get(state: State, key: str) -> Tensor:
    """A tensor of the official state_dict as float32 (released files may hold float16)."""
    if key not in state:
        raise KeyError(f"official state_dict has no {key!r}")
    return state[key].float()


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def add_conv(state: State, prefix: str, x: Tensor, stride: int = 1) -> Tensor:
    """The official ``add_conv``: Conv2d (no bias, same padding) → BatchNorm2d (eval) → LeakyReLU(0.1)."""
    weight = _get(state, f"{prefix}.conv.weight")
    kernel = weight.shape[-1]
    x = F.conv2d(x, weight, bias=None, stride=stride, padding=(kernel - 1) // 2)
    x = F.batch_norm(
        x,
        running_mean=_get(state, f"{prefix}.batch_norm.running_mean"),
        running_var=_get(state, f"{prefix}.batch_norm.running_var"),
        weight=_get(state, f"{prefix}.batch_norm.weight"),
        bias=_get(state, f"{prefix}.batch_norm.bias"),
        training=False,
        eps=BN_EPS,
    )
    return F.leaky_relu(x, LEAKY_SLOPE)


def resblock(state: State, prefix: str, x: Tensor, shortcut: bool = True) -> Tensor:
    """The official ``resblock``: units ``prefix.module_list.j.{0,1}``, each 1×1 then 3×3 CBL.

    With ``shortcut`` each unit is a Darknet residual (x + f(x)); without it (the pyramid's
    "pair" modules) the units are simply chained.
    """
    unit = 0
    while f"{prefix}.module_list.{unit}.0.conv.weight" in state:
        h = add_conv(state, f"{prefix}.module_list.{unit}.0", x)
        h = add_conv(state, f"{prefix}.module_list.{unit}.1", h)
        x = x + h if shortcut else h
        unit += 1
    if unit == 0:
        raise KeyError(f"official state_dict has no units under {prefix!r}")
    return x


def spp(x: Tensor) -> Tensor:
    """Concat of the input and stride-1 max pools of size 5, 9 and 13 (same-size padding)."""
    pools = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in (5, 9, 13)]
    return torch.cat([x] + pools, dim=1)


def upsample(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def ml(index: int) -> str:
    return f"module_list.{index}"


# --------------------------------------------------------------------------------------------
# Backbone and pyramid (by official module_list index)
# --------------------------------------------------------------------------------------------
def darknet53(state: State, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """module_list 0..10. Returns (C3, C4, C5): the outputs of modules 6, 8 and 10."""
    x = add_conv(state, ml(0), images)
    routes = {}
    for down, res in ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10)):
        x = add_conv(state, ml(down), x, stride=2)
        x = resblock(state, ml(res), x, shortcut=True)
        routes[res] = x
    return routes[6], routes[8], routes[10]


def level32_trunk(state: State, c5: Tensor) -> Tensor:
    """module_list 11..17 (same in every variant): pair, CBL, SPP, CBL, CBL, DropBlock, CBL → L0."""
    x = resblock(state, ml(11), c5, shortcut=False)
    x = add_conv(state, ml(12), x)
    x = spp(x)  # 13
    x = add_conv(state, ml(14), x)
    x = add_conv(state, ml(15), x)
    # 16: DropBlock, identity in eval mode
    return add_conv(state, ml(17), x)


def asff_pyramid(state: State, c3: Tensor, c4: Tensor, c5: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The asff / asff_rfb module_list 11..32 → (L0, L1, L2)."""
    l0 = level32_trunk(state, c5)
    x = add_conv(state, ml(18), l0)
    x = torch.cat([upsample(x, 2), c4], dim=1)  # 19
    x = add_conv(state, ml(20), x)
    x = add_conv(state, ml(21), x)
    # 22: DropBlock
    x = resblock(state, ml(23), x, shortcut=False)
    l1 = add_conv(state, ml(24), x)
    x = add_conv(state, ml(25), l1)
    x = torch.cat([upsample(x, 2), c3], dim=1)  # 26
    x = add_conv(state, ml(27), x)
    x = add_conv(state, ml(28), x)
    # 29: DropBlock
    x = resblock(state, ml(30), x, shortcut=False)
    x = add_conv(state, ml(31), x)
    l2 = add_conv(state, ml(32), x)
    return l0, l1, l2


# --------------------------------------------------------------------------------------------
# ASFF fusion
# --------------------------------------------------------------------------------------------
def asff_fusion(state: State, level: int, l0: Tensor, l1: Tensor, l2: Tensor) -> Tensor:
    """``level_{level}_fusion``: resize the three maps to ``level``, weigh them by a softmax, expand."""
    p = f"level_{level}_fusion"
    if level == 0:
        x0 = l0
        x1 = add_conv(state, f"{p}.stride_level_1", l1, stride=2)
        x2 = add_conv(state, f"{p}.stride_level_2", F.max_pool2d(l2, 3, stride=2, padding=1), stride=2)
    elif level == 1:
        x0 = upsample(add_conv(state, f"{p}.compress_level_0", l0), 2)
        x1 = l1
        x2 = add_conv(state, f"{p}.stride_level_2", l2, stride=2)
    elif level == 2:
        x0 = upsample(add_conv(state, f"{p}.compress_level_0", l0), 4)
        x1 = upsample(l1, 2)
        x2 = l2
    else:
        raise ValueError(f"no fusion level {level}")
    resized = [x0, x1, x2]
    compressed = [add_conv(state, f"{p}.weight_level_{k}", resized[k]) for k in range(3)]
    logits = F.conv2d(torch.cat(compressed, dim=1), _get(state, f"{p}.weight_levels.weight"),
                      _get(state, f"{p}.weight_levels.bias"))
    alpha = F.softmax(logits, dim=1)
    fused = resized[0] * alpha[:, 0:1] + resized[1] * alpha[:, 1:2] + resized[2] * alpha[:, 2:3]
    return add_conv(state, f"{p}.expand", fused)


# --------------------------------------------------------------------------------------------
# Guided-anchor header
# --------------------------------------------------------------------------------------------
def _plain_conv(state: State, prefix: str, x: Tensor, padding: int = 0, dilation: int = 1) -> Tensor:
    return F.conv2d(x, _get(state, f"{prefix}.weight"), _get(state, f"{prefix}.bias"),
                    padding=padding, dilation=dilation)


def rfb(state: State, prefix: str, x: Tensor) -> Tensor:
    """The official RFB of the ASFF* header: four branches of biased convs, no activation, concatenated."""
    b = f"{prefix}.branch"
    branch0 = _plain_conv(state, f"{b}_0.0", x)
    branch1 = _plain_conv(state, f"{b}_1.0", x)
    branch1 = _plain_conv(state, f"{b}_1.1", branch1, padding=1)
    branch2 = _plain_conv(state, f"{b}_2.0", x)
    branch2 = _plain_conv(state, f"{b}_2.1", branch2, padding=1)
    branch2 = _plain_conv(state, f"{b}_2.2", branch2, padding=2, dilation=2)
    branch3 = _plain_conv(state, f"{b}_3.0", x)
    branch3 = _plain_conv(state, f"{b}_3.1", branch3, padding=2)
    branch3 = _plain_conv(state, f"{b}_3.2", branch3, padding=3, dilation=3)
    return torch.cat([branch0, branch1, branch2, branch3], dim=1)


def guided_header(state: State, prefix: str, x: Tensor, stride: int, num_classes: int) -> Tensor:
    """One official guided header, decoded: ``(B, 4·H·W, 5 + C)`` in (slot, y, x) order,
    columns ``cx, cy, w, h, obj, cls...``."""
    guide = _plain_conv(state, f"{prefix}.guide_wh", x)  # (B, 8, H, W)

    # Feature adaption: optional RFB, then a deformable 3x3 conv steered by the (detached) guide.
    fa = f"{prefix}.Feature_adaption"
    feat = rfb(state, f"{fa}.rfb", x) if f"{fa}.rfb.branch_0.0.weight" in state else x
    offset = F.conv2d(guide, _get(state, f"{fa}.conv_offset.weight"), _get(state, f"{fa}.conv_offset.bias"),
                      groups=NUM_SLOTS)  # (B, 72, H, W): per slot group, per tap, (dy, dx)
    feat = deform_conv2d(feat, offset, _get(state, f"{fa}.dconv.weight"), _get(state, f"{fa}.dconv.bias"),
                         padding=(1, 1))
    out = _plain_conv(state, f"{prefix}.conv", feat)

    batch, _, height, width = out.shape
    n_out = 5 + num_classes
    if out.shape[1] != NUM_SLOTS * n_out:
        raise ValueError(f"{prefix}.conv has {out.shape[1]} outputs, not {NUM_SLOTS} × (5 + {num_classes})")
    pred = out.view(batch, NUM_SLOTS, n_out, height, width).permute(0, 1, 3, 4, 2)  # (B, S, H, W, 5+C)
    guide_wh = guide.view(batch, NUM_SLOTS, 2, height, width)  # channel 2k = w, 2k+1 = h of slot k

    decoded = torch.empty_like(pred)
    for slot in range(NUM_SLOTS):
        if slot < NUM_SLOTS - 1:
            base_w, base_h = OFFICIAL_ANCHORS[stride][slot]
        else:
            base_w = base_h = FREE_SLOT_STRIDES * stride
        anchor_w = torch.exp(guide_wh[:, slot, 0]) * base_w  # (B, H, W)
        anchor_h = torch.exp(guide_wh[:, slot, 1]) * base_h
        p = pred[:, slot]
        grid_x = torch.arange(width, dtype=out.dtype).view(1, 1, width)
        grid_y = torch.arange(height, dtype=out.dtype).view(1, height, 1)
        decoded[:, slot, ..., 0] = (torch.sigmoid(p[..., 0]) + grid_x) * stride
        decoded[:, slot, ..., 1] = (torch.sigmoid(p[..., 1]) + grid_y) * stride
        decoded[:, slot, ..., 2] = torch.exp(p[..., 2]) * anchor_w
        decoded[:, slot, ..., 3] = torch.exp(p[..., 3]) * anchor_h
        decoded[:, slot, ..., 4:] = torch.sigmoid(p[..., 4:])
    return decoded.reshape(batch, NUM_SLOTS * height * width, n_out)


# --------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------
def _asff_forward(state: State, images: Tensor, num_classes: int) -> List[Tensor]:
    c3, c4, c5 = darknet53(state, images)
    l0, l1, l2 = asff_pyramid(state, c3, c4, c5)
    outputs = []
    for level, stride in zip((0, 1, 2), (32, 16, 8)):
        fused = asff_fusion(state, level, l0, l1, l2)
        outputs.append(guided_header(state, f"level_{level}_header", fused, stride, num_classes))
    return outputs


def _baseline_forward(state: State, images: Tensor, num_classes: int) -> List[Tensor]:
    c3, c4, c5 = darknet53(state, images)
    l0 = level32_trunk(state, c5)  # module 17's output
    out32 = guided_header(state, ml(19), add_conv(state, ml(18), l0), 32, num_classes)
    x = add_conv(state, ml(20), l0)
    x = torch.cat([upsample(x, 2), c4], dim=1)  # 21
    x = add_conv(state, ml(22), x)
    x = add_conv(state, ml(23), x)
    # 24: DropBlock
    x = resblock(state, ml(25), x, shortcut=False)
    l1 = add_conv(state, ml(26), x)
    out16 = guided_header(state, ml(28), add_conv(state, ml(27), l1), 16, num_classes)
    x = add_conv(state, ml(29), l1)
    x = torch.cat([upsample(x, 2), c3], dim=1)  # 30
    x = add_conv(state, ml(31), x)
    x = add_conv(state, ml(32), x)
    # 33: DropBlock
    x = resblock(state, ml(34), x, shortcut=False)
    x = add_conv(state, ml(35), x)
    l2 = add_conv(state, ml(36), x)
    out8 = guided_header(state, ml(37), l2, 8, num_classes)
    return [out32, out16, out8]


@torch.no_grad()
def official_forward(state: Dict[str, Tensor], images: Tensor, variant: str, num_classes: int) -> Tensor:
    """Eval-mode output of the official ``variant`` (``baseline``, ``asff`` or ``asff_rfb``) model.

    Args:
        state: the official state_dict (official key names, float16 or float32 tensors).
        images: ``(B, 3, H, W)``, H and W multiples of 32.
        variant: which official model the state_dict belongs to.
        num_classes: C.

    Returns:
        ``(B, N, 5 + C)``: ``cx, cy, w, h``, objectness, class probabilities; level 0 (stride 32)
        first, each level in (slot, y, x) order.
    """
    images = images.float()
    if variant in ("asff", "asff_rfb"):
        has_rfb = "level_0_header.Feature_adaption.rfb.branch_0.0.weight" in state
        if has_rfb != (variant == "asff_rfb"):
            raise ValueError(f"state_dict {'has' if has_rfb else 'lacks'} RFB tensors, variant is {variant!r}")
        outputs = _asff_forward(state, images, num_classes)
    elif variant == "baseline":
        outputs = _baseline_forward(state, images, num_classes)
    else:
        raise ValueError(f"unknown official variant {variant!r}")
    return torch.cat(outputs, dim=1)
