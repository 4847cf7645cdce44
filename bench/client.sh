#!/usr/bin/env bash
# Client overhead per job and log latency of run-render on the local emulator, compared in the
# same run with the equivalent bash + aws-cli sequence. See bench/README.md ("Client overhead
# and log latency").
#
#   bench/client.sh              # N=5 runs of each kind; ~1.5-2 minutes on 2 cores
#   N=10 LAT_SECONDS=30 bench/client.sh
#
# Settings (environment): N (runs per kind, default 5), LAT_SECONDS (length of the latency
# job, default 15), LAT_EVERY (its print interval, default 0.25), RUN_RENDER (the client
# binary, default target/debug/run-render), KEEP=1 (keep the raw reports in the work folder).
#
# What it measures, per run:
#   a. run-render --shell "sleep 1" --json, and a container job (--command "pause(1)" with
#      --output): the report's phases, and the wall time around the process;
#      overhead = total_s - boot_s - job, where job is the 1 s sleep for --shell and, for the
#      container job, the container's life (docker create -> die, from `docker events`) =
#      runner's result.timings.total_s + container start/stop (create, start, runner start-up,
#      last log chunk and result record, exit). "overhead (wall)" uses the wall time instead
#      of total_s, so the client's process start-up and exit count too.
#   b. the same --shell job as bash + aws-cli: run-instances (same AMI, tags, IMDSv2), ec2 wait
#      instance-running, describe-instance-information until Online, send-command sleep 1,
#      get-command-invocation every 1 s, terminate-instances, ec2 wait instance-terminated.
#   c. log latency: one container job printing `LAT <epoch>` every LAT_EVERY s, the client's
#      stdout piped into bench/client_latency.py (arrival - printed, same clock).
# Every instance it starts ends terminated (checked at the end with describe-instances); it
# registers one AMI and creates one bucket and the instance profile, and deletes nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${N:-5}"
LAT_SECONDS="${LAT_SECONDS:-15}"
LAT_EVERY="${LAT_EVERY:-0.25}"
RR="${RUN_RENDER:-$ROOT/target/debug/run-render}"
PY="${PYTHON:-python3}"

world_up() {
  [[ -f .world/env ]] &&
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${RTB_WORLD_PORT:-45660}/_ministack/health" 2>/dev/null
}
if ! world_up; then
  echo "client-bench: the test world is not up; running tests/world/setup.sh" >&2
  tests/world/setup.sh >&2
fi
# shellcheck source=/dev/null
. .world/env
AWS="$RTB_WORLD_VENV/bin/aws"
SUPPORT_IMAGE="${RTB_WORLD_SUPPORT_IMAGE:-rtb-world/support:test}"
if [[ ! -x $RR ]]; then
  echo "client-bench: building run-render (debug)" >&2
  cargo build --quiet -p run-render
