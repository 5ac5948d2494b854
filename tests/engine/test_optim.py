"""The optimizer's parameter groups and the learning-rate schedule (yolo_asff/engine/optim.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.engine.optim import LrSchedule, build_optimizer
from yolo_asff.models import build_model

REPO = Path(__file__).resolve().parents[2]


def test_lr_schedule_warmup_cosine_and_steps():
    s = LrSchedule(0.01, warmup_epochs=5, kind="cosine", cosine_start=20, cosine_end=270, min_lr=1e-5)
    assert s(0) == 0 and s(2.5) == pytest.approx(0.01 / 16)  # progress^4
    assert s(5) == s(19.9) == 0.01
    assert s(145) == pytest.approx(1e-5 + (0.01 - 1e-5) / 2)
    assert s(270) == s(299) == 1e-5
    step = LrSchedule(0.1, warmup_epochs=0, kind="step", steps=(3, 6), gamma=0.1)
    assert [round(step(e), 6) for e in (0, 2.9, 3, 6.5)] == [0.1, 0.1, 0.01, 0.001]


def test_weight_decay_only_on_conv_weights():
    model = build_model(load_config(REPO / "configs" / "builtin.yaml", ["model.width=0.125"]))
    opt = build_optimizer(model, 0.01, 0.9, 5e-4, nesterov=True)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0
    assert all(p.dim() == 4 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert opt.defaults["nesterov"]
    adamw = build_optimizer(model, 0.001, 0.9, 0.05, kind="adamw")
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05
    assert adamw.param_groups[1]["weight_decay"] == 0 and adamw.defaults["betas"] == (0.9, 0.999)
