"""Anchor fitting benchmark: how long `yolo-asff anchors` takes on a million boxes.

    .venv/bin/python scripts/bench_anchors.py [--boxes 1000000] [--per-image 10] [--seed 0]
                                              [--sample 50000] [--generations 1000]

Makes ``--boxes`` random boxes (log-uniform sides of 4 to 400 pixels, aspect 1:8 to 8:1) in
pictures of 320 to 640 pixels, ``--per-image`` to a picture, held in memory as the readers' records
(no files). Times the two steps of a fit (yolo_asff/data/anchors.py): the box shapes at the training
size (letterbox into 608) and the fit (k-means and evolution on a sample, then the figures on every
box). Prints the times, the best-possible recall before (the COCO anchors) and after, and the load
average, since the figure depends on what else the machine runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.data.anchors import box_shapes, fit_anchors, recall_threshold  # noqa: E402
from yolo_asff.data.records import ImageRecord  # noqa: E402
from yolo_asff.models.build import YOLOV3_ANCHORS  # noqa: E402


def synthetic_records(boxes: int, per_image: int, seed: int):
    """``boxes`` random boxes in ``ceil(boxes / per_image)`` in-memory picture records."""
    rng = np.random.default_rng(seed)
    images = -(-boxes // per_image)
    widths, heights = rng.integers(320, 641, images), rng.integers(320, 641, images)
    side = np.exp(rng.uniform(np.log(4), np.log(400), boxes))
    aspect = np.exp(rng.uniform(np.log(1 / 8), np.log(8), boxes))
    wh = np.stack((side * np.sqrt(aspect), side / np.sqrt(aspect)), 1)
    records = []
    for i in range(images):
        part = wh[i * per_image:(i + 1) * per_image]
        size = np.array([widths[i], heights[i]])
        part = np.minimum(part, size)
        xyxy = np.concatenate((np.zeros_like(part), part), 1).astype(np.float32)
        records.append(ImageRecord(i, "", int(widths[i]), int(heights[i]), xyxy, np.zeros(len(part), np.int64),
                                   np.zeros(len(part), bool)))
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=50_000)
    parser.add_argument("--generations", type=int, default=1000)
    args = parser.parse_args(argv)
    records = synthetic_records(args.boxes, args.per_image, args.seed)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    shapes = box_shapes(records, 608, letterbox=True, min_side=6.0)
    shaped = time.perf_counter()
    fit = fit_anchors(shapes, 3, 3, recall_threshold(None), YOLOV3_ANCHORS, args.seed, args.sample, args.generations)
    done = time.perf_counter()
    print(f"anchor fit on {args.boxes:,} boxes in {len(records):,} pictures ({shapes.skipped:,} skipped as too small)")
    print(f"  box shapes at 608 (letterbox): {shaped - start:6.2f} s")
    print(f"  fit (k-means + {args.generations} generations on {fit.sample:,} boxes, figures on all): "
          f"{done - shaped:6.2f} s")
    print(f"  total: {done - start:.2f} s; best-possible recall {fit.before.bpr:.4f} (COCO anchors) -> "
          f"{fit.after.bpr:.4f}, mean best IoU {fit.before.mean_iou:.3f} -> {fit.after.mean_iou:.3f}")
    print(f"  load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
