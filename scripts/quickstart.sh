#!/usr/bin/env bash
# The main job. Until the trainer lands: install, build the default ASFF model and run it on the
# built-in picture (size, cost, one forward pass), generate the built-in dataset (no download) and
# write a grid of augmented training samples from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export NO_ALBUMENTATIONS_UPDATE=1
PY="${VENV:-.venv}/bin/python"
"$PY" tools/model_info.py --config configs/yolov3_asff_coco.yaml "$@"
if [ ! -f data/builtin/READY ]; then
  "$PY" -m yolo_asff.data.builtin --out data/builtin
fi
"$PY" tools/browse_dataset.py --config configs/builtin.yaml --out runs/quickstart
