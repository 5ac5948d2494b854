"""Exponential moving average of the model weights."""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional, Set, Tuple

import torch
from torch import Tensor, nn

from ..utils.modules import unwrap_model

__all__ = ["ModelEMA", "untrained_names"]


def _copy_all(dst: List[Tensor], src: List[Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for every i, in one call where PyTorch has it (``_foreach_copy_``: 2.1+)."""
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


def untrained_names(model: nn.Module) -> Set[str]:
    """The state_dict names of what does not train: parameters without ``requires_grad``, and the
    buffers (BatchNorm statistics) of layers whose parameters all are such (a frozen layer)."""
    names: Set[str] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        params = list(module.named_parameters(recurse=False))
        frozen = [name for name, p in params if not p.requires_grad]
        names.update(prefix + name for name in frozen)
        if params and len(frozen) == len(params):
            names.update(prefix + name for name, _ in module.named_buffers(recurse=False))
    return names


class ModelEMA:
    """An EMA copy of a model: ``ema = d·ema + (1 − d)·model`` after every optimizer step.

    The decay ramps up as ``decay · (1 − exp(−updates / ramp))`` so the average is not
    dominated by the random initial weights early in training. Buffers (BN statistics)
    are copied, floating-point ones averaged the same way; what does not train (the
    weights and statistics of frozen layers, :func:`untrained_names`) is copied as it is.

    :meth:`update` works on lists of the live tensors of both models, collected on the
    first update (and again when it is given another model, or after :meth:`load_state_dict`),
    so a step costs two multi-tensor kernels instead of two state_dicts and two kernels per
    tensor. Moving either model with ``.to()`` afterwards would replace its buffers: build
    the EMA once the model is on its device, as the trainer does.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.ramp = ramp
        self.updates = updates
        # (EMA module, source module) the lists below were collected from; None = collect on the next update.
        self._pairs_of: Optional[Tuple[nn.Module, nn.Module]] = None
        self._ema_float: List[Tensor] = []
        self._src_float: List[Tensor] = []
        self._ema_other: List[Tensor] = []
        self._src_other: List[Tensor] = []
        self._cast = False

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    def _collect(self, source: nn.Module) -> None:
        """Pair every state_dict tensor of the EMA with the same-named live tensor of ``source``.

        ``keep_vars=True`` gives the Parameter and buffer objects themselves, so the lists
        follow in-place changes (optimizer steps, ``load_state_dict``) without being rebuilt.
        Tensors that do not train (:func:`untrained_names`) are copied rather than averaged:
        ``d·x + (1 − d)·x`` is not always ``x`` in floating point, and frozen weights must stay
        bit-identical in the EMA too.
        """
        source_state = source.state_dict(keep_vars=True)
        untrained = untrained_names(source)
        self._ema_float, self._src_float, self._ema_other, self._src_other = [], [], [], []
        for name, value in self.module.state_dict(keep_vars=True).items():
            if value.dtype.is_floating_point and name not in untrained:
                self._ema_float.append(value)
                self._src_float.append(source_state[name])
            else:
                self._ema_other.append(value)
                self._src_other.append(source_state[name])
        # The multi-tensor add needs each source in its EMA tensor's dtype; only cast when one differs.
        self._cast = any(e.dtype != s.dtype for e, s in zip(self._ema_float, self._src_float))
        self._pairs_of = (self.module, source)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap_model(model)
        if self._pairs_of is None or self._pairs_of[0] is not self.module or self._pairs_of[1] is not source:
            self._collect(source)
        sources = self._src_float
        if self._cast:
            sources = [s.to(e.dtype) for e, s in zip(self._ema_float, sources)]
        torch._foreach_mul_(self._ema_float, d)
        torch._foreach_add_(self._ema_float, sources, alpha=1.0 - d)
        if self._ema_other:
            _copy_all(self._ema_other, self._src_other)

    def state_dict(self) -> Dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: Dict[str, Any], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates
        self._pairs_of = None  # load_state_dict copies in place, but collect again rather than rely on it
