"""Backbones: Darknet-53 (YOLOv3, ASFF) and the YOLOv3-tiny trunk."""
from __future__ import annotations

from typing import List, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvFactory, ResidualUnit, scale_channels

__all__ = ["Darknet53", "StagedBackbone", "TinyDarknet"]

# (channels, residual units) of Darknet-53's five downsampling stages (YOLOv3, Redmon & Farhadi 2018, Table 1).
DARKNET53_STAGES: Tuple[Tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))


class StagedBackbone(nn.Module):
    """A backbone made of stages run in order, whose first ones can be frozen for fine-tuning.

    :meth:`freeze` stops the gradient of the first ``k`` stages (``requires_grad`` off) and keeps
    their BatchNorm layers in eval mode through every later ``train()`` call, so that their
    running statistics stay those of the pre-trained weights (mmdetection's ``frozen_stages`` with
    ``norm_eval`` on those stages). Subclasses list their stages in :meth:`stage_modules`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frozen_stages = 0

    def stage_modules(self) -> List[nn.Module]:
        """The stages, input side first; together they hold every parameter of the backbone."""
        raise NotImplementedError

    def freeze(self, stages: int) -> None:
        """Freeze the first ``stages`` stages (0: none; ``len(stage_modules())``: the whole backbone).

        Raises:
            ValueError: ``stages`` is not between 0 and the number of stages.
        """
        modules = self.stage_modules()
        if not 0 <= stages <= len(modules):
            raise ValueError(f"{type(self).__name__} has {len(modules)} stages; cannot freeze {stages}")
        self.frozen_stages = stages
        for module in modules[:stages]:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "StagedBackbone":
        super().train(mode)
        for module in self.stage_modules()[:self.frozen_stages]:
            module.eval()
        return self


class Darknet53(StagedBackbone):
    """Darknet-53: stem CBL(3, 1, 32) and five stages of CBL(3, 2, c) + n residual units.

    Its :meth:`stage_modules` are six: the stem and the five downsampling stages.
    ``forward(x)`` with ``x`` of shape ``(B, 3, H, W)``, H and W multiples of 32,
    returns ``[C3, C4, C5]``: ``(B, 256w, H/8, W/8)``, ``(B, 512w, H/16, W/16)``,
    ``(B, 1024w, H/32, W/32)`` where ``w`` is the width multiplier.
    Its 52 convolutions, in module order, are those of Darknet's ``darknet53.conv.74``.
    """

    def __init__(self, conv: ConvFactory, width: float = 1.0) -> None:
        super().__init__()
        c_prev = scale_channels(32, width)
        self.stem = conv(3, c_prev, 3)
        stages = []
        for channels, units in DARKNET53_STAGES:
            c = scale_channels(channels, width)
            stages.append(nn.Sequential(conv(c_prev, c, 3, 2), *[ResidualUnit(c, conv) for _ in range(units)]))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        self.out_channels: Tuple[int, int, int] = tuple(scale_channels(c, width) for c, _ in DARKNET53_STAGES[2:])

    def stage_modules(self) -> List[nn.Module]:
        return [self.stem, *self.stages]

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.stem(x)
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                outputs.append(x)
        return outputs


class TinyDarknet(StagedBackbone):
    """The YOLOv3-tiny trunk (Darknet ``yolov3-tiny.cfg`` layers 0–12).

    Seven 3×3 CBLs (16 … 1024) with max-pools between them; the sixth pool has
    size 2 and stride 1 (padded right and bottom) so the stride stays 32. Its
    :meth:`stage_modules` are the seven CBLs.
    ``forward(x)`` returns ``[T8, T12]``: ``(B, 256w, H/16, W/16)`` and
    ``(B, 1024w, H/32, W/32)``.
    """

    def __init__(self, conv: ConvFactory, width: float = 1.0) -> None:
        super().__init__()
        widths = [scale_channels(c, width) for c in (16, 32, 64, 128, 256, 512, 1024)]
        self.convs = nn.ModuleList(conv(cin, cout, 3) for cin, cout in zip([3] + widths[:-1], widths))
        self.out_channels: Tuple[int, int] = (widths[4], widths[6])

    def stage_modules(self) -> List[nn.Module]:
        return list(self.convs)

    def forward(self, x: Tensor) -> List[Tensor]:
        for i in range(5):
            x = F.max_pool2d(self.convs[i](x), 2, 2) if i < 4 else self.convs[i](x)
        t8 = x
        x = self.convs[5](F.max_pool2d(t8, 2, 2))
        # Darknet's size-2 stride-1 pool keeps the size by padding one row and column. A replicated edge
        # and a -inf one give the same maxima (the edge value is in the window either way) and the same
        # gradients; -inf because torch.compile's backward of the replicate pad fails (PyTorch 2.14, CPU).
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
        return [t8, self.convs[6](x)]
