#!/usr/bin/env bash
# A batch's API calls per job-minute, by API family, at parallel 10, 50 and 100, through the
# fault proxy enforcing AWS's token buckets (tests/world/limits.py); plus, at each size, the
# batch's wall, the client's CPU and peak RSS, and the calls throttled. It runs tests/scale.rs
# once per size (the light image: each job's `matlab` sleeps 8 s and writes one file), for this
# tree's client and, when BEFORE is set, for another build of it (e.g. main's), in the same run.
# See bench/README.md ("Calls at scale").
#
#   bench/calls.sh                                   # this tree, 10 50 100: ~6 minutes on 2 cores
#   BEFORE=/tmp/run-render-main bench/calls.sh        # the same sizes with main's client too
#
# Settings: BENCH_SIZES ("10 50 100"), BEFORE (a run-render binary), OUT (.world/bench-calls).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SIZES="${BENCH_SIZES:-10 50 100}"
OUT="${OUT:-$ROOT/.world/bench-calls}"
say() { echo "calls-bench: $*" >&2; }
[[ -f .wt-env ]] && . ./.wt-env
[[ -f .world/env ]] || { say "the test world is not up: run tests/world/setup.sh first"; exit 1; }
. .world/env
mkdir -p "$OUT"
cargo nextest run --no-run --test scale >/dev/null 2>&1 || { say "the scale test does not build"; exit 1; }

clients=("after:")
[[ -n ${BEFORE:-} ]] && clients=("before:$BEFORE" "${clients[@]}")
for entry in "${clients[@]}"; do
  label=${entry%%:*}
  client=${entry#*:}
  for n in $SIZES; do
    log="$OUT/$label-$n.log"
    say "$label, parallel $n"
    if ! env RTB_SCALE_JOBS="$n" ${client:+RTB_SCALE_CLIENT="$client"} \
        cargo nextest run --test scale --no-capture >"$log" 2>&1; then
      say "$label at parallel $n failed (see $log)"
    fi
    # The test's own table: the batch line, the client line, calls per family...
    # ...and the calls per action (S3's on log chunks apart: "s3:GetObject/log").
    grep -E '^(parallel|client:|family|ec2-[a-z]+|ssm|s3) |^  [a-z0-9]+:' "$log" | sed "s/^/$label $n | /" || true
  done
done
