"""A training step reads the device into Python once: the flags exchange (finite loss, stop request,
time budget). Loss terms stay device tensors until a logging step reads them.

Counted on the CPU with :func:`~yolo_asff.utils.host_sync.count_host_syncs` (every tensor-to-Python
conversion and every operation whose output shape depends on values: on a GPU each is a host
synchronisation), per iteration of the trainer's loop: the step and its record-keeping, never the
loading of the batch nor what runs between epochs. With CUDA the same run goes under
``torch.cuda.set_sync_debug_mode("error")``, the exchange alone allowed to synchronise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from yolo_asff.config import load_config
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.engine.trainer import Trainer
from yolo_asff.utils.host_sync import count_host_syncs

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]


def tiny_trainer(tmp_path, *opts: str) -> Trainer:
    """ASFF at width 0.125 on 8 built-in images of 64 pixels: 4 batches of 2, an optimizer step every 2
    (accumulation), EMA and gradient clipping on; only the epoch's last batch logs.

    SGD unless ``opts`` say otherwise: AdamW keeps its step counters on the host (PyTorch's default, not
    ``capturable``) and reads each with ``item()``, which costs a GPU nothing but which a CPU count
    cannot tell from a device read. The CUDA test runs AdamW too.
    """
    data = generate_builtin(tmp_path / "data", train=8, val=2, seed=0)
    cfg = load_config(REPO / "configs" / "builtin.yaml", [
        f"data.root={data}", "data.builtin=false", "data.num_workers=0", "data.img_size=64", "test.img_size=64",
        "train.epochs=1", "train.batch_size=2", "train.nominal_batch_size=4", "train.ref_batch_size=4",
        "train.optimizer=sgd", "train.lr=0.01", "train.warmup_epochs=0", "train.eval_interval=100",
        "train.save_interval=100", "runtime.log_interval=100", *opts])
    return Trainer(cfg, tmp_path / "run", progress=False)


def count_step_syncs(trainer: Trainer) -> List[Dict[str, Any]]:
    """Train one epoch; for each loop iteration, its host syncs (``syncs``, a HostSyncs) and how many of them
    were made inside the loss call (``loss``)."""
    loader, real_loss = trainer.loader, trainer.loss_fn
    steps: List[Dict[str, Any]] = []

    class CountedLoader:
        def __getattr__(self, name):
            return getattr(loader, name)

        def __iter__(self):
            for batch in loader:  # loaded outside the count
                with count_host_syncs() as syncs:
                    steps.append({"syncs": syncs, "loss": 0})
                    yield batch  # the trainer runs the step and its records here

    def counted_loss(*args):
        events = steps[-1]["syncs"].events
        before = len(events)
        try:
            return real_loss(*args)
        finally:
            steps[-1]["loss"] += len(events) - before

    trainer.loader, trainer.loss_fn = CountedLoader(), counted_loss
    trainer.train()
    return steps


def test_the_trainer_reads_the_device_once_per_step_outside_the_loss(tmp_path):
    """The trainer's share of the budget, whatever the loss does: the flags exchange, and on a logging
    step one read of the summed loss terms."""
    steps = count_step_syncs(tiny_trainer(tmp_path))
    assert len(steps) == 4
    outside = [s["syncs"].total - s["loss"] for s in steps]
    # Steps 2 and 4 end an accumulation window: optimizer step, gradient clipping, EMA update.
    assert outside == [1, 1, 1, 2], "\n".join(s["syncs"].summary() for s in steps)


def test_a_training_step_reads_the_device_once(tmp_path):
    """The whole step's budget, the loss included (it pads to the collate's ``max_boxes`` instead of asking
    for shapes that depend on the data): one read on a step that does not log, two on one that does."""
    steps = count_step_syncs(tiny_trainer(tmp_path))
    assert [s["syncs"].total for s in steps] == [1, 1, 1, 2], "\n".join(s["syncs"].summary() for s in steps)
    assert all(s["syncs"].by_op() == {"Tensor.tolist": s["syncs"].total} for s in steps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_no_other_synchronisation_on_cuda(tmp_path, monkeypatch, precision, optimizer):
    """Under ``set_sync_debug_mode("error")`` any synchronisation raises, except in the flags exchange.
    fp16 (GradScaler with the fused optimizer) is forced on GPUs that have bf16."""
    if precision == "fp16":
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    trainer = tiny_trainer(tmp_path, "runtime.device=cuda", "train.amp=true", f"train.optimizer={optimizer}")
    loader, exchange = trainer.loader, trainer._exchange_step_flags

    def allowed(loss):
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            return exchange(loss)
        finally:
            torch.cuda.set_sync_debug_mode(mode)

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
