"""count_host_syncs: every way a tensor's values or a value-dependent shape reach the host counts, once."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from yolo_asff.utils.host_sync import count_host_syncs


@pytest.mark.parametrize("inference", [False, True])  # inference_mode shows composite ops before they decompose
def test_each_conversion_and_value_dependent_shape_counts_once(inference):
    x = torch.linspace(-1, 1, 8)
    mask = x > 0
    with torch.inference_mode(inference), count_host_syncs() as syncs:
        x.sum().item()
        bool(x.max() > 0)
        int(x.argmax())
        float(x.min())
        x.tolist()
        x.numpy()
        np.asarray(x)
        x.cpu()
        torch.equal(x, mask.float())
    assert syncs.reads == 9 and syncs.shapes == 0, syncs.summary()
    with torch.inference_mode(inference), count_host_syncs() as syncs:
        x.nonzero()
        torch.where(mask)
        x[mask]
        x.clone()[mask] = 0.0
        torch.masked_select(x, mask)
        torch.unique(x)
        torch.bincount(mask.long())
        torch.repeat_interleave(torch.tensor([1, 2]))
    assert syncs.shapes == 8 and syncs.reads == 0, syncs.summary()


def test_device_work_and_fixed_shapes_do_not_count():
    x = torch.randn(4, 5, requires_grad=True)
    with count_host_syncs() as syncs:
        y = torch.where(x > 0, x, 0.1 * x)  # the three-argument where: a fixed shape
        y = y.masked_fill(y > 1, 1.0).sort(dim=1).values.topk(2, dim=1).values
        torch.repeat_interleave(y, 2, dim=0)  # int repeats: the size is known
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)
        y.sum().backward()
        _ = x.shape[0] + x.numel()
    assert syncs.total == 0, syncs.summary()


def test_reading_a_host_copy_again_is_not_another_sync():
    x = torch.arange(6.0)
    with count_host_syncs() as syncs:
        host = x.cpu()
        host.numpy()
        host.tolist()
        host[2].item()
        float(host.sum())
    assert syncs.total == 1 and syncs.by_op() == {"Tensor.cpu": 1}, syncs.summary()


def test_summary_names_the_operation_and_the_line():
    line = test_summary_names_the_operation_and_the_line.__code__.co_firstlineno + 2
    with count_host_syncs() as syncs:
        torch.ones(3).nonzero()
    assert syncs.total == 1 and syncs.events[0].kind == "shape" and syncs.events[0].op == "aten.nonzero"
    assert syncs.events[0].where.endswith(f"test_host_sync.py:{line + 1}")
    assert "1 x aten.nonzero (shape) at" in syncs.summary()
    assert syncs.cuda_warnings is None  # CUDA debugging was not asked for


def test_the_tensor_methods_are_restored_even_after_an_error():
    before = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy", "cpu")}
    with pytest.raises(RuntimeError, match="boom"):
        with count_host_syncs():
            raise RuntimeError("boom")
    assert {name: getattr(torch.Tensor, name) for name in before} == before
    with count_host_syncs() as syncs:
        pass
    torch.ones(2).tolist()  # outside the block: not counted
    assert syncs.total == 0


def test_compiled_functions_run_eagerly_inside_and_are_counted():
    @torch.compile(fullgraph=True, backend="eager")
    def step(x):
        return (x * 2).sum()

    with count_host_syncs() as syncs:
        step(torch.ones(3)).item()
    assert syncs.total == 1, syncs.summary()
