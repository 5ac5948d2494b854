"""Loss micro-benchmark: assignment + loss, batched (ours) against a plain Python loop.

    .venv/bin/python scripts/bench_loss.py [--batch 16] [--size 608] [--boxes 20] [--classes 80]
                                           [--device cpu|cuda] [--repeat 5]

Both compute the same numbers (tests/models/test_loss.py checks it); the loop version
(tests/models/loss_reference.py) walks images and boxes as the official ASFF code does. Times are medians of ``--repeat``
runs after one warm-up, forward only (the loss value), with device synchronisation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models.loss_reference import reference_assign, reference_loss  # noqa: E402
from yolo_asff.engine.benchmark import time_call  # noqa: E402
from yolo_asff.models.build import YOLOV3_ANCHORS  # noqa: E402
from yolo_asff.models.head import HeadOutput  # noqa: E402
from yolo_asff.models.loss import YoloLoss, assign_targets  # noqa: E402


def make_case(batch: int, size: int, boxes: int, classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(batch, 3, size // s, size // s, 5 + classes, generator=g).to(device) for s in (8, 16, 32)]
    n = batch * boxes
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    wh = torch.rand(n, 2, generator=g) * size * 0.3 + 8
    targets = torch.cat([torch.arange(batch).repeat_interleave(boxes).float()[:, None],
                         torch.randint(0, classes, (n, 1), generator=g).float(),
                         xy, (xy + wh).clamp(max=size), torch.ones(n, 1)], dim=1).to(device)
    return outs, targets


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median milliseconds of ``repeat`` synchronised runs after one warm-up call."""
    return time_call(fn, device, warmup=0, iters=repeat).median_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=608)
    parser.add_argument("--boxes", type=int, default=20, help="boxes per image")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    outs, targets = make_case(args.batch, args.size, args.boxes, args.classes, device)
    loss = YoloLoss(torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32).view(3, 3, 2), (8, 16, 32), args.classes).to(device)
    size = (args.size, args.size)
    head_outputs = [HeadOutput(o, loss.anchors[level].view(1, -1, 1, 1, 2)) for level, o in enumerate(outs)]
    grid_sizes = [(o.shape[2], o.shape[3]) for o in outs]
    with torch.no_grad():
        assign_ours = timed(lambda: assign_targets(targets, loss.anchors, loss.strides, grid_sizes), device, args.repeat)
        assign_loop = timed(lambda: reference_assign(targets, loss.anchors, loss.strides, grid_sizes), device,
                            args.repeat)
        # max_boxes as the collate gives it: the loss then makes no host synchronisation.
        ours = timed(lambda: loss(head_outputs, targets, size, args.boxes), device, args.repeat)
        loop = timed(lambda: reference_loss(loss, outs, targets, size), device, max(1, args.repeat // 2))
        a, _ = loss(head_outputs, targets, size, args.boxes)
        b, _ = reference_loss(loss, outs, targets, size)
    print(f"assignment + loss, batch {args.batch}, {args.size}x{args.size}, {args.boxes} boxes/image, "
          f"{args.classes} classes, {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"  {'':28s}{'batched (ours)':>16s}{'plain loop':>14s}{'speed-up':>10s}")
    print(f"  {'assignment':28s}{assign_ours:13.2f} ms{assign_loop:11.2f} ms{assign_loop / assign_ours:9.1f}x")
    print(f"  {'assignment + whole loss':28s}{ours:13.2f} ms{loop:11.2f} ms{loop / ours:9.1f}x")
    print(f"  same loss: {a.item():.4f} (ours) vs {b.item():.4f} (loop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
