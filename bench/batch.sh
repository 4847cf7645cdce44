#!/usr/bin/env bash
# `run-render batch` on the local emulator against its ideal, against the documented bash loop
# of `run-render run` processes and against one instance per job, plus the batch client's
# memory and CPU, all in one run. See bench/README.md ("Batches").
#
#   bench/batch.sh                                   # the full run: ~12-15 minutes on 2 cores
#   BENCH_JOBS=12 BENCH_RSS_JOBS=8 BENCH_RSS_PARALLEL=4 BENCH_RSS_JOB_S=5 bench/batch.sh  # smoke
#
# Settings (environment):
#   BENCH_JOBS (60), BENCH_PARALLEL (6), BENCH_JOB_S (3): the jobs of steps 1-3 (`pause(S)`,
#     then one small output file each);
#   BENCH_WIDE_JOBS (BENCH_JOBS): how many jobs step 3 starts at once;
#   BENCH_RSS_JOBS (40), BENCH_RSS_PARALLEL (20), BENCH_RSS_JOB_S (10): step 4's batch;
#   BENCH_REF_RUNS (3): single `run-render run`s of the step-1 job, for job and boot time;
#   BENCH_STEPS ("batch loop wide rss calls"): which steps run (the reference runs always do);
#   BENCH_SIZES ("10 50 100"), BEFORE (another run-render binary): step 5 (bench/calls.sh);
#   BENCH_MODEL_BOOT_S (60): the boot used in the printed model of AWS (not measured);
#   RUN_RENDER (target/debug/run-render), SKIP_BUILD=1 (use the binary as it is), KEEP=1.
#
# What it measures:
#   0. BENCH_REF_RUNS x `run-render run --json` of the job, one after the other: from `phases`,
#      job = run_s (SendCommand until the end is seen) and boot = total_s - run_s - terminate_s
#      (preflight + launch + boot + agent); medians.
#   1. `run-render batch FILE --json`, BENCH_JOBS jobs at parallel = BENCH_PARALLEL; wall time
#      around the process; ideal = ceil(jobs / parallel) x job + boot.
#   2. the same jobs as `run-render run` processes, BENCH_PARALLEL at a time (a bash semaphore:
#      `wait -n`), each on its own instance; wall time of the whole loop.
#   3. BENCH_WIDE_JOBS `run-render run` processes all at once (the original: one instance per
#      job, every row in parallel); wall time.
#   4. a batch of BENCH_RSS_JOBS jobs of BENCH_RSS_JOB_S at parallel = BENCH_RSS_PARALLEL, the
#      client sampled every 0.2 s: VmRSS/VmHWM from /proc/PID/status, utime + stime from
#      /proc/PID/stat. CPU "while waiting" counts only the sample intervals when at least one
#      job container runs and no job container was created or died within 1 s (from
#      `docker events`, the containers' rtb-job label): the client is only watching.
#   5. the calls a batch makes per job-minute, by API family, at parallel 10, 50 and 100 through
#      AWS's rate limits, with the client's CPU and RSS (bench/calls.sh: tests/scale.rs, its
#      light image; BEFORE=<binary> measures another client too, in the same run).
# Every batch sample also gets the client's peak RSS and CPU. Every instance it starts must end:
# at the end, describe-instances on this run's AMI and tag rtb:tool=run-render; anything not
# terminated is terminated and the script exits 1. It deletes nothing (one AMI, one bucket).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${BENCH_JOBS:-60}"
PARALLEL="${BENCH_PARALLEL:-6}"
JOB_S="${BENCH_JOB_S:-3}"
WIDE_JOBS="${BENCH_WIDE_JOBS:-$JOBS}"
RSS_JOBS="${BENCH_RSS_JOBS:-40}"
RSS_PARALLEL="${BENCH_RSS_PARALLEL:-20}"
RSS_JOB_S="${BENCH_RSS_JOB_S:-10}"
REF_RUNS="${BENCH_REF_RUNS:-3}"
STEPS=" ${BENCH_STEPS:-batch loop wide rss calls} "
MODEL_BOOT_S="${BENCH_MODEL_BOOT_S:-60}"
RR="${RUN_RENDER:-$ROOT/target/debug/run-render}"

