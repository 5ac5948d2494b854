"""Speed of a detector: inference latency and throughput, training-step throughput, data loading.

Every timing is the median of ``iters`` timed runs that follow one untimed first call
(reported on its own: it holds ``torch.compile``, cuDNN autotuning and lazy
initialisation) and ``warmup`` untimed calls. On CUDA each timed run is bracketed by
``torch.cuda.synchronize()``, so a time covers the kernels, not just their launch.
Reduced precision is autocast (``fp16``, ``bf16``) around the model; the decoding,
postprocess and loss run in float32 as they do in training and evaluation.

Each run also reports its peak memory (CUDA: ``torch.cuda.max_memory_allocated``, reset
before the run; the CPU: the process's peak resident set size from ``getrusage``, which
cannot be reset and so covers the whole process), its compile time when compiled (the first
call), and the host syncs of one call or step, counted by
:func:`~yolo_asff.utils.host_sync.count_host_syncs` on one extra, untimed call.

The results are plain dicts ready for JSON (:func:`~yolo_asff.utils.files.write_json`), with the environment
(:func:`environment`) and the command, so a figure can be quoted with what produced it.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..data import SampleRequest, build_dataset, collate
from ..data.transforms import unletterbox_boxes
from ..errors import YoloAsffError
from ..models.loss import build_loss
from ..utils.host_sync import count_host_syncs
from ..utils.model_stats import count_flops, count_parameters
from ..utils.sizes import parse_size
from .ema import ModelEMA
from .graphed import GraphedDetector
from .optim import build_optimizer
from .postprocess import DEFAULT_PRE_NMS_TOPK, postprocess
from .predictor import Predictor

__all__ = [
    "PRECISIONS",
    "BenchmarkError",
    "Timing",
    "time_call",
    "check_precision",
    "autocast",
    "environment",
    "synthetic_image",
    "synthetic_targets",
    "RunSettings",
    "benchmark_inference",
    "benchmark_training",
    "benchmark_data",
    "host_syncs_of",
    "peak_rss_mb",
    "format_table",
    "summarize_results",
]

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class BenchmarkError(YoloAsffError, ValueError):
    """A benchmark that cannot run as asked (no CUDA, a precision the device lacks...)."""


@dataclass
class Timing:
    """Milliseconds per call over ``iters`` timed calls, and the first (untimed-phase) call in seconds."""

    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    iters: int
    first_call_s: float

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int = 10, iters: int = 50) -> Timing:
    """Time ``fn()``: one first call, ``warmup`` untimed calls, then ``iters`` timed calls."""
    if iters < 1 or warmup < 0:
        raise BenchmarkError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return Timing(statistics.median(times), statistics.fmean(times), min(times), max(times), iters, first)


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision that ``device`` cannot run, saying what to use instead."""
    if precision not in PRECISIONS:
        raise BenchmarkError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cpu" and precision == "fp16":
        raise BenchmarkError("fp16 autocast needs CUDA; on CPU use --precision bf16 or fp32")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise BenchmarkError(f"{torch.cuda.get_device_name(device)} has no bf16 support; use --precision fp16")


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op for fp32).

    Cheap enough for a timed loop: it does not validate ``precision`` again; check it once
    beforehand with :func:`check_precision`.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> Optional[str]:
    """The checked-out commit, ``+dirty`` with uncommitted changes; read-only (no index refresh)."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, env=env)
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def environment(device: torch.device) -> Dict[str, Any]:
    """What ran the benchmark: device name, library versions, threads, code version, time (UTC)."""
    info: Dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git": _git_commit(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def synthetic_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A decoded BGR uint8 picture (noise over a gradient), standing in for a camera frame."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (height, width, 3)).astype(np.float32)
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def synthetic_targets(batch: int, size: Tuple[int, int], num_classes: int, boxes_per_image: int = 20,
                      seed: int = 0) -> Tensor:
    """Random ground truth ``(batch · boxes_per_image, 7)`` rows ``[image, class, x1, y1, x2, y2, 1]``
    in input pixels: sides from 8 px to half the input, inside the image."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    n = batch * boxes_per_image
    sides = 8 + torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) / 2 - 8)
    corner = torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) - sides)
    image = torch.arange(batch).repeat_interleave(boxes_per_image).float()
    labels = torch.randint(0, num_classes, (n,), generator=g).float()
    return torch.cat([image[:, None], labels[:, None], corner, corner + sides, torch.ones(n, 1)], dim=1)


def _prepare(model: nn.Module, device: torch.device, channels_last: bool, compile_model: bool):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    # dynamic=False: batch 1 and batch B each get their own static graph, as a deployment would.
    return (torch.compile(model, dynamic=False) if compile_model else model), model


def _to_input(x: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _peak_memory_mb(device: torch.device) -> Optional[float]:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (``getrusage``: never reset, all threads)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


def host_syncs_of(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Run ``fn()`` once under :func:`~yolo_asff.utils.host_sync.count_host_syncs`:
    ``{"total", "reads", "shapes", "by_op"}``."""
    with count_host_syncs() as syncs:
        fn()
    return {"total": syncs.total, "reads": syncs.reads, "shapes": syncs.shapes, "by_op": syncs.by_op()}


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@dataclass(frozen=True)
class RunSettings:
    """What every model benchmark takes: where and how to run, and how long to measure.

    ``size`` is the input (h, w) or one side (multiples of 32); ``batch`` the throughput batch;
    ``precision`` one of :data:`PRECISIONS`; ``warmup`` untimed and ``iters`` timed calls;
    ``channels_last`` the memory format; ``compile_model`` ``torch.compile`` the model.
    """

    device: torch.device
    size: Union[int, Sequence[int]] = 608
    batch: int = 32
    precision: str = "fp32"
    warmup: int = 10
    iters: int = 50
    channels_last: bool = False
    compile_model: bool = False

    def input_size(self) -> Tuple[int, int]:
        """``(h, w)`` after checking the size, the batch and the precision on the device.

        Raises:
            InvalidInputError: a size that is not a multiple of 32.
            BenchmarkError: a batch below 1, or a precision the device cannot run.
        """
        if self.batch < 1:
            raise BenchmarkError(f"--batch must be at least 1, got {self.batch}")
        check_precision(self.device, self.precision)
        return parse_size(self.size, "--size")


def benchmark_inference(
    model: nn.Module, cfg: Any, run: RunSettings, *, graphed: bool = False, pre_nms_topk: int = DEFAULT_PRE_NMS_TOPK,
) -> Dict[str, Any]:
    """Inference speed of ``model`` with ``cfg.test``'s postprocess settings.

    Measures, at batch 1: the forward pass; forward + :func:`postprocess`; end to end from
    a decoded 640×480 uint8 picture (:meth:`Predictor.preprocess
    <yolo_asff.engine.predictor.Predictor.preprocess>`: letterbox, copy to the device,
    normalise there; then forward, postprocess, boxes back to the picture's pixels).
    At ``batch``: forward throughput. With ``graphed``, also batch 1 through a
    :class:`~yolo_asff.engine.graphed.GraphedDetector` (forward + decode + fixed-shape NMS as
    one CUDA graph, or one compiled function on the CPU): from the loaded tensor to the
    detections on the host (``graphed``), and end to end from the picture (``end_to_end_graphed``),
    its NMS considering the ``pre_nms_topk`` best candidates.

    Returns ``{"model": {arch, ..., parameters, gflops}, "results": {...}}`` with results
    ``latency_ms`` (``forward``, ``forward_postprocess``, ``end_to_end`` and, graphed,
    ``graphed`` and ``end_to_end_graphed``: :class:`Timing` dicts), ``throughput`` (``batch``,
    ``images_per_s``, ``batch_ms``), ``peak_memory_mb`` (``batch_1``, ``batch_<B>``; None on
    CPU), ``peak_rss_mb`` (the process's, see :func:`peak_rss_mb`), ``compile_s`` (the first
    call of the compiled forward and of the graphed function, None when not compiled),
    ``host_syncs`` (per batch-1 call of each latency path: :func:`host_syncs_of`) and
    ``detections`` (``candidates`` above ``conf_thresh`` and ``kept`` after NMS on the
    batch-1 picture: the NMS load).
    """
    h, w = run.input_size()
    if pre_nms_topk < 1:
        raise BenchmarkError(f"--pre-nms-topk must be at least 1, got {pre_nms_topk}")
    device, batch, precision, warmup, iters = run.device, run.batch, run.precision, run.warmup, run.iters
    channels_last, compile_model = run.channels_last, run.compile_model
    model.eval().to(device)
    params, flops = count_parameters(model), count_flops(model, (h, w))
    # The predictor's own input path (letterbox, uint8 to the device, normalise there); its model is not run.
    predictor = Predictor.from_config(cfg, model, device=device, img_size=(h, w))
    run_model, plain_model = _prepare(model, device, channels_last, compile_model)
    t = cfg.test
    picture = synthetic_image()
    x1 = _to_input(predictor.preprocess([picture])[0], device, channels_last)
    xb = _to_input(torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)), device, channels_last)

    def forward(x: Tensor) -> Tensor:
        with autocast(device, precision):
            return run_model(x)

    def forward_postprocess():
        return postprocess(forward(x1), t.conf_thresh, t.nms_thresh, t.max_det)

    def end_to_end():
        x, infos = predictor.preprocess([picture])
        det = postprocess(forward(_to_input(x, device, channels_last)), t.conf_thresh, t.nms_thresh, t.max_det)[0]
        return unletterbox_boxes(det.boxes.cpu().numpy(), infos[0])

    paths = {"forward": lambda: forward(x1), "forward_postprocess": forward_postprocess, "end_to_end": end_to_end}
    if graphed:
        graph = GraphedDetector(plain_model, t.conf_thresh, t.nms_thresh, t.max_det, pre_nms_topk, device=device)

        def run_graphed(x: Tensor) -> Any:
            with autocast(device, precision):
                return graph(x)

        def end_to_end_graphed():
            x, infos = predictor.preprocess([picture])
            return unletterbox_boxes(run_graphed(_to_input(x, device, channels_last))[0].boxes.numpy(), infos[0])

        paths.update(graphed=lambda: run_graphed(x1), end_to_end_graphed=end_to_end_graphed)
    results: Dict[str, Any] = {"latency_ms": {}, "peak_memory_mb": {}}
    with torch.inference_mode():
        _reset_peak_memory(device)
        timings = {name: time_call(fn, device, warmup, iters) for name, fn in paths.items()}
        results["peak_memory_mb"]["batch_1"] = _peak_memory_mb(device)
        results["host_syncs"] = {name: host_syncs_of(fn)["total"] for name, fn in paths.items() if name != "forward"}
        results["compile_s"] = {
            "forward": timings["forward"].first_call_s if compile_model else None,
            "graphed": graph.compile_time_s if graphed else None,
        }
        decoded = forward(x1).float()
        best = (decoded[..., 4:5] * decoded[..., 5:]).amax(-1)
        results["detections"] = {
            "conf_thresh": t.conf_thresh,
            "candidates": int((best > t.conf_thresh).sum()),
            "kept": int(len(forward_postprocess()[0].scores)),
        }
        _reset_peak_memory(device)
        throughput = time_call(lambda: forward(xb), device, warmup, iters)
        results["peak_memory_mb"][f"batch_{batch}"] = _peak_memory_mb(device)
    results["peak_rss_mb"] = peak_rss_mb()
    results["latency_ms"] = {name: timing.to_dict() for name, timing in timings.items()}
    results["throughput"] = {
        "batch": batch,
        "images_per_s": batch * 1000.0 / throughput.median_ms,
        "batch_ms": throughput.to_dict(),
    }
    return {"model": _model_info(cfg, params, flops, (h, w)), "results": results}


def benchmark_training(model: nn.Module, cfg: Any, run: RunSettings, *, boxes_per_image: int = 20) -> Dict[str, Any]:
    """Training-step speed: the trainer's step on synthetic data.

    Random images and :func:`synthetic_targets` (``boxes_per_image`` each) already on the
    device: no data loading. The step is the trainer's: the model under autocast for
    ``fp16``/``bf16`` (with a ``GradScaler`` for ``fp16``), the real loss
    (``build_loss(cfg, model)``, float32 on the model's outputs), the finite check, backward,
    the config's optimizer (``train.optimizer`` through ``build_optimizer``) and, with ``train.ema``, the EMA update.

    Returns ``{"model": {...}, "results": {...}}`` with results ``step_ms`` (a :class:`Timing`
    dict), ``images_per_s``, ``batch``, ``boxes_per_image``, ``peak_memory_mb`` (None on
    CPU), ``peak_rss_mb``, ``compile_s`` (the first step when compiled, else None),
    ``host_syncs_per_step`` (:func:`host_syncs_of` one step), ``last_loss`` (``total`` and
    each term) and ``loss_finite``.
    """
    h, w = run.input_size()
    device, batch, precision, channels_last = run.device, run.batch, run.precision, run.channels_last
    model.train().to(device)
    params = count_parameters(model)
    run_model, model = _prepare(model, device, channels_last, run.compile_model)
    loss_fn = build_loss(cfg, model)
    tc = cfg.train
    scaler_on = precision == "fp16"
    # The trainer's optimizer (train.optimizer), fused with the fp16 GradScaler as the trainer does.
    optimizer = build_optimizer(model, tc.lr, tc.momentum, tc.weight_decay, tc.nesterov, tc.optimizer,
                                fused=scaler_on)
    scaler = torch.amp.GradScaler(device.type, enabled=scaler_on)
    ema = ModelEMA(model, tc.ema_decay) if tc.ema else None
    images = _to_input(torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)), device, channels_last)
    targets = synthetic_targets(batch, (h, w), cfg.model.num_classes, boxes_per_image).to(device)
    last: Dict[str, Tensor] = {}

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            outputs = run_model(images)
        # boxes_per_image is every image's count, as the collate's batch["max_boxes"]: the loss reads nothing back.
        total, terms = loss_fn(outputs, targets, (h, w), boxes_per_image)
        last.update(terms, total=total.detach())
        if not bool(torch.isfinite(total)):  # the trainer's finite check: its one planned host sync
            return
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model)

    _reset_peak_memory(device)
    timing = time_call(step, device, run.warmup, run.iters)
    memory = _peak_memory_mb(device)
    syncs = host_syncs_of(step)
    loss = {name: float(value) for name, value in last.items()}
    return {
        "model": _model_info(cfg, params, None, (h, w)),
        "results": {
            "step_ms": timing.to_dict(),
            "images_per_s": batch * 1000.0 / timing.median_ms,
            "batch": batch,
            "optimizer": tc.optimizer,
            "boxes_per_image": boxes_per_image,
            "peak_memory_mb": memory,
            "peak_rss_mb": peak_rss_mb(),
            "compile_s": timing.first_call_s if run.compile_model else None,
            "host_syncs_per_step": syncs,
            "last_loss": loss,
            "loss_finite": all(np.isfinite(v) for v in loss.values()),
        },
    }


def benchmark_data(cfg: Any, size: int = 608, samples: int = 300) -> Dict[str, Any]:
    """Training samples per second of one data-loading worker, in this process (no DataLoader).

    The config's training set with its full augmentation, mosaic and mixup as configured,
    at a fixed ``size`` × ``size``, collated into batches of ``train.batch_size``; 10 untimed
    samples first (file cache, lazy imports). At most ``10 ×`` the dataset's length samples.

    Returns ``{"settings": {...}, "results": {"images_per_s_per_worker", "seconds"}}``.
    """
    dataset = build_dataset(cfg, "train")
    n = min(samples, 10 * len(dataset))
    mixup, mosaic = cfg.train.mixup, cfg.data.aug.mosaic_prob > 0

    def request(i: int) -> SampleRequest:
        return SampleRequest(i % len(dataset), (size, size), mixup, mosaic=mosaic)

    for i in range(10):
        dataset[request(i)]
    start = time.perf_counter()
    batch = []
    for i in range(n):
        batch.append(dataset[request(i)])
        if len(batch) == cfg.train.batch_size:
            collate(batch, cfg.data.mean, cfg.data.std)
            batch = []
    elapsed = time.perf_counter() - start
    return {
        "settings": {"size": [size, size], "samples": n, "mixup": mixup, "mixup_prob": cfg.train.mixup_prob,
                     "mosaic_prob": cfg.data.aug.mosaic_prob, "batch": cfg.train.batch_size},
        "results": {"images_per_s_per_worker": n / elapsed, "seconds": elapsed},
    }


def _model_info(cfg: Any, params: int, flops: Optional[int], size: Tuple[int, int]) -> Dict[str, Any]:
    m = cfg.model
    info = {"arch": m.arch, "fusion": m.fusion, "rfb": m.rfb, "width": m.width, "num_classes": m.num_classes,
            "parameters": params}
    if flops is not None:
        info["gflops"] = flops / 1e9
        info["gflops_size"] = list(size)
    return info


def format_table(title: str, rows: Sequence[Tuple[str, str]]) -> str:
    """A two-column text table under ``title``."""
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * max(len(title), 20)]
    lines += [f"{key:<{width}}  {value}" for key, value in rows]
    return "\n".join(lines)


def _summary_figure(rec: Dict[str, Any]) -> Tuple[str, Optional[float]]:
    """The result column and the peak GPU memory (MB) of one run for :func:`summarize_results`."""
    r = rec["results"]
    syncs = r.get("host_syncs") or {}
    if rec["benchmark"] == "infer":
        lat = r["latency_ms"]
        figure = (f"{lat['forward']['median_ms']:.2f} / {lat['forward_postprocess']['median_ms']:.2f} / "
                  f"{lat['end_to_end']['median_ms']:.2f} ms @1 (forward / +NMS / end to end)")
        if "graphed" in lat:
            figure += (f"; graphed {lat['graphed']['median_ms']:.2f} / {lat['end_to_end_graphed']['median_ms']:.2f} ms"
                       f" @1 (from the tensor / end to end, {syncs.get('graphed', '?')} sync)")
        figure += f"; {r['throughput']['images_per_s']:.1f} img/s @{r['throughput']['batch']}"
        return figure, r["peak_memory_mb"].get(f"batch_{r['throughput']['batch']}")
    figure = f"{r['step_ms']['median_ms']:.1f} ms/step; {r['images_per_s']:.1f} img/s @{r['batch']}"
    if "host_syncs_per_step" in r:
        figure += f"; {r['host_syncs_per_step']['total']} host syncs/step"
    return figure, r["peak_memory_mb"]


def _best(values: Sequence[Tuple[float, str]], largest: bool) -> Optional[Tuple[float, str]]:
    return (max if largest else min)(values, key=lambda v: v[0]) if values else None


Target = Tuple[str, str, float, str, Optional[Tuple[float, str]]]


def _targets(records: Sequence[Tuple[Dict[str, Any], str]]) -> List[Target]:
    """Issue 17's targets (``docs/BENCHMARKS.md``) as ``(target, ">=" or "<=", limit, unit, best)``,
    ``best`` = (the best measured figure, its run) or None without a run that measures it."""
    train = [(r["results"], n, r["settings"]["compile"]) for r, n in records if r["benchmark"] == "train"
             and r["settings"]["precision"] != "fp32" and r["settings"]["batch"] == 32]
    infer = [(r["results"], n, r["settings"]["precision"]) for r, n in records if r["benchmark"] == "infer"]
    latency = [(r["latency_ms"][k]["median_ms"], f"{n} ({k})") for r, n, _ in infer
               for k in ("forward_postprocess", "graphed") if k in r["latency_ms"]]
    return [
        ("train step, batch 32, AMP, compiled", ">=", 350, "images/s",
         _best([(r["images_per_s"], n) for r, n, compiled in train if compiled], True)),
        ("train step, batch 32, AMP, eager", ">=", 300, "images/s",
         _best([(r["images_per_s"], n) for r, n, compiled in train if not compiled], True)),
        ("train step, batch 32, AMP: peak memory (largest run)", "<=", 22 * 1024, "MB",
         _best([(r["peak_memory_mb"], n) for r, n, _ in train if r["peak_memory_mb"] is not None], True)),
        ("batch 1: forward + decode + NMS from a loaded tensor", "<=", 3, "ms", _best(latency, False)),
        ("batch 32: half-precision inference forward", ">=", 1100, "images/s",
         _best([(r["throughput"]["images_per_s"], n) for r, n, precision in infer
                if precision == "fp16" and r["throughput"]["batch"] == 32], True)),
    ]


def _target_lines(records: Sequence[Tuple[Dict[str, Any], str]]) -> List[str]:
    lines = ["", "Targets (ASFF, 80 classes, 608x608, one H100 or H200; they mean nothing for other runs):", "",
             "| target | required | measured | met | run |", "| --- | --- | ---: | --- | --- |"]
    for target, sign, limit, unit, best in _targets(records):
        required = f"{sign} {limit:,} {unit}"
        if best is None:
            lines.append(f"| {target} | {required} | - | no run | - |")
            continue
        value, run = best
        met = value >= limit if sign == ">=" else value <= limit
        lines.append(f"| {target} | {required} | {value:,.2f} {unit} | {'yes' if met else 'NO'} | {run} |")
    return lines


def summarize_results(folder: Union[str, os.PathLike]) -> str:
    """A markdown table of every ``infer``/``train`` JSON in ``folder`` (for ``scripts/bench_gpu.sh``),
    ordered by benchmark, precision, layout and compilation, under a line naming the machine, then
    for CUDA runs, the best figure for each target of issue 17 (``docs/BENCHMARKS.md``) and whether it is met."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("benchmark") in ("infer", "train"):
            s = rec["settings"]
            key = (rec["benchmark"], PRECISIONS.index(s["precision"]), s["channels_last"], s["compile"])
            records.append((key, path.name, rec))
    if not records:
        return "no infer/train results\n"
    records.sort(key=lambda item: item[0])
    first = records[0][2]
    env, size = first["env"], first["settings"]["size"]
    lines = [f"{env['device_name']} ({env['device']}), torch {env['torch']}, CUDA {env['cuda']}; "
             f"{first['config']} at {size[0]}x{size[1]}; code {env.get('git')}", "",
             "| what | precision | options | result | peak MB | file |", "| --- | --- | --- | --- | ---: | --- |"]
    for _, name, rec in records:
        s = rec["settings"]
        flags = "+".join(f for f, on in (("channels_last", s["channels_last"]), ("compile", s["compile"])) if on)
        figure, memory = _summary_figure(rec)
        lines.append(f"| {rec['benchmark']} | {s['precision']} | {flags or '-'} | {figure} | "
                     f"{memory if memory is not None else '-'} | {name} |")
    if str(env["device"]).startswith("cuda"):  # the targets are GPU figures
        lines += _target_lines([(rec, name) for _, name, rec in records])
    return "\n".join(lines) + "\n"
