#!/usr/bin/env bash
# Download and verify the Darknet weights yolo-asff starts from or converts.
# Run with --help for the options. Safe to re-run: complete files are skipped, partial downloads resume.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/download_weights.sh [DIR] [--only NAME[,NAME...]] [--no-verify] [--dry-run]

Downloads the Darknet weights from pjreddie.com into DIR (default: data/weights) and checks each
file's exact size (header + every layer of the network, so a truncated file is caught):

  darknet53.conv.74     162,482,580 bytes   the ImageNet Darknet-53 backbone (52 conv layers):
                                            start any Darknet-53 model with --weights DIR/darknet53.conv.74
  yolov3.weights        248,007,048 bytes   Darknet's COCO YOLOv3 (configs/yolov3_darknet_coco.yaml)
  yolov3-tiny.weights    35,434,956 bytes   Darknet's COCO YOLOv3-tiny (configs/yolov3_tiny_coco.yaml)

Options:
  DIR             target folder (default data/weights)
  --only NAMES    comma-separated subset of the files above, e.g. --only darknet53.conv.74
  --no-verify     skip the size check
  --dry-run       print what would be run without downloading (same as DRY_RUN=1)
  -h, --help      this help

Environment:
  WEIGHTS_URL     a folder URL holding the same files, instead of https://pjreddie.com/media/files
  DRY_RUN=1       same as --dry-run
EOF
}

# name:size in bytes. The sizes follow from the networks: a 20-byte header (version 0.2, 64-bit
# images-seen counter) and float32 values for every conv layer (yolo_asff/io/darknet.py).
FILES=(
  darknet53.conv.74:162482580
  yolov3.weights:248007048
  yolov3-tiny.weights:35434956
)

DIR=data/weights
ONLY=""
VERIFY=1
DRY_RUN=${DRY_RUN:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --only) [ $# -ge 2 ] || { echo "download_weights.sh: --only needs a name list (see --help)" >&2; exit 2; }
            ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    --no-verify) VERIFY=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -*) echo "download_weights.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) DIR=$1 ;;
  esac
  shift
done
BASE=${WEIGHTS_URL:-https://pjreddie.com/media/files}

LOG_TAG=weights
source "$(dirname "${BASH_SOURCE[0]}")/lib/download.sh"

size_of() { wc -c <"$1" | tr -d ' '; }

wanted() {  # wanted NAME: no --only, or NAME is in its list
  [ -z "$ONLY" ] && return 0
  case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

if [ -n "$ONLY" ]; then
  IFS=, read -r -a requested <<<"$ONLY"
  for name in "${requested[@]}"; do
    known=0
    for entry in "${FILES[@]}"; do [ "${entry%%:*}" = "$name" ] && known=1; done
    [ "$known" = 1 ] || die "--only: unknown file '$name'; choose from darknet53.conv.74, yolov3.weights, yolov3-tiny.weights"
  done
fi
need_downloader

if [ "$DRY_RUN" = 1 ]; then say "dry run: printing the commands, downloading nothing"; fi
say "target: $DIR"
run mkdir -p "$DIR"
for entry in "${FILES[@]}"; do
  name=${entry%%:*}
  size=${entry##*:}
  file="$DIR/$name"
  wanted "$name" || continue
  if [ -f "$file" ] && { [ "$VERIFY" = 0 ] || [ "$(size_of "$file")" = "$size" ]; }; then
    say "$name: already there, skipping"
    continue
  fi
  if [ -f "$file" ]; then
    # A wrong-sized final file is not a partial download (those are .part): start that one afresh.
    say "$file has $(size_of "$file") bytes, expected $size: moving it to $file.corrupt"
    run mv "$file" "$file.corrupt"
  fi
  download "$BASE/$name" "$file.part"
  if [ "$VERIFY" = 1 ] && [ "$DRY_RUN" != 1 ]; then
    got=$(size_of "$file.part")
    [ "$got" = "$size" ] || reject "$file.part" "$name: $got bytes, expected $size" "$file.corrupt"
  fi
  run mv "$file.part" "$file"
  if [ "$DRY_RUN" != 1 ]; then say "$name: ok"; fi
done
say "done. Start a Darknet-53 model from the backbone with: tools/train.py --config ... --weights $DIR/darknet53.conv.74"
