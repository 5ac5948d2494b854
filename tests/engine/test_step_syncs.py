"""A training step reads the device into Python once: the flags exchange (finite loss, stop request,
time budget). Loss terms stay device tensors until a logging step reads them.

On the CPU every read is counted where PyTorch does it: the aten ops that copy a value to the host
(``_local_scalar_dense``: ``item``, ``bool``, ``int``, ``float``, ``__index__``) or whose output shape
depends on the data (``nonzero``, ``unique``, ``masked_select``, boolean-mask indexing, ``bincount``,
``repeat_interleave`` without an output size), seen through a ``TorchDispatchMode``, and the three
conversions that never reach the dispatcher on the CPU (``tolist``, ``numpy``, ``cpu``). On a GPU each
of these is a host synchronisation. With CUDA the same run goes under
``torch.cuda.set_sync_debug_mode("error")``, the exchange alone allowed to synchronise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from yolo_asff.config import load_config
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
_aten = torch.ops.aten
_READS = {_aten._local_scalar_dense.default, _aten.nonzero.default, _aten.masked_select.default,
          _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
          _aten._unique.default, _aten.bincount.default}
_MASKABLE = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default}


class HostReads(TorchDispatchMode):
    """Counts host reads of tensor values while :attr:`active`, per step, with those inside the loss apart.

    The optimizer's step counters (AdamW's ``state["step"]``) are host tensors by PyTorch's design (not
    ``capturable``): reading them is no device synchronisation, so they are not counted.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.active = False
        self.in_loss = 0  # depth of loss_fn calls
        self.steps: List[Dict[str, int]] = []

    def count(self, what: str, tensor=None) -> None:
        if not self.active:
            return
        if tensor is not None and any(tensor is s.get("step") for s in self.optimizer.state.values()):
            return
        step = self.steps[-1]
        step["loss" if self.in_loss else "outside"] += 1
        step.setdefault("ops", []).append(("loss: " if self.in_loss else "") + what)

    def start_step(self) -> None:
        self.steps.append({"loss": 0, "outside": 0})
        self.active = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _READS:
            self.count(str(func), args[0] if args else None)
        elif func in _MASKABLE and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ()):
            self.count(f"{func} with a boolean mask")
        elif func is _aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            self.count(f"{func} without output_size")
        return func(*args, **kwargs)


@pytest.fixture
def host_reads(monkeypatch):
    """Install the counter's Python-level half (``tolist``, ``numpy``, ``cpu``) and hand a factory for it."""
    made: List[HostReads] = []

    def patch(name: str) -> None:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            for reads in made:
                reads.count(f"Tensor.{name}", self)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    for name in ("tolist", "numpy", "cpu"):
        patch(name)

    def make(optimizer):
        made.append(HostReads(optimizer))
        return made[-1]

    return make


def tiny_trainer(tmp_path, *opts: str) -> Trainer:
    """ASFF at width 0.125 on 8 built-in images of 64 pixels: 4 batches of 2, an optimizer step every 2
    (accumulation), EMA and gradient clipping on; only the epoch's last batch logs."""
    data = generate_builtin(tmp_path / "data", train=8, val=2, seed=0)
    cfg = load_config(REPO / "configs" / "builtin.yaml", [
        f"data.root={data}", "data.builtin=false", "data.num_workers=0", "data.img_size=64", "test.img_size=64",
        "train.epochs=1", "train.batch_size=2", "train.nominal_batch_size=4", "train.ref_batch_size=4",
        "train.warmup_epochs=0", "train.eval_interval=100", "train.save_interval=100", "runtime.log_interval=100",
        *opts])
    return Trainer(cfg, tmp_path / "run", progress=False)


def count_step_reads(trainer: Trainer, reads: HostReads) -> List[Dict[str, int]]:
    """Train one epoch, counting the reads of each loop iteration (the step and its record-keeping), never
    those of loading a batch or of what runs between epochs (saving, evaluating)."""
    loader, real_loss = trainer.loader, trainer.loss_fn

    class CountedLoader:
        def __getattr__(self, name):
            return getattr(loader, name)

        def __iter__(self):
            batches = iter(loader)
            while True:
                reads.active = False
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                reads.start_step()
                yield batch

    def counted_loss(*args):
        reads.in_loss += 1
        try:
            return real_loss(*args)
        finally:
            reads.in_loss -= 1

    trainer.loader, trainer.loss_fn = CountedLoader(), counted_loss
    with reads:
        trainer.train()
    return reads.steps


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_step_reads_the_device_once_outside_the_loss(tmp_path, host_reads, optimizer):
    """The trainer's share of the budget, whatever the loss does: the flags exchange, and on a logging
    step one read of the summed loss terms."""
    trainer = tiny_trainer(tmp_path, f"train.optimizer={optimizer}")
    steps = count_step_reads(trainer, host_reads(trainer.optimizer))
    assert len(steps) == 4
    *quiet, logging = steps
    assert [s["outside"] for s in quiet] == [1, 1, 1], quiet  # steps 2 (optimizer, EMA, clipping) included
    assert logging["outside"] == 2, logging


def test_a_training_step_reads_the_device_once(tmp_path, host_reads):
    """The whole step's budget, the loss included (it pads its assignment instead of asking for shapes that
    depend on the data): one read on a step that does not log."""
    trainer = tiny_trainer(tmp_path)
    steps = count_step_reads(trainer, host_reads(trainer.optimizer))
    *quiet, logging = steps
    assert all(s["loss"] + s["outside"] <= 1 for s in quiet), quiet
    assert logging["loss"] + logging["outside"] <= 2, logging


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_no_other_synchronisation_on_cuda(tmp_path, monkeypatch, precision):
    """Under ``set_sync_debug_mode("error")`` any synchronisation raises, except in the flags exchange.
    fp16 (GradScaler with the fused optimizer) is forced on GPUs that have bf16."""
    if precision == "fp16":
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    trainer = tiny_trainer(tmp_path, "runtime.device=cuda", "train.amp=true")
    loader, exchange = trainer.loader, trainer._exchange_step_flags

    def allowed(loss):
        torch.cuda.set_sync_debug_mode(0)
        try:
            return exchange(loss)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    class Strict:
        def __getattr__(self, name):
            return getattr(loader, name)

        def __iter__(self):
            batches = iter(loader)
            while True:
                torch.cuda.set_sync_debug_mode(0)
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                if trainer.iteration + 1 < trainer.epoch_len:  # the epoch's last batch logs
                    torch.cuda.set_sync_debug_mode("error")
                yield batch

    trainer.loader, trainer._exchange_step_flags = Strict(), allowed
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.iteration == 4 and trainer.nonfinite_total == 0
