#!/usr/bin/env bash
# Download, verify and unpack Pascal VOC 2007 + 2012 into the layout configs/_base_/datasets/voc.yaml reads.
# Run with --help for the options. Safe to re-run: finished parts are skipped, partial downloads resume.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/download_voc.sh [DIR] [--rm-archives] [--no-verify] [--dry-run]

Downloads Pascal VOC from host.robots.ox.ac.uk, checks each archive's MD5, and unpacks it into
DIR (default: data/VOCdevkit), the folder data.root names:

  DIR/VOC2007/{Annotations,JPEGImages,ImageSets/Main/trainval.txt}   5,011 images (VOCtrainval_06-Nov-2007.tar, ~440 MB)
  DIR/VOC2007/ImageSets/Main/test.txt (+ its images, annotations)    4,952 images (VOCtest_06-Nov-2007.tar, ~430 MB)
  DIR/VOC2012/{Annotations,JPEGImages,ImageSets/Main/trainval.txt}  11,540 images (VOCtrainval_11-May-2012.tar, ~1.9 GB)

configs/yolov3_asff_voc.yaml trains on 2007 trainval + 2012 trainval and validates on 2007 test.
Archives are kept in DIR/archives/ (--rm-archives deletes each one once it is unpacked); the whole
download needs ~2.8 GB for the archives plus ~3 GB unpacked.

Re-running skips every part already unpacked and resumes interrupted downloads.

Options:
  DIR             target folder (default data/VOCdevkit); point data.root at it if you change it
  --rm-archives   delete each archive after it has been unpacked
  --no-verify     skip the MD5 check (e.g. for a mirror that repackages the files)
  --dry-run       print what would be run without downloading or unpacking (same as DRY_RUN=1)
  -h, --help      this help

Environment:
  VOC_MIRROR      a folder URL holding the three .tar files side by side, used instead of the official
                  site when that is down (e.g. VOC_MIRROR=https://pjreddie.com/media/files)
  DRY_RUN=1       same as --dry-run
EOF
}

DIR=data/VOCdevkit
RM_ARCHIVES=0
VERIFY=1
DRY_RUN=${DRY_RUN:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --rm-archives) RM_ARCHIVES=1 ;;
    --no-verify) VERIFY=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -*) echo "download_voc.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) DIR=$1 ;;
  esac
  shift
done
OFFICIAL=http://host.robots.ox.ac.uk/pascal/VOC
ARCHIVES="$DIR/archives"

LOG_TAG=voc
source "$(dirname "${BASH_SOURCE[0]}")/lib/download.sh"

need_tools() {
  need_downloader
  command -v tar >/dev/null || die "needs tar"
}

# split_complete YEAR SET: the split list exists and every image in it has its JPEG and its XML.
split_complete() {
  local base="$DIR/VOC$1" id _
  local list="$base/ImageSets/Main/$2.txt"
  [ -s "$list" ] || return 1
  while read -r id _; do
    [ -f "$base/JPEGImages/$id.jpg" ] && [ -f "$base/Annotations/$id.xml" ] || return 1
  done <"$list"
}

split_size() {
  local list="$DIR/VOC$1/ImageSets/Main/$2.txt"
  if [ -f "$list" ]; then grep -c . "$list"; else echo "missing"; fi
}

# get URL MD5 YEAR SET: download, verify and unpack one archive unless its split is already in place.
get() {
  local url=$1 md5=$2 year=$3 set=$4 name file
  name=$(basename "$url")
  file="$ARCHIVES/$name"
  if [ -n "${VOC_MIRROR:-}" ]; then url="${VOC_MIRROR%/}/$name"; fi
  if [ -f "$ARCHIVES/$name.unpacked" ] || split_complete "$year" "$set"; then
    say "$name: VOC$year $set already unpacked in $DIR, skipping"
    return
  fi
  fetch "$url" "$file"
  verify_sum "$file" md5 "$md5"
  say "unpacking $name into $DIR"
  # The archives hold VOCdevkit/VOC<year>/...: drop the VOCdevkit level so DIR itself is the devkit.
  run tar -xf "$file" -C "$DIR" --strip-components=1
  run touch "$ARCHIVES/$name.unpacked"
  if [ "$RM_ARCHIVES" = 1 ]; then run rm -f "$file"; fi
}

need_tools
if [ "$DRY_RUN" = 1 ]; then say "dry run: printing the commands, downloading nothing"; fi
say "target: $DIR"
run mkdir -p "$ARCHIVES"
# MD5s of the official archives (the ones torchvision's VOC dataset checks).
get "$OFFICIAL/voc2007/VOCtrainval_06-Nov-2007.tar" c52e279531787c972589f7e41ab4ae64 2007 trainval
get "$OFFICIAL/voc2007/VOCtest_06-Nov-2007.tar" b6e924de25625d8de591ea690078ad9f 2007 test
get "$OFFICIAL/voc2012/VOCtrainval_11-May-2012.tar" 6cd6e144f989b92b3379bac3b3de84fd 2012 trainval

if [ "$DRY_RUN" != 1 ]; then
  say "VOC2007 trainval: $(split_size 2007 trainval) images, test: $(split_size 2007 test);" \
    "VOC2012 trainval: $(split_size 2012 trainval)"
fi
say "done. configs/yolov3_asff_voc.yaml reads $DIR through data.root (default data/VOCdevkit)."
