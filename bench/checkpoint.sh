#!/usr/bin/env bash
# Checkpoints (RTB_CHECKPOINT_EVERY): what they cost a job, and what they save on a reclaim.
# The real runner with GNU Octave, against the local S3 (MiniStack), in the same run:
#
#  cost   a job making BENCH_FILES files of BENCH_FILE_MIB MiB, each after BENCH_WORK_S s of
#         CPU work (a render's shape), with checkpoints every BENCH_EVERY against none,
#         alternated, BENCH_RUNS times each: the command's wall time (result.json command_s),
#         median of each, and the overhead as a ratio; plus what the checkpoints sent.
#  saved  a job of BENCH_FRAMES frames of BENCH_FRAME_S s of CPU each, "reclaimed" (the runner
#         and Octave killed with SIGKILL, as a terminated instance) once frame BENCH_KILL_AT
#         is written; then a retry. Once with checkpoints every BENCH_FRAME_EVERY and a retry
#         that resumes from them, once without checkpoints and a retry from scratch: frames
#         rendered twice, and the wall time of both attempts together.
#
#   source .world/env                 # AWS_ENDPOINT_URL and dummy credentials
#   bench/checkpoint.sh               # RTB_JOB=target/release/rtb-job for the real numbers
#   BENCH_FILES=20 BENCH_EVERY=5s BENCH_RUNS=1 BENCH_FRAMES=8 BENCH_KILL_AT=5 bench/checkpoint.sh
#   # settings: BENCH_STEPS ("cost saved"), KEEP=1 (keep the bucket and folders)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_FILES="${BENCH_FILES:-200}"
BENCH_FILE_MIB="${BENCH_FILE_MIB:-1}"
BENCH_WORK_S="${BENCH_WORK_S:-0.5}"
BENCH_EVERY="${BENCH_EVERY:-1m}"
BENCH_RUNS="${BENCH_RUNS:-3}"
BENCH_FRAMES="${BENCH_FRAMES:-20}"
BENCH_FRAME_S="${BENCH_FRAME_S:-3}"
BENCH_KILL_AT="${BENCH_KILL_AT:-12}"
BENCH_FRAME_EVERY="${BENCH_FRAME_EVERY:-15s}"
BENCH_STEPS="${BENCH_STEPS:-cost saved}"
KEEP="${KEEP:-0}"

: "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL to the local S3 (tests/world/setup.sh && source .world/env)}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# No instance here: the notice watcher is not what is measured.
export AWS_EC2_METADATA_DISABLED=true

if [[ -z "${RTB_JOB:-}" ]]; then
  if [[ -x "$ROOT/target/release/rtb-job" ]]; then RTB_JOB="$ROOT/target/release/rtb-job"
  else RTB_JOB="$ROOT/target/debug/rtb-job"; fi
fi
[[ -x "$RTB_JOB" ]] || { echo "no runner at $RTB_JOB: cargo build -p rtb-job (--release)" >&2; exit 2; }
command -v octave-cli >/dev/null || { echo "octave-cli is needed (apt-get install octave)" >&2; exit 2; }
PY="$(command -v python3)"
command -v aws >/dev/null || { echo "the aws cli is needed (source .world/env puts the world's on PATH)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/checkpoint-bench.XXXXXX")"
BUCKET="cp-bench-$$-$(date +%s)"
RUNNER_PID=""

# Kill the runner and its interpreter (its own process group), as a lost instance would.
kill_hard() {
  local pid="$1" child
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    kill -9 -- "-$child" 2>/dev/null || true
    kill -9 "$child" 2>/dev/null || true
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  [[ -n "$RUNNER_PID" ]] && kill_hard "$RUNNER_PID"
  if [[ "$KEEP" != 1 ]]; then
    rm -rf "$WORK"
    aws s3 rb --force "s3://$BUCKET" >/dev/null 2>&1 || true
  else
    echo "kept: $WORK and s3://$BUCKET" >&2
  fi
}
trap cleanup EXIT
aws s3 mb "s3://$BUCKET" >/dev/null