fi
for tool in "$AWS" jq docker curl "$PY"; do
  command -v "$tool" >/dev/null || { echo "client-bench: missing $tool" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/client-bench.XXXXXX")"
TAG="cb-$$-$(date +%s)"
AMI=
INSTANCES=()
EVENTS_PID=
CHECKED=0

# Terminate every instance this run started that is not terminated (all of them come from this
# run's own AMI, so one filtered describe-instances finds them) and wait for it; returns 1 when
# something had been left running.
ensure_terminated() {
  local ids=()
  [[ -n $AMI ]] || return 0
  mapfile -t ids < <("$AWS" ec2 describe-instances --filters "Name=image-id,Values=$AMI" \
    "Name=instance-state-name,Values=pending,running,shutting-down,stopping,stopped" \
    --query 'Reservations[].Instances[].InstanceId' --output text | tr '\t' '\n' | grep . || true)
  ((${#ids[@]})) || return 0
  echo "client-bench: LEFT RUNNING, terminating: ${ids[*]}" >&2
  "$AWS" ec2 terminate-instances --instance-ids "${ids[@]}" >/dev/null || true
  "$AWS" ec2 wait instance-terminated --instance-ids "${ids[@]}" || true
  return 1
}

cleanup() {
  set +e
  [[ -n $EVENTS_PID ]] && kill "$EVENTS_PID" 2>/dev/null
  [[ $CHECKED == 1 ]] || ensure_terminated
  if [[ ${KEEP:-0} == 1 ]]; then echo "client-bench: raw data kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }
say() { echo "client-bench: $*" >&2; }

# The world: a fresh AMI from the test image, the profile, one bucket.
AMI=$("$AWS" ec2 register-image --name "client-bench-$TAG" --image-location "${RTB_WORLD_AMI_IMAGE:-rtb-world/ami:test}" \
  --query ImageId --output text)
"$AWS" iam create-instance-profile --instance-profile-name run-render-instance >/dev/null 2>&1 || true
BUCKET="client-bench-$$-$(date +%s)"
"$AWS" s3 mb "s3://$BUCKET" >/dev/null
say "AMI $AMI, bucket $BUCKET, $N runs of each kind; load $(cut -d' ' -f1-3 /proc/loadavg)"

# Container start/stop times, by job id (the job script labels its container rtb-job=<id>).
docker events --filter type=container --filter label=rtb-job --filter event=create --filter event=die \
  --format '{{.TimeNano}} {{.Action}} {{index .Actor.Attributes "rtb-job"}}' >"$WORK/events" 2>/dev/null &
EVENTS_PID=$!

ROWS="$WORK/rows.tsv"
printf 'kind\ti\twall\ttotal\tpreflight\tlaunch\tboot\tagent\trun\tterminate\tjob\trunner\toverhead\toverhead_wall\tproc\n' >"$ROWS"

# The container's life (create -> die) for a job id, from docker events; empty if not seen.
container_life() {
  local i
  for i in 1 2 3 4 5; do
    awk -v id="$1" '$3 == id && $2 == "create" {c = $1} $3 == id && $2 == "die" {d = $1}
      END {if (c && d) printf "%.3f\n", (d - c) / 1e9}' "$WORK/events" | grep . && return 0
    sleep 0.2
  done
}

# One run-render job: KIND (shell|container) I.
run_render() {
  local kind=$1 i=$2 job_id="$TAG-$1-$2" out err start end rc args
  out="$WORK/$kind-$i.json" err="$WORK/$kind-$i.err"
  args=(--ami "$AMI" --instance-type t3.micro --job-id "$job_id" --json)
  if [[ $kind == shell ]]; then
    args+=(--shell "sleep 1")
  else
    args+=(--image "$SUPPORT_IMAGE" --interpreter octave-cli --output "s3://$BUCKET/$job_id" --command "pause(1)")
  fi
  start=$(now)
  rc=0
  "$RR" "${args[@]}" >"$out" 2>"$err" </dev/null || rc=$?
  end=$(now)
  local id
  id=$(jq -r '.instance_id // empty' "$out" 2>/dev/null || true)
  [[ -n $id ]] && INSTANCES+=("$id")
  if ((rc != 0)) || [[ $(jq -r '.outcome + " " + .instance' "$out") != "succeeded terminated" ]]; then
    say "run-render $kind run $i failed (exit $rc):"
    cat "$out" "$err" >&2
    exit 1
  fi
  local wall total boot job runner=""
  wall=$(minus "$end" "$start")
  total=$(jq -r '.phases.total_s' "$out")
  boot=$(jq -r '.phases.boot_s' "$out")
  if [[ $kind == shell ]]; then
    job=1
  else
    runner=$(jq -r '.result.timings.total_s // empty' "$out")
    job=$(container_life "$job_id" || true)
    if [[ -z $job ]]; then
      say "no docker events for $job_id: counting only the runner's total_s as the job"
      job=$runner
    fi
  fi
  jq -r --arg kind "$kind" --arg i "$i" --arg wall "$wall" --arg job "$job" --arg runner "${runner:-}" '
    .phases as $p | ($wall | tonumber) as $w | ($job | tonumber) as $j |
    [$kind, $i, $w, $p.total_s, $p.preflight_s, $p.launch_s, $p.boot_s, $p.agent_s, $p.run_s,
     $p.terminate_s, $j, $runner, ($p.total_s - $p.boot_s - $j), ($w - $p.boot_s - $j),
     ($w - $p.total_s)] | map(tostring) | @tsv' "$out" >>"$ROWS"
  say "$kind $i: wall $wall s, total $total s, boot $boot s, job $job s"
}

# The same --shell job with the aws cli, step by step, as a script would do it.
BASH_STEPS="$WORK/bash-steps.tsv"
printf 'i\trun_instances\twait_running\tonline\tsend\tpoll\tterminate\twait_terminated\twall\tcalls\n' >"$BASH_STEPS"
bash_cli() {
  local i=$1 job_id="$TAG-bash-$1" t0 t iid cmd st steps=() calls=0
  local tags="{Key=Name,Value=run-render-$job_id},{Key=rtb:tool,Value=run-render},{Key=rtb:job-id,Value=$job_id}"
  step() { local n; n=$(now); steps+=("$(minus "$n" "$t")"); t=$n; }
  t0=$(now)
  t=$t0
  iid=$("$AWS" ec2 run-instances --image-id "$AMI" --instance-type t3.micro --count 1 \
    --iam-instance-profile Name=run-render-instance \
    --instance-initiated-shutdown-behavior terminate \
    --metadata-options HttpTokens=required,HttpEndpoint=enabled,HttpPutResponseHopLimit=1,InstanceMetadataTags=enabled \
    --tag-specifications "ResourceType=instance,Tags=[$tags]" "ResourceType=volume,Tags=[$tags]" \
    "ResourceType=network-interface,Tags=[$tags]" \
    --query 'Instances[0].InstanceId' --output text)
  INSTANCES+=("$iid")
  calls=$((calls + 1))
  step
  "$AWS" ec2 wait instance-running --instance-ids "$iid"
  calls=$((calls + 1))
  step
  while :; do
    calls=$((calls + 1))
    st=$("$AWS" ssm describe-instance-information --filters "Key=InstanceIds,Values=$iid" \
      --query 'InstanceInformationList[0].PingStatus' --output text)
    [[ $st == Online ]] && break
    sleep 1
  done
  step
  cmd=$("$AWS" ssm send-command --instance-ids "$iid" --document-name AWS-RunShellScript \
    --parameters '{"commands":["sleep 1"]}' --comment "client-bench $job_id" \
    --query 'Command.CommandId' --output text)
  calls=$((calls + 1))
  step
  while :; do
    calls=$((calls + 1))
    st=$("$AWS" ssm get-command-invocation --command-id "$cmd" --instance-id "$iid" \
      --query Status --output text 2>/dev/null || echo Pending)
    case $st in Pending | InProgress | Delayed) sleep 1 ;; *) break ;; esac
  done
  [[ $st == Success ]] || { say "bash+aws-cli run $i: command ended $st"; exit 1; }
  step
  "$AWS" ec2 terminate-instances --instance-ids "$iid" >/dev/null
  calls=$((calls + 1))
  step
  "$AWS" ec2 wait instance-terminated --instance-ids "$iid"
  calls=$((calls + 1))
  step
  local wall
  wall=$(minus "$t" "$t0")
  printf '%s\t%s\t%s\t%s\n' "$i" "$(IFS=$'\t'; echo "${steps[*]}")" "$wall" "$calls" >>"$BASH_STEPS"
  # boot = the wait for running; job = the 1 s sleep.
  printf 'bash\t%s\t%s\t%s\t\t\t%s\t\t\t\t1\t\t%s\t%s\t\n' "$i" "$wall" "$wall" "${steps[1]}" \
    "$(minus "$(minus "$wall" "${steps[1]}")" 1)" "$(minus "$(minus "$wall" "${steps[1]}")" 1)" >>"$ROWS"
  say "bash $i: wall $wall s ($calls aws calls)"
}

# a + b: the three kinds take turns, so a slow spell of the machine is shared.
for ((i = 1; i <= N; i++)); do
  run_render shell "$i"
  run_render container "$i"
  bash_cli "$i"
done

# c: log latency.
lat_n=$(awk -v s="$LAT_SECONDS" -v e="$LAT_EVERY" 'BEGIN {printf "%d", s / e}')
lat_job="$TAG-latency"
lat_cmd="for k = 1:$lat_n, printf('LAT %.3f\\n', time()); fflush(stdout); pause($LAT_EVERY); end"
say "latency job: $lat_n lines, one every $LAT_EVERY s"
rc=0
"$RR" --ami "$AMI" --instance-type t3.micro --job-id "$lat_job" --image "$SUPPORT_IMAGE" \
  --interpreter octave-cli --output "s3://$BUCKET/$lat_job" --command "$lat_cmd" \
  2>"$WORK/latency.err" </dev/null |
  "$PY" bench/client_latency.py --expect "$lat_n" --raw "$WORK/latency.raw" >"$WORK/latency.txt" || rc=$?
lat_id=$(grep -o 'launched i-[0-9a-f]*' "$WORK/latency.err" | head -1 | cut -d' ' -f2 || true)
[[ -n $lat_id ]] && INSTANCES+=("$lat_id")
if ((rc != 0)); then
  say "latency run failed (exit $rc):"
  cat "$WORK/latency.txt" "$WORK/latency.err" >&2
  exit 1
fi

# The tables. Percentiles are nearest-rank over the N runs (with N=5, p95 is the slowest).
stat() { # KIND COLUMN -> "median p95"; KIND "steps" reads the bash+aws-cli steps
  local file=$ROWS
  [[ $1 == steps ]] && file=$BASH_STEPS
  awk -F'\t' -v kind="$1" -v col="$2" '
    NR == 1 {for (c = 1; c <= NF; c++) if ($c == col) k = c; next}
    (kind == "steps" || $1 == kind) && k && $k != "" {v[++n] = $k + 0}
    END {
      if (!n) {print "- -"; exit}
      for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) {t = v[a]; v[a] = v[b]; v[b] = t}
      m = int(n * 0.5); if (m < n * 0.5) m++
      p = int(n * 0.95); if (p < n * 0.95) p++
      printf "%.3f %.3f\n", v[m], v[p]
    }' "$file"
}
med() { local s; s=$(stat "$1" "$2"); echo "${s% *}"; }
p95() { local s; s=$(stat "$1" "$2"); echo "${s#* }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo
echo "Client overhead: $N runs each, seconds, median / p95 (nearest rank); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %15s %15s %15s %17s %17s\n' what wall "job" "boot" "overhead" "overhead (wall)"
for kind in shell container bash; do
  case $kind in
    shell) label='run-render --shell sleep 1' ;;
    container) label='run-render container job' ;;
    bash) label='bash + aws-cli (sleep 1)' ;;
  esac
  printf '%-28s %7s / %-5s %7s / %-5s %7s / %-5s %8s / %-6s %8s / %-6s\n' "$label" \
    "$(med "$kind" wall)" "$(p95 "$kind" wall)" "$(med "$kind" job)" "$(p95 "$kind" job)" \
    "$(med "$kind" boot)" "$(p95 "$kind" boot)" \
    "$(med "$kind" overhead)" "$(p95 "$kind" overhead)" "$(med "$kind" overhead_wall)" "$(p95 "$kind" overhead_wall)"
