"""Print the README's model table: parameters (80 classes) and GFLOPs at 608 for each model config.

    .venv/bin/python scripts/model_table.py [--size 608]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yolo_asff import build_model, load_config  # noqa: E402
from yolo_asff.utils.model_stats import count_flops, count_parameters  # noqa: E402

MODELS = [
    ("YOLOv3 (Darknet)", "yolov3_darknet_coco.yaml"),
    ("YOLOv3 baseline (ASFF pyramid, no fusion)", "yolov3_coco.yaml"),
    ("YOLOv3 + ASFF", "yolov3_asff_coco.yaml"),
    ("YOLOv3 + ASFF* (RFB, DropBlock)", "yolov3_asff_star_coco.yaml"),
    ("YOLOv3-tiny", "yolov3_tiny_coco.yaml"),
    ("official YOLOv3 baseline (guided-anchor head)", "official/yolov3_baseline_coco.yaml"),
    ("official YOLOv3 + ASFF (guided-anchor head)", "official/yolov3_asff_coco.yaml"),
    ("official YOLOv3 + ASFF* (guided-anchor head)", "official/yolov3_asff_star_coco.yaml"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=608)
    args = parser.parse_args()
    print(f"| model | config | parameters | GFLOPs @{args.size} |")
    print("| --- | --- | ---: | ---: |")
    for name, config in MODELS:
        model = build_model(load_config(ROOT / "configs" / config))
        flops = count_flops(model, args.size)
        print(f"| {name} | `configs/{config}` | {count_parameters(model):,} | {flops / 1e9:.1f} |")


if __name__ == "__main__":
    main()
