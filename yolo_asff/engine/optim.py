"""The optimizer (SGD with parameter groups) and the learning-rate schedule: warm-up, then cosine or steps.

The defaults are the ASFF paper's COCO recipe (Liu, Huang, Wang, arXiv:1911.09516, §4, implementation
details); every ``train`` key is described in docs/CONFIG.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch
from torch import nn

__all__ = ["LrSchedule", "build_optimizer", "scaled_lr"]


def scaled_lr(lr: float, total_batch: int, ref_batch: int) -> float:
    """``lr`` given for ``ref_batch`` images per step, scaled linearly to ``total_batch``."""
    return lr * total_batch / ref_batch


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    nesterov: bool = False, kind: str = "sgd", fused: bool = False) -> torch.optim.Optimizer:
    """SGD (the paper's) or AdamW, with weight decay on convolution (and linear) weights only, not on BN or biases.

    AdamW (``momentum`` is its beta1) converges much faster from scratch on small data, which is what
    the CPU-sized built-in config needs; SGD is the recipe for real datasets.

    ``fused``: PyTorch's fused kernels (CUDA). With a ``torch.amp.GradScaler`` they take the scaler's
    overflow flag on the device and skip an overflowing step there, where the default (foreach) kernels
    make the scaler read that flag on the host: one device-to-host synchronisation per step.
    """
    decay: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), fused=fused or None)
    if kind != "sgd":
        raise ValueError(f"train.optimizer must be sgd or adamw, got {kind!r}")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, fused=fused or None)


@dataclass
class LrSchedule:
    """Learning rate as a function of (fractional) epoch.

    Warm-up: ``base · (epoch / warmup)^4`` (the official ASFF warm-up, per iteration);
    then ``cosine``: constant to ``cosine_start``, cosine down to ``min_lr`` at
    ``cosine_end``, ``min_lr`` after; or ``step``: ``base · gamma^k`` after the k-th of ``steps``.
    It holds no state: resuming only needs the iteration count.
    """

    base_lr: float
    warmup_epochs: float = 5.0
    kind: str = "cosine"
    cosine_start: float = 20.0
    cosine_end: float = 270.0
    min_lr: float = 1e-5
    steps: Sequence[int] = (240, 270)
    gamma: float = 0.1

    def __call__(self, epoch: float) -> float:
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            return self.base_lr * (epoch / self.warmup_epochs) ** 4
        if self.kind == "step":
            return self.base_lr * self.gamma ** sum(epoch >= s for s in self.steps)
        if epoch < self.cosine_start:
            return self.base_lr
        if epoch >= self.cosine_end:
            return self.min_lr
        progress = (epoch - self.cosine_start) / max(self.cosine_end - self.cosine_start, 1e-9)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def from_config(cls, train_cfg: Any, base_lr: float) -> "LrSchedule":
        t = train_cfg
        return cls(base_lr, t.warmup_epochs, t.scheduler, t.cosine_start_epoch, t.cosine_end_epoch, t.min_lr,
                   tuple(t.steps), t.gamma)

    def state_dict(self) -> Dict[str, Any]:
        """The settings (for the record in checkpoints; the schedule itself has no state)."""
        return {"base_lr": self.base_lr, "warmup_epochs": self.warmup_epochs, "kind": self.kind,
                "cosine_start": self.cosine_start, "cosine_end": self.cosine_end, "min_lr": self.min_lr,
                "steps": list(self.steps), "gamma": self.gamma}
