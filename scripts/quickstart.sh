#!/usr/bin/env bash
# The main job, with nothing downloaded: install, generate the built-in dataset, train ASFF on it,
# evaluate the result with COCO mAP, and run the demo on a built-in photo and the built-in video.
# It takes the GPU config (full width, 608) when PyTorch sees a GPU, else the CPU config.
#
# Environment (all optional): CONFIG (a config file), OUT (run folder, default runs/quickstart),
# DATA (dataset folder, default data/builtin), BUILTIN_ARGS (generator options, e.g. "--train 8 --val 4"),
# OPTS (extra --opts for every tool, e.g. "train.epochs=1"), SKIP_INSTALL=1, VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash scripts/install.sh
fi
export NO_ALBUMENTATIONS_UPDATE=1
PY="${VENV:-.venv}/bin/python"
OUT=${OUT:-runs/quickstart}
DATA=${DATA:-data/builtin}
if [ -z "${CONFIG:-}" ]; then
  if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    CONFIG=configs/builtin_full.yaml
  else
    CONFIG=configs/builtin.yaml
  fi
fi
# shellcheck disable=SC2206
opts=(data.root="$DATA" ${OPTS:-})
echo "[quickstart] config $CONFIG, dataset $DATA, run folder $OUT"

if [ ! -f "$DATA/READY" ]; then
  # shellcheck disable=SC2086
  "$PY" -m yolo_asff.data.builtin --out "$DATA" ${BUILTIN_ARGS:-}
fi
train_start=$(date +%s)
"$PY" tools/train.py --config "$CONFIG" --out "$OUT" --force --opts "${opts[@]}"
train_end=$(date +%s)
"$PY" tools/eval.py --config "$CONFIG" --weights "$OUT/best.pth" --json "$OUT/eval.json" --opts "${opts[@]}"
"$PY" tools/demo.py --weights "$OUT/best.pth" --source yolo_asff/assets/astronaut.jpg --out "$OUT/demo/photo"
"$PY" tools/demo.py --weights "$OUT/best.pth" --source "$DATA/video.mp4" --out "$OUT/demo/video" --fusion-maps
end=$(date +%s)

"$PY" - "$OUT" "$((train_end - train_start))" "$((end - start))" <<'EOF'
import json, sys
out, train_s, total_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(f"{out}/eval.json"))
print(f"[quickstart] validation COCO mAP@[.5:.95] {m['AP']:.3f}, mAP@0.5 {m['AP50']:.3f} "
      f"(training {train_s // 60} min {train_s % 60} s, all {total_s // 60} min {total_s % 60} s)")
print(f"[quickstart] run: {out}/ (metrics.json, eval.json, best.pth, last.pth, train.log, tensorboard/)")
print(f"[quickstart] demo: {out}/demo/photo/astronaut.jpg, {out}/demo/video/ (the annotated video, *_fusion.jpg)")
print(f"[quickstart] curves: tensorboard --logdir {out}/tensorboard")
EOF
