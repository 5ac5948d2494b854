"""The training loop behind ``tools/train.py``: one GPU, CPU, or many GPUs under torchrun.

A run writes ``out_dir/`` with the resolved ``config.yaml``, ``train.log``, TensorBoard
events, ``last.pth`` and ``best.pth`` (atomic), its plots (:mod:`.plots`: ``labels.jpg`` at the
start, the evaluation plots and ``results.png`` after each evaluation, ``results.csv`` after
each epoch) and, at the end, ``metrics.json``.
``resume`` continues a run exactly where its last checkpoint left it: model, EMA,
optimizer, GradScaler, epoch, batch within the epoch and the random-number states.

A run ends (``metrics.json``'s ``stop_reason``) when its epochs are done (``completed``), or
early and cleanly, exit status 0, on one of two budgets of the run as a whole:

- ``train.patience``: N evaluations in a row without a better AP. The count is read from the
  run's evaluation history (saved with every checkpoint), so it carries over a resume.
- ``train.time_limit``: hours of wall-clock time spent training and evaluating, summed over
  every session of the run up to its last checkpoint (saved as ``wall_time``); checked at step
  boundaries. On expiry ``last.pth`` is saved where training stands, mid-epoch if so, and the
  weights get a final evaluation.

A resume of a run whose budget is spent only finishes it (``metrics.json`` again, and an
evaluation if the weights have none): raising ``train.patience`` or ``train.time_limit`` (or
turning it off) with ``--opts`` continues it. Both are safe to change on resume.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..config import Config, dump_config
from ..data import build_dataloader, build_dataset
from ..data.build import data_location
from ..data.check import box_size_table
from ..errors import MissingFileError, YoloAsffError
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..models import build_model
from ..models.loss import build_loss
from ..utils.logging import get_logger, setup_logging
from . import dist
from .anchors import check_anchor_recall, fit_auto_anchors
from .checkpoint import load_model_weights, load_weights_file
from .ema import ModelEMA
from .evaluator import Evaluator
from ..utils.files import make_dir, write_json
from .monitor import LossSums, RunMonitor, Throughput, format_duration
from .optim import LrSchedule, build_optimizer, scaled_lr

__all__ = ["Trainer", "TrainingError", "compile_for_training", "freeze_backbone", "load_initial_weights"]

PathLike = Union[str, os.PathLike]


class TrainingError(YoloAsffError, RuntimeError):
    """Training cannot go on (diverged, nothing to resume, …); the message says what to do."""


def load_initial_weights(model: nn.Module, path: PathLike) -> str:
    """Fine-tuning start: a yolo-asff checkpoint or state_dict (EMA weights preferred), or a Darknet file.

    Tensors whose shape differs (another class count) are skipped and named. Returns a summary.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"--weights: file not found: {path}")
    loaded = load_weights_file(model, path, strict=False)  # fine-tuning: whatever fits (another class count)
    if loaded.source == "darknet":
        return f"{loaded.darknet_layers} Darknet layers from {path}"
    report = loaded.report
    filled = len(report.loaded) / max(1, len(report.loaded) + len(report.unloaded))
    if filled < 0.5:  # another architecture or width: fine-tuning from these is training from scratch
        get_logger("train").warning(
            "--weights %s filled only %d of the model's %d tensors (%.0f%%): they are not weights of this model "
            "(another arch, width or head?); training goes on mostly from random initialisation", path,
            len(report.loaded), len(report.loaded) + len(report.unloaded), 100 * filled)
    return f"{loaded.source} weights of {path}: " + report.summary()


def freeze_backbone(model: nn.Module, freeze: Union[None, int, str]) -> str:
    """Freeze what ``train.freeze`` names in ``model``'s backbone; returns a summary for the log.

    ``None`` or 0: nothing; ``"backbone"``: all of it; K: its first K stages
    (:meth:`~yolo_asff.models.darknet.StagedBackbone.freeze`: ``requires_grad`` off and BatchNorm
    kept in eval mode). Call it before building the optimizer (it takes only what trains) and the EMA.
    """
    if not freeze:
        return "nothing frozen"
    backbone = model.backbone
    total = len(backbone.stage_modules())
    stages = total if freeze == "backbone" else int(freeze)
    backbone.freeze(stages)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    which = "the whole backbone" if stages == total else f"backbone stages 1-{stages} of {total}"
    return (f"frozen: {which}, {frozen:,} of {sum(p.numel() for p in model.parameters()):,} parameters, with "
            "their BatchNorm statistics")


