"""train.compile: the compiled model trains as the eager one does (same seed, same batches, same losses)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest

from yolo_asff.config import load_config
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]


def losses_of_three_steps(tmp_path: Path, data: Path, compile_model: bool) -> Tuple[List[float], float]:
    """Total loss of each of 3 optimizer steps (6 images, batches of 2) of a width-0.125 YOLOv3-tiny (the
    cheapest model to compile: ~1 min here), and how far the steps moved its weights (largest change).

    SGD, the paper's optimizer: AdamW's first steps are about ±lr for every weight whatever its gradient's
    size, so rounding noise in a near-zero gradient becomes a whole step of either sign (measured: the
    third loss 0.2% apart with AdamW, 5e-6 with SGD).
    """
    cfg = load_config(REPO / "configs" / "builtin.yaml", [
        "model.arch=yolov3_tiny", f"data.root={data}", "data.builtin=false", "data.num_workers=0",
        "data.img_size=64", "test.img_size=64", "train.epochs=1", "train.batch_size=2", "train.nominal_batch_size=2",
        "train.ref_batch_size=2", "train.optimizer=sgd", "train.lr=0.01", "train.warmup_epochs=0",
        "train.eval_interval=100", "train.save_interval=100", f"train.compile={str(compile_model).lower()}"])
    trainer = Trainer(cfg, tmp_path / ("compiled" if compile_model else "eager"), progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    real_loss, losses = trainer.loss_fn, []

    def recorded(*args):
        total, terms = real_loss(*args)
        losses.append(total.item())
        return total, terms

    trainer.loss_fn = recorded
    trainer.train()
    assert trainer.iteration == 3
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(trainer.model.parameters(), before))
    return losses[:3], moved  # the evaluation's validation losses come after the three


def test_a_compiled_model_trains_as_the_eager_one(tmp_path):
    data = generate_builtin(tmp_path / "data", train=6, val=2, seed=0)
    eager, moved = losses_of_three_steps(tmp_path, data, compile_model=False)
    assert "train.compile" not in (tmp_path / "eager" / "train.log").read_text()  # read before the other run logs
    compiled, _ = losses_of_three_steps(tmp_path, data, compile_model=True)
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert moved > 1e-3  # the steps trained: the later losses compare gradients and updates too
    # One log line for the one input shape (batch 2, 64 x 64), with the time its first step took.
    lines = [line for line in (tmp_path / "compiled" / "train.log").read_text().splitlines() if "train.compile" in line]
    assert len(lines) == 1 and "first step at input 2x3x64x64 took" in lines[0], lines