say() { echo "batch-bench: $*" >&2; }
world_up() {
  [[ -f .world/env ]] &&
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${RTB_WORLD_PORT:-45660}/_ministack/health" 2>/dev/null
}
if ! world_up; then
  say "the test world is not up; running tests/world/setup.sh"
  tests/world/setup.sh >&2
fi
# shellcheck source=/dev/null
. .world/env
AWS="$RTB_WORLD_VENV/bin/aws"
PY="${PYTHON:-$RTB_WORLD_VENV/bin/python}"
SUPPORT_IMAGE="${RTB_WORLD_SUPPORT_IMAGE:-rtb-world/support:test}"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  say "cargo build --workspace --bins (dev profile)"
  if ! cargo build --quiet --workspace --bins; then
    [[ -x $RR ]] || { say "build failed and there is no $RR"; exit 2; }
    say "BUILD FAILED: measuring the binary already there ($(date -r "$RR" '+%F %T'))"
  fi
fi
for tool in "$RR" "$AWS" "$PY" jq docker curl; do
  command -v "$tool" >/dev/null || { say "missing $tool"; exit 2; }
done
for n in "$JOBS" "$PARALLEL" "$WIDE_JOBS" "$RSS_JOBS" "$RSS_PARALLEL" "$REF_RUNS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { say "job counts must be positive integers, not '$n'"; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/batch-bench.XXXXXX")"
TAG="bb$$-$(date +%s)"
AMI=
EVENTS_PID=
CHECKED=0
# The clients' registry (and batch logs) stay in the work folder.
export XDG_STATE_HOME="$WORK/state"
mkdir -p "$XDG_STATE_HOME"