# The runner, in the background; its stdout in $1.log. Extra NAME=VALUE settings follow.
start_runner() {
  local name="$1" code="$2"; shift 2
  mkdir -p "$WORK/$name/out" "$WORK/$name/in"
  env -u RTB_CHECKPOINT_EVERY -u RTB_RESUME_FROM -u RTB_ATTEMPT \
    MATLAB_EXECUTABLE=octave-cli COMMAND="$code" \
    INPUT_SCRATCH="$WORK/$name/in" OUTPUT_SCRATCH="$WORK/$name/out" \
    OUTPUT_BUCKET="s3://$BUCKET/$name" RTB_JOB_ID="$name" "$@" \
    "$RTB_JOB" >"$WORK/$name.log" 2>&1 &
  RUNNER_PID=$!
}

field() { # field JSON_FILE PYTHON_EXPR (on r = the parsed record)
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# CPU work of about $1 seconds in Octave (calibrated once: iterations per second).
calibrate() {
  octave-cli --quiet --eval "t=tic; n=0; A=rand(200); while toc(t) < 2, A=A*A'; A=A/norm(A); n=n+1; end; printf('%d\n', round(n/2));" 2>/dev/null
}

echo "runner: $RTB_JOB" >&2
PER_S=$(calibrate)
echo "calibrated: $PER_S matrix steps per second of CPU" >&2
work_code() { # work for $1 seconds
  echo "A=rand(200); for i=1:round($1*$PER_S), A=A*A'; A=A/norm(A); end;"
}

if [[ " $BENCH_STEPS " == *" cost "* ]]; then
  echo "== cost: $BENCH_FILES files of $BENCH_FILE_MIB MiB, ${BENCH_WORK_S}s of CPU each; checkpoints every $BENCH_EVERY vs none; $BENCH_RUNS runs each" >&2
  code="o=getenv('OUTPUT_SCRATCH'); data=uint8(floor(rand(1, $BENCH_FILE_MIB*1048576)*256)); \
for k=1:$BENCH_FILES, $(work_code "$BENCH_WORK_S") data(1:8)=uint8(k); \
fid=fopen(fullfile(o, sprintf('file%04d.bin', k)), 'w'); fwrite(fid, data); fclose(fid); end"
  : >"$WORK/cost-with" ; : >"$WORK/cost-without"
  for run in $(seq "$BENCH_RUNS"); do
    for mode in without with; do
      name="cost-$mode-$run"
      if [[ $mode == with ]]; then start_runner "$name" "$code" RTB_CHECKPOINT_EVERY="$BENCH_EVERY"
      else start_runner "$name" "$code"; fi
      wait "$RUNNER_PID" || { echo "runner failed, see $WORK/$name.log" >&2; KEEP=1; exit 1; }
      RUNNER_PID=""
      aws s3 cp --quiet "s3://$BUCKET/$name/_rtb-job/$name/result.json" "$WORK/$name.json"
      secs=$(field "$WORK/$name.json" 'r["timings"]["command_s"]')
      echo "$secs" >>"$WORK/cost-$mode"
      if [[ $mode == with ]]; then
        echo "  run $run with:    command ${secs}s; $(field "$WORK/$name.json" '"%d checkpoints, %d files (%.0f MiB) sent, %.1fs syncing beside the command" % (r["checkpoints"]["count"], r["checkpoints"]["files"], r["checkpoints"]["bytes"]/1048576, r["checkpoints"]["seconds"])')" >&2
      else
        echo "  run $run without: command ${secs}s" >&2
      fi
      rm -rf "$WORK/$name"
    done
  done
  with=$(median <"$WORK/cost-with"); without=$(median <"$WORK/cost-without")
  "$PY" -c "
w, wo = $with, $without
print(f'cost: median command time {wo:.1f}s without checkpoints, {w:.1f}s with checkpoints every $BENCH_EVERY: ratio {w/wo:.3f} ({(w/wo-1)*100:+.1f} %)')"
fi

if [[ " $BENCH_STEPS " == *" saved "* ]]; then
  echo "== saved: $BENCH_FRAMES frames of ${BENCH_FRAME_S}s, reclaimed after frame $BENCH_KILL_AT; checkpoints every $BENCH_FRAME_EVERY vs a restart from scratch" >&2
  frames="d=fullfile(getenv('OUTPUT_SCRATCH'), 'frames'); if ~exist(d, 'dir'), mkdir(d); end; \
for k=1:$BENCH_FRAMES, f=fullfile(d, sprintf('f%03d.txt', k)); if exist(f, 'file'), continue; end; \
$(work_code "$BENCH_FRAME_S") fid=fopen(f, 'w'); fprintf(fid, 'frame %d\n', k); fclose(fid); \
printf('frame %d rendered\n', k); fflush(stdout); end"
  for mode in checkpoints scratch; do
    name="saved-$mode-a1"
    t0=$(date +%s.%N)
    if [[ $mode == checkpoints ]]; then start_runner "$name" "$frames" RTB_CHECKPOINT_EVERY="$BENCH_FRAME_EVERY"
    else start_runner "$name" "$frames"; fi
    until grep -q "^frame $BENCH_KILL_AT rendered" "$WORK/$name.log"; do
      kill -0 "$RUNNER_PID" 2>/dev/null || { echo "attempt 1 ended early, see $WORK/$name.log" >&2; KEEP=1; exit 1; }
      sleep 0.2
    done
    kill_hard "$RUNNER_PID"; RUNNER_PID=""
    t1=$(date +%s.%N)
    name2="saved-$mode-a2"
    if [[ $mode == checkpoints ]]; then
      start_runner "$name2" "$frames" RTB_CHECKPOINT_EVERY="$BENCH_FRAME_EVERY" RTB_ATTEMPT=2 \
        RTB_RESUME_FROM="s3://$BUCKET/$name/_rtb-job/$name/"
    else
      start_runner "$name2" "$frames" RTB_ATTEMPT=2
    fi
    wait "$RUNNER_PID" || { echo "attempt 2 failed, see $WORK/$name2.log" >&2; KEEP=1; exit 1; }
    RUNNER_PID=""
    t2=$(date +%s.%N)
    first=$(grep -c "^frame [0-9]* rendered" "$WORK/$name.log")
    second=$(grep -c "^frame [0-9]* rendered" "$WORK/$name2.log")
    twice=$(comm -12 <(grep -o "^frame [0-9]* rendered" "$WORK/$name.log" | sort) \
                     <(grep -o "^frame [0-9]* rendered" "$WORK/$name2.log" | sort) | wc -l)
    "$PY" -c "
print(f'saved ($mode): attempt 1 rendered $first frames before the reclaim, attempt 2 rendered $second; '
      f'$twice rendered twice; wall {$t1-$t0:.1f}s + {$t2-$t1:.1f}s = {$t2-$t0:.1f}s')" | tee -a "$WORK/saved"
    echo "$mode $twice $t0 $t2" >>"$WORK/saved-raw"
  done
  "$PY" - "$WORK/saved-raw" <<'PY'
import sys
rows = {m: (int(t), float(b), float(e)) for m, t, b, e in (l.split() for l in open(sys.argv[1]))}
(ct, cb, ce), (st, sb, se) = rows["checkpoints"], rows["scratch"]
print(f"saved: frames rendered twice {ct} with checkpoints vs {st} from scratch; "
      f"both attempts' wall {ce-cb:.1f}s vs {se-sb:.1f}s: ratio {(ce-cb)/(se-sb):.3f}")
PY
fi
