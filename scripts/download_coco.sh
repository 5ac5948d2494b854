#!/usr/bin/env bash
# Download, verify and unpack COCO 2017 detection into the layout configs/_base_/datasets/coco.yaml reads.
# Run with --help for the options. Safe to re-run: finished parts are skipped, partial downloads resume.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/download_coco.sh [DIR] [--test] [--rm-archives] [--no-verify] [--dry-run]

Downloads COCO 2017 from images.cocodataset.org, checks each archive (SHA-1 where known,
otherwise `unzip -t`), and unpacks it into DIR (default: data/coco):

  DIR/train2017/*.jpg                          118,287 images   (train2017.zip, ~18 GB)
  DIR/val2017/*.jpg                              5,000 images   (val2017.zip, ~780 MB)
  DIR/annotations/instances_{train,val}2017.json                (annotations_trainval2017.zip, ~240 MB)
  with --test:
  DIR/test2017/*.jpg                            40,670 images   (test2017.zip, ~6 GB)
  DIR/annotations/image_info_test-dev2017.json                  (image_info_test2017.zip, ~1 MB)

Archives are kept in DIR/archives/ (--rm-archives deletes each one once it is unpacked); the whole
download needs ~20 GB for the archives plus ~20 GB unpacked (~26 + 26 GB with --test).

Re-running skips every part already unpacked and resumes interrupted downloads.

Options:
  DIR             target folder (default data/coco); point data.root at it if you change it
  --test          also fetch test2017 and the test-dev image list (for the COCO evaluation server)
  --rm-archives   delete each archive after it has been unpacked
  --no-verify     skip the checksum / archive test (e.g. for a mirror that repackages the files)
  --dry-run       print what would be run without downloading or unpacking (same as DRY_RUN=1)
  -h, --help      this help

Environment:
  COCO_URL        base URL instead of http://images.cocodataset.org (a mirror with the same paths)
  DRY_RUN=1       same as --dry-run
EOF
}

DIR=data/coco
WITH_TEST=0
RM_ARCHIVES=0
VERIFY=1
DRY_RUN=${DRY_RUN:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --test) WITH_TEST=1 ;;
    --rm-archives) RM_ARCHIVES=1 ;;
    --no-verify) VERIFY=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -*) echo "download_coco.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) DIR=$1 ;;
  esac
  shift
done
BASE=${COCO_URL:-http://images.cocodataset.org}
ARCHIVES="$DIR/archives"

LOG_TAG=coco
source "$(dirname "${BASH_SOURCE[0]}")/lib/download.sh"

need_tools() {
  need_downloader
  command -v unzip >/dev/null || die "needs unzip (e.g. apt-get install unzip)"
}

# verify FILE SHA1: check the known SHA-1 when there is one (SHA1 may be empty), else a full `unzip -t`.
verify() {
  local file=$1 sha1=$2
  if [ -n "$sha1" ]; then verify_sum "$file" sha1 "$sha1"; return; fi
  if [ "$VERIFY" = 0 ]; then say "not verifying $file (--no-verify)"; return; fi
  if [ "$DRY_RUN" = 1 ]; then echo "+ unzip -tq $file"; return; fi
  say "verifying $file"
  unzip -tq "$file" >/dev/null || reject "$file" "$file is not a complete zip archive"
}

count_jpgs() { [ -d "$1" ] && find "$1" -maxdepth 1 -name '*.jpg' | wc -l | tr -d ' ' || echo 0; }

# is_done NAME: the archive NAME was unpacked by an earlier run (marker), or its content is all there.
is_done() {
  local name=$1
  [ -f "$ARCHIVES/$name.unpacked" ] && return 0
  case "$name" in
    train2017.zip) [ "$(count_jpgs "$DIR/train2017")" = 118287 ] ;;
    val2017.zip) [ "$(count_jpgs "$DIR/val2017")" = 5000 ] ;;
    test2017.zip) [ "$(count_jpgs "$DIR/test2017")" = 40670 ] ;;
    annotations_trainval2017.zip)
      [ -s "$DIR/annotations/instances_train2017.json" ] && [ -s "$DIR/annotations/instances_val2017.json" ] ;;
    image_info_test2017.zip) [ -s "$DIR/annotations/image_info_test-dev2017.json" ] ;;
    *) return 1 ;;
  esac
}

# get PATH SHA1: download, verify and unpack one archive (PATH under the base URL) unless already done.
get() {
  local path=$1 sha1=$2 name file
  name=$(basename "$path")
  file="$ARCHIVES/$name"
  if is_done "$name"; then say "$name: already unpacked in $DIR, skipping"; return; fi
  fetch "$BASE/$path" "$file"
  verify "$file" "$sha1"
  say "unpacking $name into $DIR"
  run unzip -q -o "$file" -d "$DIR"
  run touch "$ARCHIVES/$name.unpacked"
  if [ "$RM_ARCHIVES" = 1 ]; then run rm -f "$file"; fi
}

need_tools
if [ "$DRY_RUN" = 1 ]; then say "dry run: printing the commands, downloading nothing"; fi
say "target: $DIR"
run mkdir -p "$ARCHIVES"
# SHA-1s of the official archives (as GluonCV's COCO setup script checks them); none known for the test files.
get annotations/annotations_trainval2017.zip 8551ee4bb5860311e79dace7e79cb91e432e78b3
get zips/val2017.zip 4950dc9d00dbe1c933ee0170f5797584351d2a41
get zips/train2017.zip 10ad623668ab00c62c096f0ed636d6aff41faca5
if [ "$WITH_TEST" = 1 ]; then
  get annotations/image_info_test2017.zip ""
  get zips/test2017.zip ""
fi

if [ "$DRY_RUN" != 1 ]; then
  say "train2017: $(count_jpgs "$DIR/train2017") images, val2017: $(count_jpgs "$DIR/val2017") images"
  if [ "$WITH_TEST" = 1 ]; then say "test2017: $(count_jpgs "$DIR/test2017") images"; fi
fi
say "done. configs/*_coco.yaml read $DIR through data.root (default data/coco)."