done
echo "wall ratio bash+aws-cli / run-render --shell: $(ratio "$(med bash wall)" "$(med shell wall)") (median)," \
  "overhead ratio: $(ratio "$(med bash overhead_wall)" "$(med shell overhead_wall)")"
echo "job: --shell = the 1 s sleep; container = its container's life, docker create -> die (runner"
echo "  total_s $(med container runner) + container start/stop $(awk -F'\t' 'NR > 1 && $1 == "container" {v[++n] = $11 - $12}
  END {for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) {t = v[a]; v[a] = v[b]; v[b] = t}
    m = int(n * 0.5); if (m < n * 0.5) m++; printf "%.3f", v[m]}' "$ROWS"), medians); bash: boot = the 'ec2 wait instance-running' step."
echo "overhead = total_s - boot_s - job; overhead (wall) = wall time around the process - boot_s - job. Goal: < 0.5 s"

echo
echo "run-render phases, median (p95), seconds"
printf '%-10s' kind
for c in preflight launch boot agent run terminate total proc; do printf ' %14s' "$c"; done
printf ' %14s\n' 'run - job'
for kind in shell container; do
  printf '%-10s' "$kind"
  for c in preflight launch boot agent run terminate total proc; do
    printf ' %14s' "$(med "$kind" "$c") ($(p95 "$kind" "$c"))"
  done
  # The run phase beyond the job itself: sending, the status poll's granularity, the log tail.
  printf ' %14s\n' "$(awk -F'\t' -v kind="$kind" 'NR > 1 && $1 == kind {v[++n] = $9 - $11}
    END {for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) {t = v[a]; v[a] = v[b]; v[b] = t}
      m = int(n * 0.5); if (m < n * 0.5) m++; printf "%.3f", v[m]}' "$ROWS")"