def _rng_state() -> Dict[str, Any]:
    """Every random-number state, in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        # A run resumed on a machine that sees fewer GPUs: the states of the devices it has.
        for index, device_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def compile_for_training(module: nn.Module, graphs: int) -> nn.Module:
    """``torch.compile(module, dynamic=False)``: one graph per input shape, each compiled at its first step.

    Multi-scale training presents several shapes (``graphs`` of them at most: sizes, batch lengths and
    DropBlock settings; :meth:`Trainer._graphs_per_run`). torch._dynamo's recompile limit (8 by default)
    is raised to that many, so that no shape falls back to eager. Graphs per shape won over dynamic
    shapes on the CPU at width 0.125 (docs/BENCHMARKS.md, "torch.compile for training"): ``dynamic=True``
    took longer to compile and still compiled again at the next size, for no faster steps, while a run
    meets a bounded, known number of shapes.
    """
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in 2.6
    setattr(config, name, max(getattr(config, name), graphs))
    return torch.compile(module, dynamic=False)


class _Stop(Exception):
    """Raised in the loop at a step boundary (the position is ``images_in_epoch``): after a stop request
    (``signal``) or with the time budget spent (``time_limit``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Window(NamedTuple):
    """An accumulation window: batches ``start`` to ``end`` (exclusive) of an epoch add up to one optimizer step."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


class _StepResult(NamedTuple):
    """What a step hands the record-keeping: whether it trained (finite loss), its loss terms (detached
    device tensors, not read yet), its learning rate, and this process's images and input width."""

    finite: bool
    terms: Dict[str, torch.Tensor]
    lr: float
    images: int
    size: int


@dataclass
class _EpochRecords:
    """What an epoch keeps between steps: loss sums of the log window and of the epoch, throughput."""

    window_loss: LossSums = field(default_factory=LossSums)
    epoch_loss: LossSums = field(default_factory=LossSums)
    throughput: Throughput = field(default_factory=Throughput)
    start: float = field(default_factory=time.perf_counter)
    images: int = 0  # images of finite steps, all processes
    lr: float = 0.0  # of the last step


class Trainer:
    """Train ``cfg``'s model on its dataset.

    Args:
        cfg: the resolved config.
        out_dir: the run folder.
        resume: a checkpoint to continue from (its epoch, batch and states).
        weights: initial weights for fine-tuning (checkpoint or Darknet file).
        progress: tqdm bars (None: only on a terminal).
    """

    def __init__(self, cfg: Config, out_dir: PathLike, resume: Optional[PathLike] = None,
                 weights: Optional[PathLike] = None, progress: Optional[bool] = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = dist.init_distributed(cfg.runtime.device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0  # rank 0: writes the run folder, logs, saves
        if self.is_main:
            make_dir(self.out_dir, "run folder")
            setup_logging(log_file=str(self.out_dir / "train.log"))
        # model.anchors: auto becomes numbers here, before config.yaml, the model and the checkpoints see it
        train_split = fit_auto_anchors(cfg)
        if self.is_main and (resume is None or not (self.out_dir / "config.yaml").exists()):
            dump_config(cfg, self.out_dir / "config.yaml")  # a run's config.yaml is never rewritten
        self.monitor = RunMonitor(self.out_dir, enabled=self.is_main, progress=progress)
        dist.apply_threads(cfg.runtime.threads)
        self._seed(cfg.runtime.seed)
        t = cfg.train

        model = build_model(cfg)  # after init_process_group, so that model.norm=syncbn takes effect
        if weights is not None:  # before the data: a wrong file is found in seconds, not after reading a dataset
            self.monitor.info("initial weights: %s", load_initial_weights(model, weights))
        # Before DDP, the optimizer and the EMA, which all take the parameters that train at construction.
        self.frozen = freeze_backbone(model, t.freeze)
        # The evaluator now, not at the first evaluation: a validation split that cannot be used, or a missing
        # test.coco_backend package, stops the run before the training set is built (an error naming the file
        # or the package), instead of failing every evaluation after hours of training.
        self.evaluator: Any = Evaluator(cfg)

        self.train_set = build_dataset(cfg, "train", annotations=train_split)
        if self.is_main:
            self.monitor.info("box sizes in the training split (pixels of the pictures):\n%s",
                              box_size_table(self.train_set.records, self.train_set.class_names))
            self._plot_labels()
            if resume is None:  # a resumed run cannot change its anchors
                check_anchor_recall(cfg, self.train_set.records, self.monitor)
        self.loader = build_dataloader(cfg, "train", dataset=self.train_set)
        self.epoch_len = self.loader.batch_sampler.epoch_batches()  # steps in a whole epoch
        self.dataset_size = len(self.train_set)
        self.global_batch = t.batch_size * self.world  # images per batch over all processes
        if self.epoch_len == 0:
            raise TrainingError(
                f"the training set has {len(self.train_set)} images, fewer than one step takes (train.batch_size="
                f"{t.batch_size} x {self.world} process(es)): lower train.batch_size"
            )
        model.to(self.device)
        if t.channels_last:
            model.to(memory_format=torch.channels_last)
        torch.manual_seed(cfg.runtime.seed + self.rank)  # distinct DropBlock masks per rank
        # The model being trained: what the optimizer and the EMA hold and the checkpoints save.
        self.model = model
        # The same model as each step calls it: in DistributedDataParallel under torchrun, through torch.compile
        # with train.compile; the model itself otherwise. Only the forward goes through it.
        self.wrapped_model = self._wrap(model)
        self._compiled_shapes: Set[Tuple[int, ...]] = set()  # input shapes the compiled model has seen
        self.loss_fn = build_loss(cfg, model)
        self.accumulate = max(1, round(t.nominal_batch_size / (t.batch_size * self.world)))
        total_batch = t.batch_size * self.world * self.accumulate
        self.base_lr = scaled_lr(t.lr, total_batch, t.ref_batch_size)
        self.schedule = LrSchedule.from_config(t, self.base_lr)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # With the GradScaler, a fused optimizer skips an overflowing step on the GPU itself; any other reads the
        # scaler's overflow flag on the host, a second synchronisation per step.
        self.optimizer = build_optimizer(model, self.base_lr, t.momentum, t.weight_decay, t.nesterov, t.optimizer,
                                         fused=self.scaler.is_enabled())
        self.ema = ModelEMA(model, t.ema_decay) if t.ema else None

        self.epoch = 0
        self.images_in_epoch = 0  # images of the current epoch used (all processes): the position in the schedule
        self.iteration = 0
        self.best: Dict[str, float] = {"AP": -1.0, "AP50": -1.0, "epoch": -1}
        self.history: List[Dict[str, Any]] = []
        self.loss_history: List[Dict[str, Any]] = []  # per epoch: mean loss terms, total, and the last lr
        self.per_class_table: List[Dict[str, Any]] = []  # of the last evaluation
        self.nonfinite_total = 0
        self._nonfinite_run = 0  # consecutive, across epoch boundaries
        self.train_time = 0.0
        self.train_images = 0
        self.wall_time = 0.0  # seconds of training and evaluation in earlier sessions (time_limit)
        self._session_start: Optional[float] = None
        self._last_eval_at: Optional[float] = None  # the position (_position) of the last evaluation
        self.stop_reason: Optional[str] = None
        self._time_agreed = False  # some rank found the time budget spent: every rank stops at the same batch
        self._eval_pending = False  # saved before an evaluation: a resume runs it first
        self.saved_on_stop = False  # a stop request was honoured with a checkpoint (not a second Ctrl-C)
        if resume is not None:
            self._resume(resume)
        if t.scheduler == "cosine" and t.cosine_end_epoch > t.epochs:
            self.monitor.warning(
                "train.cosine_end_epoch (%d) is after the last epoch (train.epochs=%d): the lr will stop at %.3g "
                "before decaying to train.min_lr; move train.cosine_start_epoch / cosine_end_epoch with train.epochs",
                t.cosine_end_epoch, t.epochs, self.schedule(t.epochs))
        self._warn_about_the_schedule(total_batch)
        self._stop_requested = False  # set by a signal on this rank
        self._stop_agreed = False  # some rank asked: every rank stops at the same batch
        self.monitor.info(
            "training %s on %s: %d images, %d classes, %d process(es) on %s, batch %d x %d process(es) x %d "
            "accumulation = %d per step, lr %.3g, %s, %s, output %s",
            cfg.model.arch, data_location(cfg), len(self.train_set), cfg.model.num_classes, self.world, self.device,
            t.batch_size, self.world, self.accumulate, total_batch, self.base_lr,
            {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}.get(self.amp_dtype, "fp32"),
            self.frozen, self.out_dir,
        )

    # ------------------------------------------------------------------------------ set-up
    def _warn_about_the_schedule(self, total_batch: int) -> None:
        """Say when the schedule cannot work as configured on this dataset (short runs, small datasets)."""
        t = self.cfg.train
        if t.warmup_epochs >= t.epochs:
            self.monitor.warning(
                "train.warmup_epochs (%g) is not shorter than the run (train.epochs=%d): the lr never reaches %.3g; "
                "shorten the warm-up", t.warmup_epochs, t.epochs, self.base_lr)
        steps = -(-self.epoch_len // self.accumulate)
        if steps < 10 and t.nominal_batch_size > t.batch_size * self.world:
            self.monitor.warning(
                "only %d optimizer step(s) per epoch: %d images in batches of %d per step (train.batch_size x "
                "processes x accumulation to train.nominal_batch_size=%d). For a small dataset lower "
                "train.nominal_batch_size (e.g. to train.batch_size) for more, smaller steps",
                steps, len(self.train_set), total_batch, t.nominal_batch_size)
        aug = self.cfg.data.aug
        for name, on, last_off in (("data.aug.mosaic_prob", aug.mosaic_prob > 0, t.no_mosaic_epochs),
                                   ("train.mixup", t.mixup and t.mixup_prob > 0, t.no_mixup_epochs)):
            if on and last_off >= t.epochs:
                key = "train.no_mosaic_epochs" if "mosaic" in name else "train.no_mixup_epochs"
                self.monitor.warning("%s is set, but %s (%d) covers the whole run (train.epochs=%d): it is never "
                                     "used; lower %s", name, key, last_off, t.epochs, key)
        if self.epoch >= t.epochs:
            self.monitor.warning("the run is already complete (%d of %d epochs): nothing left to train; raise "
                                 "train.epochs to train longer", self.epoch, t.epochs)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """``model`` as the step calls it: in DistributedDataParallel with more than one process, then through
        :func:`compile_for_training` with train.compile (torch.compile's documented order for DDP, which lets
        its optimizer split the graph at the gradient buckets)."""
        wrapped = model
        if self.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.cfg.train.compile:
            wrapped = compile_for_training(wrapped, self._graphs_per_run())
        return wrapped

    def _graphs_per_run(self) -> int:
        """How many input shapes and model settings a run can present to the compiled model: each size of the
        multi-scale set and data.img_size, at the full batch and the epoch's last, shorter one, for each
        DropBlock setting of train.dropblock_schedule (the off setting before its first row included)."""
        batches = self.loader.batch_sampler
        sizes = len(set(batches.sizes) | {batches.base_size})
        dropblock = len(self.cfg.train.dropblock_schedule) + 1 if self.cfg.model.dropblock else 1
        return sizes * 2 * dropblock

    def _log_new_compile(self, shape: Tuple[int, ...], seconds: float) -> None:
        """With train.compile, one log line for the first step at each input shape: its time is mostly the
        compilation of the graph for that shape."""
        if not self.cfg.train.compile or shape in self._compiled_shapes:
            return
        self._compiled_shapes.add(shape)
        self.monitor.info("train.compile: first step at input %s took %.1f s, compiling its graph included",
                          "x".join(map(str, shape)), seconds)

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _amp_dtype(self) -> Optional[torch.dtype]:
        if not self.cfg.train.amp or self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _resume(self, path: PathLike) -> None:
        checkpoint = load_checkpoint(path, map_location=self.device)
        extra = checkpoint.get("extra") or {}
        if "images_in_epoch" not in extra and "batch_in_epoch" not in extra:
            raise TrainingError(f"{path} holds weights but no training state; to start from it use --weights")
        report = load_model_weights(self.model, checkpoint, key="model")
        if report.missing or report.shape_mismatch:
            raise TrainingError(f"{path} does not fit this config's model ({report.summary()}); "
                                "resume with the config the run was started with")
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.load_state_dict(checkpoint["ema"], int(extra.get("ema_updates", 0)))
        if checkpoint.get("optimizer") is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch = int(checkpoint["epoch"])
        self.images_in_epoch = self._resumed_position(checkpoint, extra)
        self.iteration = int(checkpoint["iteration"])
        self.best = dict(extra.get("best", self.best))
        self.history = list(extra.get("history", []))
        self.loss_history = list(extra.get("loss_history", []))
        self.per_class_table = list(extra.get("per_class_table", []))
        self.nonfinite_total = int(extra.get("nonfinite_total", 0))
        self.train_time = float(extra.get("train_time", 0.0))
        self.train_images = int(extra.get("train_images", 0))
        # Checkpoints from before time_limit kept only the time of whole training epochs: the nearest there is.
        self.wall_time = float(extra.get("wall_time", self.train_time))
        self._last_eval_at = self.history[-1]["epoch"] if self.history else None
        self._eval_pending = bool(extra.get("eval_pending", False))
        rng = extra.get("rng_per_rank", [])
        if self.rank < len(rng):
            _set_rng_state(rng[self.rank])
        where = f"epoch {self.epoch + 1}" + (f", image {self.images_in_epoch} of {self.dataset_size}"
                                             if self.images_in_epoch else "")
        self.monitor.info("resumed from %s at %s (iteration %d)", path, where, self.iteration)

    def _geometry(self) -> Dict[str, int]:
        """What decides how an epoch is cut into steps (saved, and compared on resume)."""
        t = self.cfg.train
        return {"batch_size": t.batch_size, "processes": self.world, "accumulation": self.accumulate,
                "dataset_size": self.dataset_size}

    def _resumed_position(self, checkpoint: Dict[str, Any], extra: Dict[str, Any]) -> int:
        """Images of the current epoch already used, in this run's terms, and a log line of what changed.

        The position is kept in images, so another batch size, accumulation or number of processes
        resumes at the same point of the schedule and of the epoch's order. A dataset of another
        length keeps the same fraction of the epoch (its order is a new one, said so).
        """
        before = dict(extra.get("geometry") or {})
        if "images_in_epoch" in extra:
            images = int(extra["images_in_epoch"])
        else:  # a checkpoint of an earlier version: batches of each process
            saved_batch = int(((checkpoint.get("config") or {}).get("train") or {}).get("batch_size", 0) or
                              self.cfg.train.batch_size)
            processes = max(1, len(extra.get("rng_per_rank") or [None]))
            images = int(extra.get("batch_in_epoch", 0)) * saved_batch * processes
        now = self._geometry()
        changed = {k: (before[k], v) for k, v in now.items() if k in before and before[k] != v}
        if changed:
            self.monitor.warning("resuming with %s", ", ".join(f"{k} {b} (was {a})" for k, (a, b) in changed.items()))
            old_total = before.get("batch_size", 0) * before.get("processes", 1) * before.get("accumulation", 1)
            new_total = now["batch_size"] * now["processes"] * now["accumulation"]
            if old_total and old_total != new_total:
                self.monitor.warning(
                    "%d images per optimizer step now, %d before: the learning rate is scaled by %.3g (train.lr is "
                    "given for train.ref_batch_size images); keep train.nominal_batch_size to keep the step size",
                    new_total, old_total, new_total / old_total)
        old_size = int(before.get("dataset_size", self.dataset_size))
        if images and old_size != self.dataset_size:
            images = round(images * self.dataset_size / old_size)
            self.monitor.warning("the training set has %d images now, %d when this epoch started: resuming at the "
                                 "same fraction of the epoch (image %d), in a new order", self.dataset_size, old_size,
                                 images)
        return min(images, self.dataset_size)

    # ------------------------------------------------------------------------------ checkpoints
    def _save(self, name: str) -> None:
        """Save ``name`` (atomically, on rank 0) with everything a resume needs."""
        rng = dist.all_gather_objects(_rng_state())
        if not self.is_main:
            return
        extra = {
            "images_in_epoch": self.images_in_epoch, "geometry": self._geometry(), "workdir": os.getcwd(),
            "batch_in_epoch": self.images_in_epoch // self.global_batch,
            "ema_updates": self.ema.updates if self.ema else 0, "best": self.best,
            "history": self.history, "loss_history": self.loss_history, "per_class_table": self.per_class_table,
            "nonfinite_total": self.nonfinite_total, "train_time": self.train_time,
            "train_images": self.train_images, "rng_per_rank": rng, "eval_pending": self._eval_pending,
            "wall_time": self._elapsed(),
        }
        save_checkpoint(self.out_dir / name, self.model, ema=self.ema, optimizer=self.optimizer,
                        scheduler=self.schedule, scaler=self.scaler if self.scaler.is_enabled() else None,
                        epoch=self.epoch, iteration=self.iteration, config=self.cfg.to_dict(), extra=extra,
                        class_names=self.train_set.class_names, category_ids=self.train_set.category_ids)

    # ------------------------------------------------------------------------------ the loop
    def _set_dropblock(self, epoch: int) -> None:
        m = self.cfg.model
        if not m.dropblock:
            return
        rows = [r for r in self.cfg.train.dropblock_schedule if r[0] <= epoch]
        # Before the first row DropBlock is off (keep 1); the rows of train.dropblock_schedule (docs/CONFIG.md)
        # give sizes for strides 32, 16, 8.
        sizes, keep = (rows[-1][1:], m.dropblock_keep) if rows else ([1, 1, 1], 1.0)
        self.model.set_dropblock(list(reversed(sizes)), keep)

    def _train_epoch(self) -> None:
        """One epoch, or what is left of it after a resume: each batch's step (:meth:`_train_step`) and the
        records kept around it (:meth:`_record_step`)."""
        t = self.cfg.train
        batches = self.loader.batch_sampler
        batches.set_epoch(self.epoch, start_image=self.images_in_epoch)
        first = batches.start_batch  # the step a resumed epoch continues at
        last = first + batches.batches_left()  # after a change of geometry an epoch can end before epoch_len
        self._set_dropblock(self.epoch)
        self.wrapped_model.train()
        self.monitor.start_epoch(self.epoch, t.epochs, self.epoch_len, first)
        records = _EpochRecords()
        self.optimizer.zero_grad(set_to_none=True)
        for batch_index, batch in enumerate(self.loader, start=first):
            window = self._accumulation_window(batch_index, first, last)
            if batch_index == window.start:  # a step boundary: a checkpoint holds whole steps only
                self._stop_at_step_boundary()
            started = time.perf_counter()
            step = self._train_step(batch, batch_index, window)
            self._log_new_compile(tuple(batch["images"].shape), time.perf_counter() - started)
            self._record_step(step, batch_index, records)
        self._record_epoch(records)

    def _accumulation_window(self, batch_index: int, first: int, last: int) -> _Window:
        """The accumulation window of batch ``batch_index``: whole windows of ``accumulate`` batches (to
        train.nominal_batch_size images), cut short where a resumed epoch starts (``first``) or where the
        epoch ends (``last``, exclusive). The loss is divided by the window's real length."""
        aligned = batch_index - batch_index % self.accumulate
        return _Window(max(first, aligned), min(aligned + self.accumulate, last))

    def _stop_at_step_boundary(self) -> None:
        """Raise :class:`_Stop` when a stop was asked for or the time budget is spent: on every rank at the same
        batch (the flags :meth:`_exchange_step_flags` spread), or at once in a run of one process."""
        if self._stop_agreed or (self.world == 1 and self._stop_requested):
            raise _Stop("signal")
        if self._time_agreed or (self.world == 1 and self._over_time()):
            raise _Stop("time_limit")

    # ------------------------------------------------------------------------------ the step
    def _train_step(self, batch: Dict[str, Any], batch_index: int, window: _Window) -> _StepResult:
        """One batch: learning rate, forward under autocast, loss, the finite check with the flags exchange
        (:meth:`_exchange_step_flags`, the step's one host synchronisation), backward, and at the end of
        the accumulation window ``window`` the optimizer step and the EMA update.

        The loss terms come back as device tensors, unread: the caller reads them when it logs.

        Raises:
            TrainingError: train.nonfinite_patience non-finite losses in a row.
        """
        lr = self._apply_lr()
        images = batch["images"].to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch["targets"].to(self.device, non_blocking=True)
        optimizer_step = batch_index + 1 == window.end
        # batch["max_boxes"]: the most boxes of one image, counted on the host by the collate, so that the loss
        # pads to it instead of reading a count from the device.
        finite, terms = self._forward_backward(images, targets, batch["max_boxes"], window.length, optimizer_step)
        if not finite:
            self._count_nonfinite(batch_index, terms)
        if optimizer_step:
            self._optimizer_step(finite)
        return _StepResult(finite, terms, lr, images.shape[0], images.shape[-1])

    def _apply_lr(self) -> float:
        """Set the schedule's learning rate at the current position (epochs, fractional) and return it."""
        lr = self.schedule(self.epoch + self.images_in_epoch / self.dataset_size)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, max_boxes: int, window_length: int,
                          reduce_gradients: bool) -> Tuple[bool, Dict[str, torch.Tensor]]:
        """Forward and loss (``max_boxes``: see :class:`~yolo_asff.models.loss.YoloLoss`), then backward of
        ``loss / window_length`` when the loss is finite on every rank.

        Under DDP the gradients are all-reduced only with ``reduce_gradients`` (the window's last batch).
        Returns whether the loss was finite everywhere, and the loss terms (detached, on the device).
        """
        reduce = self.wrapped_model.no_sync() if (self.world > 1 and not reduce_gradients) else nullcontext()
        with reduce:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                outputs = self.wrapped_model(images)
            loss, terms = self.loss_fn(outputs, targets, tuple(images.shape[-2:]), max_boxes)
            finite = self._exchange_step_flags(loss)
            if finite:
                self._nonfinite_run = 0
                self.scaler.scale(loss / window_length).backward()
        return finite, terms

    def _exchange_step_flags(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank; also spreads a stop request and a spent time budget
        (each rank reads its own clock) to every rank.

        This is the step's one host synchronisation: the three flags are read in one go, after one
        small all-reduce under torch.distributed, so that all ranks skip the same steps and stop at
        the same batch (anything else would hang DDP). The flags are built on the device (a host
        tensor copied there would be a synchronisation of its own).
        """
        over_time = self.world > 1 and self._over_time()
        flags = torch.stack([torch.isfinite(loss.detach()).float().reshape(()),
                             torch.full((), -float(self._stop_requested), device=loss.device),
                             torch.full((), -float(over_time), device=loss.device)])
        if self.world > 1:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
        finite, stop, time_up = flags.tolist()
        self._stop_agreed = self._stop_agreed or stop < 0
        self._time_agreed = self._time_agreed or time_up < 0
        return finite > 0

    def _count_nonfinite(self, batch_index: int, terms: Dict[str, torch.Tensor]) -> None:
        """Count a skipped step; raise when train.nonfinite_patience of them came in a row."""
        t = self.cfg.train
        self._nonfinite_run += 1
        self.nonfinite_total += 1
        self.monitor.warning("non-finite loss at epoch %d, batch %d (%s); step skipped (%d in a row)",
                             self.epoch + 1, batch_index + 1, {k: float(v) for k, v in terms.items()},
                             self._nonfinite_run)
        if self._nonfinite_run >= t.nonfinite_patience:
            raise TrainingError(
                f"the loss was not finite for {self._nonfinite_run} steps in a row: training diverged. "
                f"Lower train.lr (now {t.lr}), lengthen train.warmup_epochs, set train.grad_clip, "
                "or turn off mixed precision with train.amp=false"
            )

    def _optimizer_step(self, finite: bool) -> None:
        """End of an accumulation window: clip, step, update the EMA (unless the last batch was not finite),
        and clear the gradients. Nothing here reads the device: the gradient norm stays a device tensor,
        and the GradScaler's overflow check runs on the device with the fused optimizer it is given."""
        if finite:
            if self.cfg.train.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            # A skipped last batch (not finite) would leave each process with its own unsynchronised gradients
            # under DDP: the window's step is skipped with it, on every rank alike.
            if any(p.grad is not None for g in self.optimizer.param_groups for p in g["params"]):
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------------ records of the steps
    def _record_step(self, step: _StepResult, batch_index: int, records: _EpochRecords) -> None:
        """Count the step, move the progress bar, and sum its loss terms (still on the device); every
        runtime.log_interval batches and at the epoch's end, read and log them."""
        self.iteration += 1
        self.images_in_epoch += self.global_batch
        self.monitor.step({"lr": f"{step.lr:.2e}", "size": step.size})
        records.lr = step.lr
        if not step.finite:
            return
        images = step.images * self.world
        records.throughput.add(images)
        records.images += images
        records.window_loss.add(step.terms)
        records.epoch_loss.add(step.terms)
        if (batch_index + 1) % self.cfg.runtime.log_interval == 0 or batch_index + 1 == self.epoch_len:
            self._log_window(batch_index, records.window_loss, step.lr, step.size, records.throughput.rate())
            records.window_loss, records.throughput = LossSums(), Throughput()

    def _record_epoch(self, records: _EpochRecords) -> None:
        """The epoch's mean loss terms in the loss history, and its time and images in the throughput."""
        self.monitor.end_epoch()
        if records.epoch_loss.count:
            means = records.epoch_loss.means()
            self.loss_history.append({"epoch": self.epoch + 1, "total": sum(means.values()), **means,
                                      "lr": records.lr})
        self.train_time += time.perf_counter() - records.start
        self.train_images += records.images
        self.images_in_epoch = 0

    def _stop_after_epoch(self) -> bool:
        """Whether any process was asked to stop by the end of the epoch (one all-reduce under DDP, so that
        every rank saves and leaves together instead of some starting the next epoch)."""
        if self.world == 1:
            return self._stop_requested
        flag = torch.tensor([float(self._stop_requested)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self._stop_agreed = self._stop_agreed or bool(flag.item())
        return self._stop_agreed

    def _log_window(self, batch_index: int, losses: LossSums, lr: float, size: int, rate: float) -> None:
        if not losses.count:
            return
        means = losses.means()
        total = sum(means.values())
        n = self.epoch_len
        done = self.iteration
        left = self.cfg.train.epochs * n - done
        eta = left * (self.cfg.train.batch_size * self.world) / max(rate, 1e-9)
        mem = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else 0.0
        self.monitor.info(
            "epoch %d/%d batch %d/%d | loss %.3f (%s) | lr %.3g | size %d | %.1f img/s%s | eta %s",
            self.epoch + 1, self.cfg.train.epochs, batch_index + 1, n, total,
            " ".join(f"{k} {v:.3f}" for k, v in means.items()), lr, size, rate,
            f" | mem {mem:.1f}G" if mem else "", format_duration(eta),
        )
        scalars = {f"loss/{k}": v for k, v in means.items()}
        scalars.update({"loss/total": total, "train/lr": lr, "train/input_size": size, "train/images_per_s": rate})
        if mem:
            scalars["train/gpu_memory_gib"] = mem
        self.monitor.scalars(scalars, done)

    # ------------------------------------------------------------------------------ evaluation
    def _evaluate_and_save(self) -> None:
        """Evaluate (a failure is logged, not raised), keep ``best.pth``, and save ``last.pth`` with the result."""
        try:
            record = self._evaluate()
        except Exception as exc:  # noqa: BLE001 - an evaluation never costs the run; the log keeps the traceback
            record = None
            self.monitor.exception(
                "evaluation after epoch %g failed (%s: %s); training goes on and %s is saved (the traceback is in "
                "train.log). Check the validation data with tools/check_dataset.py",
                self._position(), type(exc).__name__, exc, self.out_dir / "last.pth")
        self._eval_pending = False
        self._last_eval_at = self._position()
        if record is not None and record.get("AP", -1.0) > self.best["AP"]:
            self.best = {"AP": record.get("AP", 0.0), "AP50": record.get("AP50", 0.0), "epoch": self._position()}
            self._save("best.pth")
        self._save("last.pth")

    def _position(self) -> Union[int, float]:
        """Where training stands in epochs: completed epochs (an int), plus the fraction of the current one
        after a stop mid-epoch (a float, e.g. 10.42). Evaluations are recorded under it."""
        if not self.images_in_epoch:
            return self.epoch
        return round(self.epoch + self.images_in_epoch / self.dataset_size, 4)

    def _evaluate(self) -> Dict[str, Any]:
        model = self.ema.module if self.ema is not None else self.model
        results = self.evaluator.evaluate(model, progress=self.monitor.progress, loss_fn=self.loss_fn)
        keys = ("AP", "AP50", "AP75", "precision", "recall", "best_f1_conf")
        record: Dict[str, Any] = {"epoch": self._position(), **{k: float(results[k]) for k in keys if k in results}}
        if results.get("val_loss"):
            record["val_loss"] = dict(results["val_loss"])
        self.history.append(record)
        if "per_class_table" in results:
            self.per_class_table = results["per_class_table"]
        self.monitor.info("evaluation after epoch %g: AP %.4f, AP50 %.4f%s", record["epoch"], record.get("AP", 0.0),
                          record.get("AP50", 0.0),
                          f", validation loss {record['val_loss']['total']:.3f}" if "val_loss" in record else "")
        scalars = {f"val/{k}": v for k, v in record.items() if k not in ("epoch", "val_loss")}
        scalars.update({f"val_loss/{k}": v for k, v in record.get("val_loss", {}).items()})
        self.monitor.scalars(scalars, self.iteration)
        if self.is_main:
            self._plot_evaluation(results.get("curves"))
            try:
                self._log_val_images(model)
            except Exception as exc:  # a picture for TensorBoard is never worth a run
                self.monitor.warning("could not draw validation predictions for TensorBoard: %s", exc)
        return record

    # ------------------------------------------------------------------------------ plots (rank 0)
    def _plot_labels(self) -> None:
        """``labels.jpg``: what the training boxes hold, in the run folder and TensorBoard."""
        from .plots import LABELS_PLOT, write_labels_plot

        try:
            picture = write_labels_plot(self.train_set.records, self.train_set.class_names, self.out_dir,
                                        self.train_set.use_ignored)
            self.monitor.image(f"plots/{Path(LABELS_PLOT).stem}", picture, 0)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth a run
            self.monitor.warning("could not draw %s: %s: %s", LABELS_PLOT, type(exc).__name__, exc)

    def _plot_evaluation(self, curves: Any) -> None:
        """The evaluation's plots (PR and F1 curves, confusion matrices) in the run folder and TensorBoard."""
        from .plots import write_evaluation_plots

        if curves is None:
            return
        try:
            for name, picture in write_evaluation_plots(curves, self.out_dir).items():
                self.monitor.image(f"plots/{name}", picture, self.iteration)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth a run
            self.monitor.warning("could not draw the evaluation plots: %s: %s", type(exc).__name__, exc)

    def _write_results(self, plot: bool) -> None:
        """``results.csv`` (and with ``plot`` ``results.png``), rewritten from the whole history (right after a
        resume too)."""
        from .plots import write_results

        if not self.is_main:
            return
        try:
            write_results(self.out_dir, self.loss_history, self.history, plot)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth a run
            self.monitor.warning("could not write results.csv / results.png: %s: %s", type(exc).__name__, exc)

    def _log_val_images(self, model: nn.Module, count: int = 4) -> None:
        """A few validation images, the ground truth beside the current predictions, to TensorBoard."""
        from ..data.dataset import collate
        from ..utils.visualize import caption, draw_boxes, image_grid
        from .postprocess import postprocess

        dataset = self.evaluator.dataset
        samples = [dataset[i] for i in range(min(count, len(dataset)))]
        if not samples:
            return
        batch = collate(samples, self.cfg.data.mean, self.cfg.data.std)
        model.eval()
        with torch.no_grad():
            decoded = model(batch["images"].to(self.device))
        detections = postprocess(decoded, self.cfg.test.show_thresh, self.cfg.test.nms_thresh, self.cfg.test.max_det)
        pictures = []
        for sample, det in zip(samples, detections):
            truth = draw_boxes(sample["image"], sample["boxes"], sample["labels"], dataset.class_names)
            predicted = draw_boxes(sample["image"], det.boxes.cpu().numpy(), det.labels.cpu().numpy(),
                                   dataset.class_names, det.scores.cpu().numpy())
            pictures += [caption(truth, "ground truth"), caption(predicted, "predictions")]
        # Drawn in the letterboxed input frame, as the model saw it: one picture a row, truth on the left.
        self.monitor.image("val/predictions", image_grid(pictures, columns=2), self.iteration)

    # ------------------------------------------------------------------------------ budgets
    def _elapsed(self) -> float:
        """Seconds of training and evaluation of the whole run: earlier sessions' and this one's so far."""
        now = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        return self.wall_time + now

    def _over_time(self, elapsed: Optional[float] = None) -> bool:
        """Whether ``elapsed`` seconds (default: the run's so far, :meth:`_elapsed`) spend train.time_limit."""
        limit = self.cfg.train.time_limit
        return limit is not None and (self._elapsed() if elapsed is None else elapsed) >= limit * 3600.0

    def _evals_since_best(self) -> int:
        """Evaluations since the one that gave the best AP (all of them while none has given one)."""
        return sum(1 for h in self.history if h["epoch"] > self.best["epoch"])

    def _patience_spent(self) -> bool:
        patience = self.cfg.train.patience
        return bool(patience) and self._evals_since_best() >= patience

    def _patience_reason(self) -> str:
        n = self._evals_since_best()
        return (f"patience: no better AP in {n} evaluation{'s' * (n != 1)} since epoch {self.best['epoch']:g} "
                f"(best AP {max(self.best['AP'], 0.0):.4f}; train.patience={self.cfg.train.patience})")

    def _time_reason(self) -> str:
        where = (f"after epoch {self.epoch}" if not self.images_in_epoch else
                 f"in epoch {self.epoch + 1} at image {self.images_in_epoch} of {self.dataset_size}")
        return (f"time_limit: {self._elapsed() / 3600:.3g} h used of the {self.cfg.train.time_limit:g} h of "
                f"train.time_limit, stopped {where}")

    def _spent_on_start(self) -> Optional[str]:
        """Why a resumed run has nothing left to train (a budget spent already), or None."""
        if self.epoch >= self.cfg.train.epochs:
            return None
        if self._patience_spent():
            return self._patience_reason()
        # Earlier sessions' time only: the same number on every rank (their clocks would each decide alone).
        if self._over_time(self.wall_time):
            return self._time_reason()
        return None

    def _finish_early(self, reason: str) -> None:
        """A budget is spent: evaluate the weights where training stands, saving ``last.pth`` before and after,
        unless they were evaluated there already (and so saved there, no step since)."""
        self.stop_reason = reason
        if self._last_eval_at != self._position():
            self.monitor.info("final evaluation of the weights at epoch %g", self._position())
            self._eval_pending = True
            self._save("last.pth")  # before evaluating: a resume after a kill runs the evaluation first
            self._evaluate_and_save()
            self._write_results(plot=True)
        self.monitor.warning("stopped early, %s; %s is saved. Raise train.%s (or set it to null) with "
                             "--resume --opts to continue", reason, self.out_dir / "last.pth", reason.split(":")[0])

    # ------------------------------------------------------------------------------ public
    def request_stop(self, signum: Optional[int] = None, frame: Any = None) -> None:  # noqa: ARG002
        """Stop at the next step boundary and save (SIGTERM, first Ctrl-C); a second Ctrl-C stops at once."""
        if self._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_requested = True
        if signum is not None:
            self.monitor.warning("%s: saving a checkpoint after this step (Ctrl-C again to stop at once, "
                                 "without saving)", signal.Signals(signum).name)

    def train(self) -> Dict[str, Any]:
        """Run (or finish) the schedule; returns what ``metrics.json`` holds.

        SIGTERM or Ctrl-C save ``last.pth`` at the next step boundary and raise
        KeyboardInterrupt; ``--resume`` continues from exactly there. ``train.patience`` and
        ``train.time_limit`` end the run early but normally (see the module's docstring).
        """
        t = self.cfg.train
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self.request_stop)
        self._session_start = time.perf_counter()
        try:
            if self._eval_pending:  # the run stopped during an evaluation: do it now
                self.monitor.info("running the evaluation of epoch %g that the last run did not finish",
                                  self._position())
                self._evaluate_and_save()
                self._write_results(plot=True)
            spent = self._spent_on_start()
            if spent:
                self._finish_early(spent)
            while self.stop_reason is None and self.epoch < t.epochs:
                try:
                    self._train_epoch()
                except _Stop as stop:
                    self.monitor.end_epoch()
                    if stop.reason == "time_limit":
                        self._finish_early(self._time_reason())
                        break
                    self._save("last.pth")
                    self.saved_on_stop = True
                    self.monitor.warning("interrupted: saved %s at epoch %d, image %d of %d; continue with --resume",
                                         self.out_dir / "last.pth", self.epoch + 1, self.images_in_epoch,
                                         self.dataset_size)
                    raise KeyboardInterrupt from None
                self._end_of_epoch()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.monitor.close()
        self.stop_reason = self.stop_reason or "completed"
        metrics = self._metrics()
        if self.is_main:
            write_json(self.out_dir / "metrics.json", metrics)
            best = (f"best AP {metrics['best_AP']:.4f} / AP50 {metrics['best_AP50']:.4f} (epoch {metrics['best_epoch']:g})"
                    if metrics["best_epoch"] >= 0 else "no evaluation finished (see the errors above)")
            self.monitor.info("done (%s): %d epochs, %s, %.1f train images/s; %s", self.stop_reason.split(":")[0],
                              metrics["epochs_done"], best, metrics["train_images_per_s"], self.out_dir)
        return metrics

    def _end_of_epoch(self) -> None:
        """Count the epoch, save, evaluate when due, and stop on patience or on a stop request."""
        t = self.cfg.train
        self.epoch += 1  # from here on, self.epoch counts completed epochs
        evaluate = self.epoch % t.eval_interval == 0 or self.epoch == t.epochs
        stop = self._stop_after_epoch()
        if evaluate or self.epoch % t.save_interval == 0 or stop:
            # Before evaluating, so that an evaluation that fails or is killed never costs the epoch.
            self._eval_pending = evaluate
            self._save("last.pth")
        if evaluate:
            self._evaluate_and_save()
        self._write_results(plot=evaluate or stop)
        if evaluate and self.epoch < t.epochs and self._patience_spent():
            self._finish_early(self._patience_reason())  # evaluated and saved just now: nothing more to do
            return
        if stop and self.epoch < t.epochs:
            self.saved_on_stop = True
            self.monitor.warning("interrupted: saved %s after epoch %d; continue with --resume",
                                 self.out_dir / "last.pth", self.epoch)
            raise KeyboardInterrupt

    def _metrics(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "epochs_done": self.epoch,
            "best_AP": max(self.best["AP"], 0.0),
            "best_AP50": max(self.best["AP50"], 0.0),
            "best_epoch": self.best["epoch"],
            "final_AP": last.get("AP"),
            "final_AP50": last.get("AP50"),
            "train_images_per_s": self.train_images / self.train_time if self.train_time > 0 else 0.0,
            "train_time_s": self.train_time,
            "nonfinite_steps_skipped": self.nonfinite_total,
            "stop_reason": self.stop_reason,
            "wall_time_s": self._elapsed(),
            "history": self.history,
            "train_loss": self.loss_history,
            "per_class_table": self.per_class_table,
            "processes": self.world,
            "device": str(self.device),
        }
