"""Exponential moving average of the model weights."""
from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
from torch import nn

from .checkpoint import unwrap_model

__all__ = ["ModelEMA"]


class ModelEMA:
    """An EMA copy of a model: ``ema = d·ema + (1 − d)·model`` after every optimizer step.

    The decay ramps up as ``decay · (1 − exp(−updates / ramp))`` so the average is not
    dominated by the random initial weights early in training. Buffers (BN statistics)
    are copied, floating-point ones averaged the same way.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.ramp = ramp
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap_model(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach().to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(source[name])

    def state_dict(self) -> Dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: Dict[str, Any], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates
