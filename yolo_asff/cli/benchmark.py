"""Benchmarks that print numbers (never timed tests).

    yolo-asff benchmark infer --config F [--device cpu|cuda] [--size S | --size H W] [--batch B]
        [--precision fp32|fp16|bf16] [--warmup N] [--iters N] [--channels-last] [--compile]
        [--graphed [--pre-nms-topk K]] [--weights W] [--json OUT] [--opts ...]
    yolo-asff benchmark train --config F [same options as infer, without --weights]
    yolo-asff benchmark data --config F [--size 608] [--samples 300] [--json OUT] [--opts ...]
    (tools/benchmark.py in a clone; infer --weights CKPT needs no --config)

``infer``: parameters, GFLOPs, batch-1 latency (forward; forward + postprocess; end to end
from a decoded picture; with ``--graphed`` the same through one CUDA graph or compiled
function), forward throughput at ``--batch``.
``train``: training steps per second (the trainer's step: forward, real loss, finite check,
backward, the config's optimizer, EMA) on synthetic data.
Both also report peak memory (CUDA: max allocated; CPU: the process's peak RSS), the compile
time when compiled, and host syncs per call or step.
``data``: training samples per second of one data-loading worker (one process, no
DataLoader overhead) with the config's full augmentation, mosaic and mixup, at a fixed size.
Timings are medians after warm-up; ``--json`` also records the device, versions and command.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch

from ..config import load_config
from ..engine.benchmark import (
    PRECISIONS, RunSettings, benchmark_data, benchmark_inference, benchmark_training, check_precision, environment,
    format_table,
)
from ..engine.loading import model_for_weights
from ..engine.postprocess import DEFAULT_PRE_NMS_TOPK
from ..utils.cli import UserError, add_size_argument, tool_main
from ..utils.device import resolve_device
from ..utils.files import check_writable, write_json
from ..utils.sizes import parse_size


def bench_data(args: argparse.Namespace) -> dict:
    if not args.config:
        raise UserError("--config is needed for the data benchmark (its dataset and augmentation)")
    record = benchmark_data(load_config(args.config, args.opts), args.size, args.samples)
    s, r = record["settings"], record["results"]
    print(f"data pipeline: {r['images_per_s_per_worker']:.1f} images/s per worker at {args.size}x{args.size} "
          f"(full augmentation, mosaic {'p=' + str(s['mosaic_prob']) if s['mosaic_prob'] > 0 else 'off'}, "
          f"mixup {'on, p=' + str(s['mixup_prob']) if s['mixup'] else 'off'}, collate included; "
          f"{s['samples']} samples in {r['seconds']:.1f} s)")
    return record


def _size(args: argparse.Namespace, default) -> tuple:
    return parse_size(args.size if args.size is not None else default, "--size")


def _ms(timing: dict) -> str:
    return f"{timing['median_ms']:.2f} ms (min {timing['min_ms']:.2f}, max {timing['max_ms']:.2f}, n={timing['iters']})"


def _memory(mb) -> str:
    return "n/a (CPU)" if mb is None else f"{mb:,.0f} MB"


def _rss(mb: float) -> str:
    return f"process peak RSS {mb:,.0f} MB (getrusage, whole process)"


def _syncs(n: int) -> str:
    return f"{n} host sync{'s' if n != 1 else ''}"


def bench_model(args: argparse.Namespace) -> dict:
    weights = getattr(args, "weights", None)
    ready = model_for_weights(weights, args.config, args.opts)
    cfg, model = ready.cfg, ready.model
    device = resolve_device(args.device, "--device")
    check_precision(device, args.precision)
    infer = args.what == "infer"
    size = _size(args, cfg.test.img_size if infer else cfg.data.img_size)
    batch = args.batch or (cfg.test.batch_size if infer else cfg.train.batch_size)
    settings = {"size": list(size), "batch": batch, "precision": args.precision, "channels_last": args.channels_last,
                "compile": args.compile, "warmup": args.warmup, "iters": args.iters, "weights": weights}
    run = RunSettings(device, size, batch, args.precision, args.warmup, args.iters, args.channels_last, args.compile)
    if infer:
        settings["graphed"] = args.graphed
        if args.graphed:
            settings["pre_nms_topk"] = args.pre_nms_topk
        record = benchmark_inference(model, cfg, run, graphed=args.graphed, pre_nms_topk=args.pre_nms_topk)
    else:
        record = benchmark_training(model, cfg, run)
    env = environment(device)
    m, r = record["model"], record["results"]
    rows = [
        ("device", f"{env['device_name']} ({env['device']}), torch {env['torch']}"),
        ("model", f"{m['arch']} (fusion={m['fusion']}, rfb={m['rfb']}, width={m['width']}), "
                  f"{m['num_classes']} classes, {m['parameters']:,} parameters"),
        ("settings", f"{size[0]}x{size[1]}, {args.precision}, channels_last={args.channels_last}, "
                     f"compile={args.compile}, warmup {args.warmup}, iters {args.iters}"),
    ]
    if infer:
        lat, thr, det, syncs = r["latency_ms"], r["throughput"], r["detections"], r["host_syncs"]
        rows += [
            ("GFLOPs", f"{m['gflops']:.2f} at {size[0]}x{size[1]}"),
            ("forward @1", _ms(lat["forward"])),
            ("+ postprocess @1", _ms(lat["forward_postprocess"]) + f", {_syncs(syncs['forward_postprocess'])}"),
            ("end to end @1", _ms(lat["end_to_end"]) + f", from a 640x480 uint8 picture, "
                                                      f"{_syncs(syncs['end_to_end'])}"),
        ]
        if args.graphed:
            rows += [
                ("graphed @1", _ms(lat["graphed"]) + f", forward + decode + NMS (top {args.pre_nms_topk}) + copy "
                                                    f"to host, {_syncs(syncs['graphed'])}"),
                ("graphed end to end @1", _ms(lat["end_to_end_graphed"]) + f", {_syncs(syncs['end_to_end_graphed'])}"),
                ("graphed compile", f"{r['compile_s']['graphed']:.1f} s" if r["compile_s"]["graphed"] is not None
                 else "not compiled (fallback: see the warning)"),
            ]
        rows += [
            ("first call", f"{lat['forward']['first_call_s']:.2f} s" + (" (compile)" if args.compile else "")),
            (f"throughput @{batch}", f"{thr['images_per_s']:.1f} images/s (forward, {_ms(thr['batch_ms'])} per batch)"),
            ("peak memory", f"{_memory(r['peak_memory_mb']['batch_1'])} @1, "
                            f"{_memory(r['peak_memory_mb'][f'batch_{batch}'])} @{batch}; {_rss(r['peak_rss_mb'])}"),
            ("detections", f"{det['candidates']} candidates above {det['conf_thresh']}, {det['kept']} kept"
                           + ("" if weights else " (random weights: pass --weights for a realistic NMS load)")),
        ]
    else:
        rows += [
            (f"train step @{batch}", _ms(r["step_ms"])),
            ("throughput", f"{r['images_per_s']:.1f} images/s (forward, loss, finite check, backward, {r['optimizer']}, EMA; "
                           f"synthetic data, {r['boxes_per_image']} boxes/image)"),
            ("first call", f"{r['step_ms']['first_call_s']:.2f} s" + (" (compile)" if args.compile else "")),
            ("host syncs", f"{r['host_syncs_per_step']['total']} per step ({r['host_syncs_per_step']['by_op']})"),
            ("peak memory", f"{_memory(r['peak_memory_mb'])}; {_rss(r['peak_rss_mb'])}"),
            ("last loss", f"{r['last_loss']['total']:.3f}" + ("" if r["loss_finite"] else " (NOT FINITE)")),
        ]
    print(format_table(f"{args.what} benchmark: {args.config or weights}", rows))
    return {"env": env, "settings": settings, **record}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config YAML or shipped config name (infer with --weights: default the "
                        "checkpoint's own)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. model.width=0.5")


def _add_model_options(parser: argparse.ArgumentParser, warmup: int, iters: int) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    add_size_argument(parser, "the config's")
    parser.add_argument("--batch", type=int, help="batch size (default: the config's)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast precision")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls after the first one")
    parser.add_argument("--iters", type=int, default=iters, help="timed calls (the median is reported)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (first call not timed)")


@tool_main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    infer = sub.add_parser("infer", help="inference latency, throughput, size and cost")
    _add_common(infer)
    _add_model_options(infer, warmup=10, iters=50)
    infer.add_argument("--weights", help="checkpoint to load (realistic detection counts for the NMS timing)")
    infer.add_argument("--graphed", action="store_true", help="also batch 1 as one CUDA graph (CPU: one compiled "
                       "function) with the fixed-shape NMS; its first call compiles")
    infer.add_argument("--pre-nms-topk", type=int, default=DEFAULT_PRE_NMS_TOPK, metavar="K",
                       help=f"--graphed: candidates its NMS considers, K×K work (default {DEFAULT_PRE_NMS_TOPK})")
    train = sub.add_parser("train", help="training-step throughput")
    _add_common(train)
    _add_model_options(train, warmup=5, iters=20)
    data = sub.add_parser("data", help="data pipeline throughput per worker")
    _add_common(data)
    data.add_argument("--size", type=int, default=608)
    data.add_argument("--samples", type=int, default=300)
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json, "--json file")
    try:
        if args.what == "data":
            record = {"env": environment(torch.device("cpu")), **bench_data(args)}
        else:
            record = bench_model(args)
    except torch.cuda.OutOfMemoryError:
        batch = getattr(args, "batch", None)  # None: the config's batch size, not known here
        at = f" at batch {batch}" if batch is not None else ""
        print(f"error: out of GPU memory{at}; try a smaller --batch", file=sys.stderr)
        return 1
    if args.json:
        command = shlex.join(["tools/benchmark.py", *argv])
        write_json(args.json, {"benchmark": args.what, "command": command, "config": args.config,
                               "opts": args.opts, **record})
        print(f"wrote {args.json}")
    return 0
