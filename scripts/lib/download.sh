# Shared helpers of the download scripts (scripts/download_*.sh), sourced after their option parsing:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/download.sh"
# The caller sets LOG_TAG (the message prefix, e.g. coco), DRY_RUN (1: only print the commands) and
# VERIFY (0: skip the checks, --no-verify).

say() { echo "[$LOG_TAG] $*"; }
die() { echo "[$LOG_TAG] error: $*" >&2; exit 1; }
run() {  # run a command, or only print it under --dry-run
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

need_downloader() {
  command -v curl >/dev/null || command -v wget >/dev/null || die "needs curl or wget"
}

# download URL PART: download URL to PART with retries, resuming a partial PART; die if it fails.
download() {
  local url=$1 part=$2
  say "downloading $url"
  local ok=1
  if command -v curl >/dev/null; then
    run curl -fL --progress-bar --retry 5 --retry-delay 10 -C - -o "$part" "$url" || ok=0
  else
    run wget -c --tries=5 -O "$part" "$url" || ok=0
  fi
  [ "$ok" = 1 ] || die "download of $url failed; re-run to resume it (if it keeps failing, delete $part)"
}

# fetch URL FILE: download to FILE.part, resuming a partial one, and rename it when complete.
fetch() {
  local url=$1 file=$2
  if [ -f "$file" ]; then say "have $file"; return; fi
  download "$url" "$file.part"
  run mv "$file.part" "$file"
}

# checksum sha1|md5 FILE: the hex digest of FILE.
checksum() {
  case "$1" in
    sha1) if command -v sha1sum >/dev/null; then sha1sum "$2" | cut -d' ' -f1; else shasum -a 1 "$2" | cut -d' ' -f1; fi ;;
    md5) if command -v md5sum >/dev/null; then md5sum "$2" | cut -d' ' -f1; else md5 -q "$2"; fi ;;
    *) die "checksum: unknown algorithm $1" ;;
  esac
}

# reject FILE REASON [CORRUPT]: move FILE aside to CORRUPT (default FILE.corrupt) and die with REASON.
reject() {
  local file=$1 reason=$2 corrupt=${3:-$1.corrupt}
  mv "$file" "$corrupt"
  die "$reason; moved it to $corrupt. Re-run to download it again."
}

# verify_sum FILE sha1|md5 EXPECTED: check FILE's digest (not under --no-verify; only printed under --dry-run).
verify_sum() {
  local file=$1 algo=$2 expected=$3 label got
  case "$algo" in
    sha1) label=SHA-1 ;;
    md5) label=MD5 ;;
    *) die "verify_sum: unknown algorithm $algo" ;;
  esac
  if [ "$VERIFY" = 0 ]; then say "not verifying $file (--no-verify)"; return; fi
  if [ "$DRY_RUN" = 1 ]; then echo "+ verify $file ($label $expected)"; return; fi
  say "verifying $file"
  got=$(checksum "$algo" "$file")
  [ "$got" = "$expected" ] && return
  reject "$file" "$file: $label $got, expected $expected"
}
