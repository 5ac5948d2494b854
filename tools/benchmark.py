"""Benchmarks that print numbers (never timed tests).

    python tools/benchmark.py data --config configs/builtin.yaml [--size 608] [--samples 300]

``data``: training samples per second of one data-loading worker (one process, no
DataLoader overhead) with the config's full augmentation and mixup, at a fixed size.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff import load_config  # noqa: E402
from yolo_asff.config import ConfigError  # noqa: E402
from yolo_asff.data import SampleRequest, build_dataset, collate  # noqa: E402


def bench_data(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)
    dataset = build_dataset(cfg, "train")
    size = (args.size, args.size)
    n = min(args.samples, 10 * len(dataset))
    mixup = cfg.train.mixup
    for i in range(10):  # warm-up: file cache, lazy imports
        dataset[SampleRequest(i % len(dataset), size, mixup)]
    start = time.perf_counter()
    batch = []
    for i in range(n):
        batch.append(dataset[SampleRequest(i % len(dataset), size, mixup)])
        if len(batch) == cfg.train.batch_size:
            collate(batch, cfg.data.mean, cfg.data.std)
            batch = []
    elapsed = time.perf_counter() - start
    print(f"data pipeline: {n / elapsed:.1f} images/s per worker at {args.size}x{args.size} "
          f"(full augmentation, mixup {'on, p=' + str(cfg.train.mixup_prob) if mixup else 'off'}, collate included; "
          f"{n} samples in {elapsed:.1f} s)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    data = sub.add_parser("data", help="data pipeline throughput per worker")
    data.add_argument("--config", required=True)
    data.add_argument("--size", type=int, default=608)
    data.add_argument("--samples", type=int, default=300)
    data.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    try:
        return bench_data(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