# Every instance of this run comes from its own AMI: terminate any not yet terminated.
live_instances() {
  "$AWS" ec2 describe-instances --filters "Name=image-id,Values=$AMI" "Name=tag:rtb:tool,Values=run-render" \
    "Name=instance-state-name,Values=pending,running,shutting-down,stopping,stopped" \
    --query 'Reservations[].Instances[].InstanceId' --output text | tr '\t' '\n' | grep . || true
}
ensure_terminated() {
  local ids=()
  [[ -n $AMI ]] || return 0
  mapfile -t ids < <(live_instances)
  ((${#ids[@]})) || return 0
  say "LEFT RUNNING (${#ids[@]}), terminating: ${ids[*]}"
  "$AWS" ec2 terminate-instances --instance-ids "${ids[@]}" >/dev/null || true
  "$AWS" ec2 wait instance-terminated --instance-ids "${ids[@]}" || true
  return 1
}
cleanup() {
  set +e
  local pids=()
  mapfile -t pids < <(jobs -p)
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
  [[ $CHECKED == 1 ]] || ensure_terminated
  if [[ ${KEEP:-0} == 1 ]]; then say "raw data kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.${2:-3}f\", $1}"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
median() { sort -g | awk '{v[NR] = $1} END {if (!NR) {print "nan"; exit} m = int((NR + 1) / 2); printf "%.3f\n", v[m]}'; }

# The world: a fresh AMI from the test image, the profile, one bucket.
AMI=$("$AWS" ec2 register-image --name "batch-bench-$TAG" --image-location "${RTB_WORLD_AMI_IMAGE:-rtb-world/ami:test}" \
  --query ImageId --output text)
"$AWS" iam create-instance-profile --instance-profile-name run-render-instance >/dev/null 2>&1 || true
BUCKET="batch-bench-$$-$(date +%s)"
"$AWS" s3 mb "s3://$BUCKET" >/dev/null
say "AMI $AMI, bucket $BUCKET; load $(load)"

# Job containers' create/die times (the job script labels its container rtb-job=<job id>).
docker events --filter type=container --filter label=rtb-job --filter event=create --filter event=die \
  --format '{{.TimeNano}} {{.Action}} {{index .Actor.Attributes "rtb-job"}}' >"$WORK/events" 2>/dev/null &
EVENTS_PID=$!

# The job: pause, then one small output file (the runner uploads OUTPUT_SCRATCH).
job_cmd() { # SECONDS LABEL
  echo "pause($1); fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'out.txt'), 'w'); fprintf(fid, 'job $2'); fclose(fid);"
}
RUN_ARGS=(--ami "$AMI" --instance-type t3.micro --image "$SUPPORT_IMAGE" --interpreter octave-cli --timeout 10m)

# One `run-render run` job: PREFIX N SECONDS; its JSON report in $WORK/PREFIX/N.json.
run_one() {
  local prefix=$1 n=$2 secs=$3 rc=0
  "$RR" run "${RUN_ARGS[@]}" --job-id "$TAG-$prefix-$n" --output "s3://$BUCKET/$prefix/$n" \
    --command "$(job_cmd "$secs" "$prefix $n")" --json \
    >"$WORK/$prefix/$n.json" 2>"$WORK/$prefix/$n.err" </dev/null || rc=$?
  ((rc == 0)) || say "$prefix job $n: exit $rc (log $WORK/$prefix/$n.err)"
  return "$rc"
}

# Outcome counts of run reports in a folder: "succeeded total".
run_outcomes() {
  jq -rs '[length, (map(select(.outcome == "succeeded" and .instance == "terminated")) | length)] | "\(.[1]) \(.[0])"' "$1"/*.json
}
phase_median() { # FOLDER JQ-EXPR
  jq -r ".phases | $2" "$1"/*.json | median
}
outputs_in() { # PREFIX -> how many out.txt are in S3 under it
  "$AWS" s3 ls --recursive "s3://$BUCKET/$1/" | grep -c '/out\.txt$' || true
}

# Sample PID's RSS and CPU every 0.2 s until it exits: t ticks rss_kb hwm_kb.
sample() { # PID FILE
  "$PY" - "$1" "$2" <<'PY'
import os, sys, time
pid, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    while True:
        t = time.time()
        try:
            with open(f"/proc/{pid}/stat") as s:
                fields = s.read().rsplit(")", 1)[1].split()
            status = open(f"/proc/{pid}/status").read()
        except (FileNotFoundError, ProcessLookupError):
            break
        if fields[0] == "Z":
            break
        ticks = int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
        kb = {l.split(":")[0]: l.split()[1] for l in status.splitlines() if l.startswith(("VmRSS", "VmHWM"))}
        f.write(f"{t:.3f} {ticks} {kb.get('VmRSS', 0)} {kb.get('VmHWM', 0)}\n")
        f.flush()
        time.sleep(0.2)
PY
}

# CPU of a sampled client: "peak_rss_mb avg_cpu_pct wait_cpu_pct wait_s jobs_running_while_waiting
# most_at_once".
client_use() { # SAMPLES EVENTS JOB-ID-PREFIX
  "$PY" - "$@" <<'PY'
import os, sys
samples, events, prefix = sys.argv[1:4]
hz = os.sysconf("SC_CLK_TCK")
rows = [tuple(float(x) for x in l.split()) for l in open(samples) if l.strip()]
ev = []
for l in open(events):
    p = l.split()
    if len(p) == 3 and p[2].startswith(prefix):
        ev.append((int(p[0]) / 1e9, p[1], p[2]))
if len(rows) < 2:
    print("nan nan nan 0"); sys.exit()
peak = max(max(r[2], r[3]) for r in rows) / 1024
avg = (rows[-1][1] - rows[0][1]) / hz / (rows[-1][0] - rows[0][0]) * 100
# Job containers running at time t, and whether one started or ended near [a, b].
def running(t):
    up = set()
    for when, what, job in ev:
        if when > t: break
        (up.add if what == "create" else up.discard)(job)
    return len(up)
ev.sort()
wait_ticks = wait_s = job_s = 0.0
most = 0
for (a, ta, *_), (b, tb, *_) in zip(rows, rows[1:]):
    n = running(a)
    most = max(most, n)
    quiet = not any(a - 1 <= when <= b + 1 for when, _, _ in ev)
    if quiet and n > 0 and running(b) == n:
        wait_ticks += tb - ta
        wait_s += b - a
        job_s += n * (b - a)
wait = wait_ticks / hz / wait_s * 100 if wait_s else float("nan")
jobs = job_s / wait_s if wait_s else float("nan")
print(f"{peak:.1f} {avg:.2f} {wait:.2f} {wait_s:.1f} {jobs:.1f} {most}")
PY
}

# Between two jobs on one instance of a batch, from the job container's death to the next one's
# creation (the client noticing the end, handing the instance on, SendCommand, the job script's
# docker calls): "median max count" in seconds.
switch_gaps() { # BATCH-JSON EVENTS
  "$PY" - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
ev = {}
for l in open(sys.argv[2]):
    p = l.split()
    if len(p) == 3:
        ev.setdefault(p[2], {})[p[1]] = int(p[0]) / 1e9
per = {}
for j in doc["jobs"]:
    a = (j.get("attempts") or [None])[-1]
    e = ev.get(j["job_id"], {})
    if a and a.get("instance_id") and "create" in e and "die" in e:
        per.setdefault(a["instance_id"], []).append((e["create"], e["die"]))
gaps = sorted(b[0] - a[1] for runs in per.values() for a, b in zip(sorted(runs), sorted(runs)[1:]))
if not gaps:
    print("nan nan 0"); sys.exit()
print(f"{gaps[(len(gaps) - 1) // 2]:.3f} {gaps[-1]:.3f} {len(gaps)}")
PY
}

# A step's job containers (docker create -> die): "median-life max-at-once", seconds.
containers() { # STEP
  "$PY" - "$WORK/events" "$TAG-$1-" <<'PY'
import sys
ev, prefix = sys.argv[1], sys.argv[2]
rows = sorted((int(p[0]) / 1e9, p[1], p[2]) for p in (l.split() for l in open(ev))
              if len(p) == 3 and p[2].startswith(prefix))
made, lives, up, most = {}, [], 0, 0
for t, what, job in rows:
    if what == "create":
        made[job] = t; up += 1; most = max(most, up)
    elif job in made:
        lives.append(t - made.pop(job)); up -= 1
lives.sort()
print(f"{lives[(len(lives) - 1) // 2]:.3f} {most}" if lives else "nan 0")
PY
}

# A batch: NAME JOBS PARALLEL SECONDS; report in $WORK/NAME.json, samples in $WORK/NAME.samples;
# prints the wall time.
run_batch() {
  local name=$1 jobs=$2 parallel=$3 secs=$4 dir="$WORK/$1" n start end rc=0 pid sampler
  mkdir -p "$dir"
  { echo n; seq 1 "$jobs"; } >"$dir/jobs.csv"
  cat >"$dir/batch.toml" <<EOF
[batch]
csv = "jobs.csv"
parallel = $parallel

[job]
ami = "$AMI"
instance-type = "t3.micro"
image = "$SUPPORT_IMAGE"
interpreter = "octave-cli"
command = "$(job_cmd "$secs" "$name \${n}")"
output = "s3://$BUCKET/$name/\${n}"
job-id = "$TAG-$name-\${n}"
timeout = "10m"
EOF
  start=$(now)
  "$RR" batch "$dir/batch.toml" --json --log-dir "$dir/logs" >"$WORK/$name.json" 2>"$WORK/$name.err" </dev/null &
  pid=$!
  sample "$pid" "$WORK/$name.samples" &
  sampler=$!
  wait "$pid" || rc=$?
  end=$(now)
  wait "$sampler" || true
  if ((rc != 0)); then
    say "batch $name: exit $rc"
    tail -20 "$WORK/$name.err" >&2
  fi
  n=$(jq -r '.jobs_succeeded' "$WORK/$name.json" 2>/dev/null || echo 0)
  say "batch $name: $n/$jobs succeeded, wall $(calc "$end - $start") s, $(jq -r '.pool.instances_launched' "$WORK/$name.json") instances; load $(load)"
  calc "$end - $start"
}

# Many `run-render run`s: NAME JOBS AT-ONCE; prints the wall time.
run_loop() {
  local name=$1 jobs=$2 width=$3 i running=0 start end
  mkdir -p "$WORK/$name"
  start=$(now)
  for ((i = 1; i <= jobs; i++)); do
    # (This runs in a command substitution: its only children are these jobs.)
    if ((running >= width)); then
      wait -n || true
      running=$((running - 1))
    fi
    run_one "$name" "$i" "$JOB_S" &
    running=$((running + 1))
  done
  wait || true
  end=$(now)
  say "$name: $(run_outcomes "$WORK/$name") succeeded, wall $(calc "$end - $start") s; load $(load)"
  calc "$end - $start"
}

FAILED=()
check_outputs() { # PREFIX EXPECTED
  local got
  got=$(outputs_in "$1")
  [[ $got == "$2" ]] || { say "$1: $got of $2 outputs in S3"; FAILED+=("$1 outputs $got/$2"); }
}

# 0. Reference: the job on its own instance, one at a time.
say "0. reference: $REF_RUNS x run-render run, pause($JOB_S)"
mkdir -p "$WORK/ref"
for ((i = 1; i <= REF_RUNS; i++)); do
  run_one ref "$i" "$JOB_S" || FAILED+=("ref $i")
done
JOB_T=$(phase_median "$WORK/ref" '.run_s')
BOOT_T=$(phase_median "$WORK/ref" '.total_s - .run_s - .terminate_s')
REF_TOTAL=$(phase_median "$WORK/ref" '.total_s')
TERM_T=$(phase_median "$WORK/ref" '.terminate_s')
WAVES=$(((JOBS + PARALLEL - 1) / PARALLEL))
IDEAL=$(calc "$WAVES * $JOB_T + $BOOT_T")
say "job $JOB_T s, boot $BOOT_T s, total $REF_TOTAL s: ideal $WAVES x $JOB_T + $BOOT_T = $IDEAL s"
LOAD_REF=$(load)
sleep 0.5 # the last container's die event
read -r REF_LIFE _ < <(containers ref)

has() { [[ $STEPS == *" $1 "* ]]; }
BATCH_T='' LOOP_T='' WIDE_T='' LOAD_BATCH='' LOAD_LOOP='' LOAD_WIDE='' LOAD_RSS=''
if has batch; then
  say "1. batch: $JOBS jobs, parallel $PARALLEL"
  BATCH_T=$(run_batch batch "$JOBS" "$PARALLEL" "$JOB_S")
  LOAD_BATCH=$(load)
  [[ $(jq -r .jobs_succeeded "$WORK/batch.json") == "$JOBS" ]] || FAILED+=("batch")
  check_outputs batch "$JOBS"
  read -r B_RSS B_CPU B_WAIT B_WAIT_S _ _ < <(client_use "$WORK/batch.samples" "$WORK/events" "$TAG-batch-")
  # Per job inside the batch (each attempt's total_s: SendCommand until its end is seen; the
  # first on each instance also has the launch).
  B_JOB=$(jq -r '.jobs[].attempts[-1].seconds' "$WORK/batch.json" | median)
  read -r B_GAP B_GAP_MAX B_GAPS < <(switch_gaps "$WORK/batch.json" "$WORK/events")
  read -r B_LIFE B_MOST < <(containers batch)
fi
if has loop; then
  say "2. loop: $JOBS x run-render run, $PARALLEL at a time"
  LOOP_T=$(run_loop loop "$JOBS" "$PARALLEL")
  LOAD_LOOP=$(load)
  read -r ok all < <(run_outcomes "$WORK/loop")
  [[ $ok == "$all" ]] || FAILED+=("loop $ok/$all")
  check_outputs loop "$JOBS"
  L_JOB=$(phase_median "$WORK/loop" '.run_s')
  L_BOOT=$(phase_median "$WORK/loop" '.total_s - .run_s - .terminate_s')
  L_TOTAL=$(phase_median "$WORK/loop" '.total_s')
  read -r L_LIFE L_MOST < <(containers loop)
fi
if has wide; then
  say "3. one instance per job: $WIDE_JOBS x run-render run at once"
  WIDE_T=$(run_loop wide "$WIDE_JOBS" "$WIDE_JOBS")
  LOAD_WIDE=$(load)
  read -r ok all < <(run_outcomes "$WORK/wide")
  [[ $ok == "$all" ]] || FAILED+=("wide $ok/$all")
  check_outputs wide "$WIDE_JOBS"
  W_JOB=$(phase_median "$WORK/wide" '.run_s')
  W_BOOT=$(phase_median "$WORK/wide" '.total_s - .run_s - .terminate_s')
  read -r W_LIFE W_MOST < <(containers wide)
fi
if has rss; then
  say "4. client RSS and CPU: $RSS_JOBS jobs of ${RSS_JOB_S} s, parallel $RSS_PARALLEL"
  RSS_T=$(run_batch rss "$RSS_JOBS" "$RSS_PARALLEL" "$RSS_JOB_S")
  LOAD_RSS=$(load)
  [[ $(jq -r .jobs_succeeded "$WORK/rss.json") == "$RSS_JOBS" ]] || FAILED+=("rss batch")
  read -r R_RSS R_CPU R_WAIT R_WAIT_S R_JOBS R_MOST < <(client_use "$WORK/rss.samples" "$WORK/events" "$TAG-rss-")
  R_SAMPLES=$(wc -l <"$WORK/rss.samples")
fi

# The table.
PASSES=0 MISSES=0
V=
verdict() { # VALUE OP GOAL -> V (pass, FAIL or -), counted
  if [[ $1 == nan || -z $1 ]]; then V=-; return; fi
  if awk -v v="$1" -v g="$3" -v op="$2" 'BEGIN {exit !((op == "<=" && v <= g) || (op == ">=" && v >= g) || (op == "<" && v < g))}'; then
    PASSES=$((PASSES + 1)) V=pass
  else
    MISSES=$((MISSES + 1)) V=FAIL
  fi
}
row() { printf '| %-58s | %25s | %6s | %-6s |\n' "$@"; }
echo
echo "Batches on the emulator, $(date '+%F %H:%M'), $(nproc) cores; job = pause($JOB_S) + one output file"
echo "load (1/5/15 min) after: reference $LOAD_REF; batch ${LOAD_BATCH:--}; loop ${LOAD_LOOP:--}; wide ${LOAD_WIDE:--}; rss ${LOAD_RSS:--}"
echo
row measure value goal result
row "$(printf -- '-%.0s' {1..58})" "$(printf -- '-%.0s' {1..25})" "------" "------"
row "reference run (median of $REF_RUNS): job / boot / terminate" "$JOB_T / $BOOT_T / $TERM_T" "" ""
row "ideal = $WAVES x job + boot" "$IDEAL s" "" ""
if [[ -n $BATCH_T ]]; then
  BR=$(calc "$BATCH_T / $IDEAL" 2)
  row "1. batch, $JOBS jobs, parallel $PARALLEL: wall" "$BATCH_T s" "" ""
  verdict "$BR" "<=" 1.3
  row "   batch / ideal" "$BR" "<= 1.3" "$V"
  row "   job inside the batch (median attempt)" "$B_JOB s" "" ""
  row "   job container's life, median (alone: $REF_LIFE s)" "$B_LIFE s" "" ""
  row "   job containers at once, most" "$B_MOST" "" ""
  row "   between jobs on an instance: median / max ($B_GAPS)" "$B_GAP / $B_GAP_MAX s" "" ""
  row "   client: peak RSS / CPU avg / CPU waiting (${B_WAIT_S} s)" "$B_RSS MB / $B_CPU% / $B_WAIT%" "" ""
fi
if [[ -n $LOOP_T ]]; then
  row "2. loop of run-render run, $PARALLEL at a time: wall" "$LOOP_T s" "" ""
  row "   its jobs (median): job (run_s) / boot / total" "$L_JOB / $L_BOOT / $L_TOTAL" "" ""
  row "   job container's life, median / most at once" "$L_LIFE s / $L_MOST" "" ""
  if [[ -n $BATCH_T ]]; then
    LR=$(calc "$LOOP_T / $BATCH_T" 2)
    verdict "$LR" ">=" 2
    row "   loop / batch" "$LR" ">= 2" "$V"
    IDEAL_L=$(calc "$WAVES * $L_JOB + $BOOT_T")
    row "   ideal with the loop's job time ($WAVES x $L_JOB + $BOOT_T)" "$IDEAL_L s" "" ""
    row "   batch / that ideal" "$(calc "$BATCH_T / $IDEAL_L" 2)" "" ""
    # Model, not measured: every instance boot taking MODEL_BOOT_S, as on AWS; the loop pays it
    # once per wave, the batch once.
    row "   model, boot ${MODEL_BOOT_S} s: (loop+${WAVES}xboot)/(batch+boot)" \
      "$(calc "($LOOP_T + $WAVES * $MODEL_BOOT_S) / ($BATCH_T + $MODEL_BOOT_S)" 2)" "" ""
  fi
fi
if [[ -n $WIDE_T ]]; then
  row "3. one instance per job, $WIDE_JOBS at once: wall" "$WIDE_T s" "" ""
  row "   its jobs (median): job (run_s) / boot / container life" "$W_JOB / $W_BOOT / $W_LIFE" "" ""
  row "   job containers at once, most" "$W_MOST" "" ""
  [[ -n $BATCH_T ]] && row "   wide / batch" "$(calc "$WIDE_T / $BATCH_T" 2)" "" ""
fi
if [[ -n $LOAD_RSS ]]; then
  row "4. batch, $RSS_JOBS x ${RSS_JOB_S} s jobs, parallel $RSS_PARALLEL: wall" "$RSS_T s" "" ""
  verdict "$R_RSS" "<" 100
  row "   client peak RSS (VmHWM, $R_SAMPLES samples)" "$R_RSS MB" "< 100" "$V"
  verdict "$R_WAIT" "<" 5
  row "   client CPU while waiting (${R_WAIT_S} s of quiet)" "$R_WAIT %" "< 5" "$V"
  row "   job containers while waiting, mean / most at once" "$R_JOBS / $R_MOST" "" ""
  row "   that CPU scaled to $RSS_PARALLEL jobs running (x $RSS_PARALLEL / $R_JOBS)" \
    "$(calc "$R_WAIT * $RSS_PARALLEL / $R_JOBS" 2) %" "" ""
  row "   client CPU over the whole batch" "$R_CPU %" "" ""
fi
echo
echo "job = run_s (SendCommand until the end is seen), boot = total_s - run_s - terminate_s; CPU in % of one core."
if has calls; then
  echo
  echo "5. calls per job-minute by API family (bench/calls.sh; sizes ${BENCH_SIZES:-10 50 100}${BEFORE:+, before = $BEFORE}):"
  bash bench/calls.sh || FAILED+=("calls")
fi

# Every instance must have ended.
kill "$EVENTS_PID" 2>/dev/null || true
EVENTS_PID=
ok=1
ensure_terminated || ok=0
CHECKED=1
if ((ok)); then
  echo "instances: none of this run's (AMI $AMI, tag rtb:tool=run-render) is left running"
fi
if ((!ok)); then
  echo "batch-bench: SOME INSTANCES WERE LEFT RUNNING; they have now been terminated" >&2
  exit 1
fi
if ((${#FAILED[@]})); then
  echo "batch-bench: not everything succeeded: ${FAILED[*]}" >&2
  exit 1
fi
echo "goals: $PASSES met, $MISSES missed"
