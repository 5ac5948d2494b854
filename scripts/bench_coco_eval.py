"""COCO bbox scoring time: pycocotools against faster-coco-eval (``test.coco_backend``), same numbers.

    .venv/bin/python scripts/bench_coco_eval.py [--images 5000] [--classes 80] [--seed 0] [--repeat 3]

Scores one generated case (:func:`synthetic_case`) with :func:`yolo_asff.engine.evaluator.score_coco`
on both backends, each on ground truth of its own ``COCO`` class built beforehand (as the evaluator
keeps it between evaluations), and prints the median time of ``--repeat`` runs of each and the
largest difference over the 12 numbers and the per-class AP and AP50. tests/engine/test_coco_backends.py
runs the same comparison on a smaller case.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.engine.coco_api import build_coco  # noqa: E402
from yolo_asff.engine.evaluator import METRIC_KEYS, score_coco  # noqa: E402

# Box sides (pixels) that land exactly on pycocotools' area-range edges (32², 96²), where < and <= differ.
EDGE_SIDES = (32, 96)


def _box(rng: np.random.Generator, width: int, height: int) -> List[float]:
    """A box [x, y, w, h] inside the picture, sizes spread over COCO's small, medium and large."""
    if rng.random() < 0.05:
        side = float(rng.choice(EDGE_SIDES))
        w = h = min(side, width - 1, height - 1)
    else:
        area = float(np.exp(rng.uniform(np.log(16), np.log(0.5 * width * height))))
        aspect = float(np.exp(rng.uniform(-1.0, 1.0)))
        w, h = min(np.sqrt(area * aspect), width - 1.0), min(np.sqrt(area / aspect), height - 1.0)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)]


def _detections(rng: np.random.Generator, image_id: int, gts: List[Dict[str, Any]], width: int, height: int,
                classes: int) -> List[Dict[str, Any]]:
    """Detections of one picture: most boxes found with jitter (IoU from about 0.3 to 1), some with the wrong
    class, false positives, a few pictures with more than 100 (pycocotools keeps the best 100). Scores have
    three decimals, so that ties are common (their order must match too)."""
    out = []
    for gt in gts:
        if rng.random() < 0.15:
            continue
        x, y, w, h = gt["bbox"]
        jitter = rng.normal(0, rng.choice([0.03, 0.1, 0.25]), 4) * [w, h, w, h]
        category = gt["category_id"] if rng.random() < 0.9 else int(rng.integers(1, classes + 1))
        out.append({"bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)],
                    "category_id": category, "score": rng.uniform(0.2, 1.0)})
        if rng.random() < 0.1:  # a duplicate: a false positive once the first is matched
            out.append({**out[-1], "score": rng.uniform(0.05, 0.9)})
    crowded = rng.random() < 0.03
    for _ in range(int(rng.integers(120, 180)) if crowded else int(rng.poisson(3))):
        out.append({"bbox": _box(rng, width, height), "category_id": int(rng.integers(1, classes + 1)),
                    "score": rng.uniform(0.0, 0.6)})
    return [{"image_id": image_id, "category_id": d["category_id"],
             "bbox": [round(float(v), 2) for v in d["bbox"]], "score": round(float(d["score"]), 3)} for d in out]


def synthetic_case(images: int = 5000, classes: int = 80, seed: int = 0) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """A generated COCO ground truth (``images`` pictures, ``classes`` categories with ids 1..classes, about
    7 boxes a picture, some pictures empty, 3% crowd boxes, areas across small/medium/large and on their
    edges) and detections of it (:func:`_detections`). Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    data: Dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": c, "name": f"class{c}"} for c in range(1, classes + 1)]}
    results: List[Dict[str, Any]] = []
    for image_id in range(1, images + 1):
        width, height = int(rng.integers(160, 1000)), int(rng.integers(160, 1000))
        data["images"].append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        gts = []
        for _ in range(int(rng.poisson(7)) if rng.random() > 0.05 else 0):
            bbox = _box(rng, width, height)
            gts.append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                        "category_id": int(rng.integers(1, classes + 1)), "bbox": bbox,
                        "area": round(bbox[2] * bbox[3], 2), "iscrowd": int(rng.random() < 0.03)})
            data["annotations"].append(gts[-1])
        results += _detections(rng, image_id, gts, width, height, classes)
    return data, results


def compare(data: Dict[str, Any], results: List[Dict[str, Any]], repeat: int = 1) -> Dict[str, Any]:
    """Score ``results`` on ``data`` with both backends; the median seconds of each and the largest
    absolute differences (the 12 numbers, NaN equal to NaN; per-class AP and AP50)."""
    category_ids = [c["id"] for c in data["categories"]]
    names = [c["name"] for c in data["categories"]]
    scores, seconds = {}, {}
    for backend in ("pycocotools", "faster"):
        gt = build_coco(copy.deepcopy(data), backend)  # both libraries write into the annotations
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            scores[backend] = score_coco(gt, results, category_ids, names, backend=backend)
            times.append(time.perf_counter() - start)
        seconds[backend] = statistics.median(times)
    ref, fast = scores["pycocotools"], scores["faster"]

    def largest(a: List[float], b: List[float]) -> float:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return float("inf")
        return float(np.nanmax(np.abs(a - b), initial=0.0))

    return {
        "seconds": seconds, "scores": scores,
        "stats_diff": largest([ref[k] for k in METRIC_KEYS], [fast[k] for k in METRIC_KEYS]),
        "per_class_diff": largest(list(ref["per_class"].values()), list(fast["per_class"].values())),
        "per_class50_diff": largest(list(ref["per_class_AP50"].values()), list(fast["per_class_AP50"].values())),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    data, results = synthetic_case(args.images, args.classes, args.seed)
    crowd = sum(a["iscrowd"] for a in data["annotations"])
    print(f"{args.images} images, {len(data['annotations'])} boxes ({crowd} crowd), {len(results)} detections, "
          f"{args.classes} classes")
    out = compare(data, results, args.repeat)
    ref = out["scores"]["pycocotools"]
    print("  ".join(f"{k} {ref[k]:.4f}" for k in METRIC_KEYS))
    for backend, seconds in out["seconds"].items():
        print(f"{backend:<12} {seconds:7.2f} s (median of {args.repeat})")
    print(f"faster-coco-eval is {out['seconds']['pycocotools'] / out['seconds']['faster']:.1f}x as fast")
    print(f"largest difference: 12 numbers {out['stats_diff']:.2e}, per-class AP {out['per_class_diff']:.2e}, "
          f"per-class AP50 {out['per_class50_diff']:.2e}")
    return 0 if max(out["stats_diff"], out["per_class_diff"], out["per_class50_diff"]) <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