done
echo "(proc = wall - total_s: process start-up, SDK config, JSON out, exit; run - job: SendCommand to"
echo " the job's start, its end to the client noticing it: mostly the 1 s status poll)"

echo
echo "bash + aws-cli steps, median (p95), seconds; $(med steps calls | cut -d. -f1) aws calls per job (median)"
for c in run_instances wait_running online send poll terminate wait_terminated wall; do
  printf '  %-16s %s (%s)\n' "$c" "$(med steps "$c")" "$(p95 steps "$c")"
done

echo
echo "Log latency, one container job printing every $LAT_EVERY s for $LAT_SECONDS s (goal p95 < 2 s):"
cat "$WORK/latency.txt"

echo
kill "$EVENTS_PID" 2>/dev/null || true
EVENTS_PID=
ok=1
ensure_terminated || ok=0
CHECKED=1
# MiniStack drops an instance from DescribeInstances a minute after it terminated (AWS: about
# an hour): an instance of ours that is no longer listed was terminated.
declare -A state_of=()
while read -r id st; do
  [[ -n $id ]] && state_of[$id]=$st
done < <("$AWS" ec2 describe-instances --filters "Name=image-id,Values=$AMI" \
  --query 'Reservations[].Instances[].[InstanceId, State.Name]' --output text)
listed=0 gone=0 other=0
for id in "${INSTANCES[@]}"; do
  case ${state_of[$id]:-gone} in
    terminated) listed=$((listed + 1)) ;;
    gone) gone=$((gone + 1)) ;;
    *) other=$((other + 1)) ;;
  esac
done
echo "instances: ${#INSTANCES[@]} started by this run: $listed listed as terminated, $gone no longer" \
  "listed (terminated over a minute ago), $other in another state; ${#state_of[@]} listed from $AMI"
((other == 0)) || ok=0
((ok)) || { echo "instances: some were left running; they have now been terminated" >&2; exit 1; }
