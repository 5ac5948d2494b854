#!/usr/bin/env bash
# The main job. Until the trainer lands this is the model smoke check: install, build the
# default ASFF config, run one forward pass on the built-in image, print size and speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export NO_ALBUMENTATIONS_UPDATE=1
exec "${VENV:-.venv}/bin/python" tools/model_info.py --config configs/yolov3_asff_coco.yaml "$@"
