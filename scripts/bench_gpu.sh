#!/usr/bin/env bash
# GPU speed benchmarks in one command: tools/benchmark.py infer and train for YOLOv3 + ASFF at 608,
# for every precision (fp32, bf16, fp16), with and without channels-last, with and without
# torch.compile. One JSON (and log) per run in the output folder, then summary.md over all of them,
# ending with the figures against the targets of docs/BENCHMARKS.md.
#
#   bash scripts/bench_gpu.sh [OUT_DIR]          # default OUT_DIR: runs/bench
#   SET=targets bash scripts/bench_gpu.sh        # only the 4 runs the targets need
#
# infer measures batch-1 latency and batch-INFER_BATCH throughput in the same run, and its eager runs
# also batch 1 graphed (forward + decode + NMS as one CUDA graph; GRAPHED=0 to skip); train measures
# the trainer's step with the real loss at TRAIN_BATCH. Every run also reports peak memory, compile
# time and host syncs per step. SET=targets runs train fp16 channels-last eager and compiled, and
# infer fp16 channels-last eager with graphed (batch-1 end to end both ways, batch-32 fp16 forward).
# A run that fails (out of memory, say) is logged and the rest go on; the exit status is 1 if any
# failed. It stops at once (status 2, no traceback) when DEVICE is cuda and PyTorch sees no CUDA GPU.
# Everything can be changed through the environment, e.g. a CPU smoke test:
#   DEVICE=cpu SIZE=64 INFER_BATCH=2 TRAIN_BATCH=2 WARMUP=0 ITERS=1 COMPILE=eager \
#     CONFIG=configs/builtin.yaml OPTS="model.width=0.125" bash scripts/bench_gpu.sh /tmp/bench
set -u

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  -h|--help|-help|help) usage; exit 0 ;;
  -*) echo "error: unknown option '$1' (the only argument is an output folder)" >&2; usage >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "error: one output folder expected, got $# arguments" >&2; usage >&2; exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-runs/bench}"
CONFIG="${CONFIG:-configs/yolov3_asff_coco.yaml}"
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-608}"
INFER_BATCH="${INFER_BATCH:-32}"
TRAIN_BATCH="${TRAIN_BATCH:-32}"
SET="${SET:-all}"
if [ "$SET" = targets ]; then
  BENCHES="${BENCHES:-train infer}"
  PRECISIONS="${PRECISIONS:-fp16}"
  LAYOUTS="${LAYOUTS:-channels_last}"
elif [ "$SET" = all ]; then
  BENCHES="${BENCHES:-infer train}"
  if [ "$DEVICE" = cpu ]; then
    PRECISIONS="${PRECISIONS:-fp32 bf16}"  # fp16 autocast is CUDA-only
  else
    PRECISIONS="${PRECISIONS:-fp32 bf16 fp16}"
  fi
  LAYOUTS="${LAYOUTS:-nchw channels_last}"
else
  echo "error: SET must be all or targets, got '$SET'" >&2; exit 2
fi
COMPILE="${COMPILE:-eager compile}"
if [ "$DEVICE" = cpu ]; then GRAPHED="${GRAPHED:-0}"; else GRAPHED="${GRAPHED:-1}"; fi
WARMUP="${WARMUP:-10}"
ITERS="${ITERS:-50}"
TRAIN_WARMUP="${TRAIN_WARMUP:-$WARMUP}"
TRAIN_ITERS="${TRAIN_ITERS:-$ITERS}"
OPTS="${OPTS:-}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export NO_ALBUMENTATIONS_UPDATE=1

cd "$ROOT" || exit 2
case "$DEVICE" in
  cuda*)
    "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null
    case $? in
      0) ;;
      3) echo "error: DEVICE=$DEVICE but PyTorch sees no CUDA GPU here; run this on a GPU machine" \
              "(or DEVICE=cpu for a smoke test)" >&2
         exit 2 ;;
      *) echo "error: $PYTHON cannot import torch; set PYTHON to the project's Python" >&2
         exit 2 ;;
    esac ;;
esac
mkdir -p "$OUT" || exit 2
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; fi

failed=()
total=0
for bench in $BENCHES; do
  for precision in $PRECISIONS; do
    for layout in $LAYOUTS; do
      for mode in $COMPILE; do
        name="${bench}_${precision}_${layout}_${mode}"
        if [ "$bench" = infer ]; then
          args=(--batch "$INFER_BATCH" --warmup "$WARMUP" --iters "$ITERS")
          # Graphed batch 1 once per precision and layout: beside the eager model, not the compiled one.
          [ "$mode" = eager ] && [ "$GRAPHED" = 1 ] && args+=(--graphed)
        else
          args=(--batch "$TRAIN_BATCH" --warmup "$TRAIN_WARMUP" --iters "$TRAIN_ITERS")
        fi
        [ "$layout" = channels_last ] && args+=(--channels-last)
        [ "$mode" = compile ] && args+=(--compile)
        # shellcheck disable=SC2206  # OPTS is a space-separated list of key=value overrides
        [ -n "$OPTS" ] && args+=(--opts $OPTS)
        total=$((total + 1))
        echo "== $name"
        if "$PYTHON" tools/benchmark.py "$bench" --config "$CONFIG" --device "$DEVICE" --size "$SIZE" \
            --precision "$precision" --json "$OUT/$name.json" "${args[@]}" > "$OUT/$name.log" 2>&1; then
          grep -E "^(forward @1|end to end @1|graphed|throughput|train step|host syncs|peak memory)" "$OUT/$name.log" \
            | sed 's/^/   /'
        else
          failed+=("$name")
          echo "   FAILED (see $OUT/$name.log):"
          tail -n 3 "$OUT/$name.log" | sed 's/^/   /'
        fi
      done
    done
  done
done

"$PYTHON" -c "import sys; from yolo_asff.engine.benchmark import summarize_results; \
sys.stdout.write(summarize_results(sys.argv[1]))" "$OUT" > "$OUT/summary.md"
echo
cat "$OUT/summary.md"
echo "$((total - ${#failed[@]})) of $total runs succeeded; results in $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
