"""The exponential moving average of the weights (yolo_asff/engine/ema.py)."""
from __future__ import annotations

import math

import torch

from yolo_asff.engine.ema import ModelEMA


def test_ema_ramps_and_averages():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = ModelEMA(model, decay=0.5, ramp=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    start = ema.module.weight.clone()
    ema.update(model)
    d = 0.5 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * torch.ones_like(start))


def test_the_ema_copies_frozen_weights_and_statistics_instead_of_averaging_them():
    """d·x + (1 − d)·x drifts from x by an ulp now and then: after 3,000 updates it has (measured), so
    what does not train is copied, and a frozen layer stays bit-identical in the EMA too."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    model[:2].requires_grad_(False)  # the conv and its BatchNorm frozen, the last conv trains
    ema = ModelEMA(model, decay=0.9998, ramp=2000.0)
    frozen = {k: v.clone() for k, v in model[:2].state_dict().items()}
    for _ in range(3000):
        with torch.no_grad():
            model[2].weight.add_(1e-4)
        ema.update(model)
    averaged = ema.module.state_dict()
    assert all(torch.equal(averaged[k], v) for k, v in frozen.items())
    assert not torch.equal(averaged["2.weight"], model[2].weight)  # the trained conv is still averaged
