#!/usr/bin/env bash
# Submitting a batch to AWS Batch on moto: one array job (rows in an S3 manifest, `submit =
# "array"`, the default) against one job per row (`submit = "per-row"`), same rows, same queue,
# in one run. See bench/README.md ("AWS Batch: submitting 200 rows").
#
#   bench/aws-batch.sh                      # 200 rows per path; ~3-6 minutes on 2 cores
#   BENCH_ROWS=20 bench/aws-batch.sh        # smoke
#
# Settings (environment): BENCH_ROWS (200), BENCH_PROXY (1: every call of the client goes
# through a counting mitmdump; 0: straight to moto, and only SubmitJob calls are counted),
# BENCH_DRAIN_S (180: how long to wait for the stopped jobs' containers to go before the next
# path), BENCH_SETTLE_S (120: how long to wait for moto's CPU to fall under 10% of a core
# before each path), RUN_RENDER (target/debug/run-render), SKIP_BUILD=1 (use the binary as it is), KEEP=1.
#
# What it measures, per path (`run-render batch FILE --engine aws-batch --queue Q --detach`,
# jobs `disp(N)`, so the client returns right after submitting):
#   - submit s: the S of the client's line `N job(s) submitted to Q in K call(s), S s` (the
#     SubmitJob calls, and for the array the manifest's PutObject); also the wall time from
#     the client's start to that line on its stderr, and to its exit;
#   - SubmitJob calls: the K of that line; with the proxy also every AWS call the client made
#     (by service and action), attributed by connection: the proxy's addon looks up which
#     process owns each incoming connection (/proc/net/tcp + /proc/PID/fd), so the jobs'
#     own S3 calls (moto passes them the same endpoint) are not counted;
#   - peak RSS: ru_maxrss from wait4() (exact), and VmHWM sampled every 10 ms as a check; CPU
#     (user + sys) from the same rusage.
# Each path gets its own job definition (timeouts 10m / 11m), so both register one and both
# make the same calls before submitting. Right after each client returns, `run-render stop
# --batch NAME` ends the jobs (moto runs every job as a container: 2 x 200 on 2 cores is too
# much) and the script waits for their containers to go, and for moto to go quiet, before the
# next path (the array path goes first). At the end
# `run-render aws-batch teardown --queue Q` removes the queue, and the bucket is emptied and
# deleted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROWS="${BENCH_ROWS:-200}"
PROXY="${BENCH_PROXY:-1}"
DRAIN_S="${BENCH_DRAIN_S:-180}"
SETTLE_S="${BENCH_SETTLE_S:-120}"
RR="${RUN_RENDER:-$ROOT/target/debug/run-render}"

say() { echo "aws-batch-bench: $*" >&2; }
if [[ ! $ROWS =~ ^[1-9][0-9]*$ ]] || ((ROWS < 2)); then
  say "BENCH_ROWS must be an integer >= 2, not '$ROWS'"
  exit 2
fi

moto_up() {
  [[ -f .world/env ]] && (
    # shellcheck source=/dev/null
    . .world/env
    [[ -n ${RTB_WORLD_MOTO_URL:-} ]] && curl -fsS --max-time 2 -o /dev/null "$RTB_WORLD_MOTO_URL/moto-api/"
  )
}
if ! moto_up; then
  say "moto is not up; running tests/world/setup.sh"
  tests/world/setup.sh >&2
fi
# shellcheck source=/dev/null
. .world/env
MOTO="${RTB_WORLD_MOTO_URL:?moto is not in this test world (no RTB_WORLD_MOTO_URL in .world/env)}"
AWS="$RTB_WORLD_VENV/bin/aws"
PY="${PYTHON:-$RTB_WORLD_VENV/bin/python}"
MITMDUMP="${RTB_WORLD_MITMDUMP:-$ROOT/.world/faults-venv/bin/mitmdump}"
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
[[ $PROXY != 1 || -x $MITMDUMP ]] || { say "no mitmdump at $MITMDUMP (BENCH_PROXY=0 runs without it)"; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aws-batch-bench.XXXXXX")"
TAG="abb$$x$(date +%s)"
QUEUE="$TAG-q"
BUCKET="$TAG-renders"
MITM_PID=
QUEUE_MADE=0
BUCKET_MADE=0
STOPPED=()
SUBMITTED=()
export XDG_STATE_HOME="$WORK/state" USER="bench-$TAG"
# The jobs' credentials on moto: only this test-only setting gives jobs any.
export RUN_RENDER_TEST_JOB_CREDENTIALS="${RUN_RENDER_TEST_JOB_CREDENTIALS:-benchjob:benchjobsecret}"
mkdir -p "$XDG_STATE_HOME"
moto_aws() { AWS_ENDPOINT_URL="$MOTO" "$AWS" "$@"; }

cleanup() {
  set +e
  local b
  for b in "${SUBMITTED[@]}"; do
    [[ " ${STOPPED[*]} " == *" $b "* ]] && continue
    say "stopping batch $b"
    AWS_ENDPOINT_URL="$ENDPOINT" "$RR" stop --batch "$b" >/dev/null 2>&1
  done
  if ((QUEUE_MADE)); then
    AWS_ENDPOINT_URL="$MOTO" "$RR" aws-batch teardown --queue "$QUEUE" >"$WORK/teardown.err" 2>&1 ||
      { say "teardown of $QUEUE failed:"; cat "$WORK/teardown.err" >&2; }
  fi
  if ((BUCKET_MADE)); then
    moto_aws s3 rb "s3://$BUCKET" --force >/dev/null 2>&1 || say "could not delete bucket $BUCKET"
  fi
  [[ -n $MITM_PID ]] && kill "$MITM_PID" 2>/dev/null && wait "$MITM_PID" 2>/dev/null
  if [[ ${KEEP:-0} == 1 ]]; then say "raw data kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ── the counting proxy ─────────────────────────────────────────────────────────────────────
# A mitmdump addon: one JSON line per proxied call with the pid that owns the connection, if
# it is the process named in $BENCH_PIDFILE (the client being measured).
cat >"$WORK/count_calls.py" <<'EOF'
import json, os, re
from urllib.parse import parse_qs, unquote, urlsplit
from mitmproxy import http

OUT = open(os.environ["BENCH_CALLS"], "a", buffering=1)
PIDFILE = os.environ["BENCH_PIDFILE"]
owners = {}

def socket_inode(port, server_port):
    # The peer's end: local port = the peer's, remote = ours; not a TIME_WAIT leftover (inode 0).
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if (int(f[1].rsplit(":", 1)[1], 16) == port and f[9] != "0"
                            and int(f[2].rsplit(":", 1)[1], 16) == server_port):
                        return f[9]
        except OSError:
            pass
    return None

def owner(port, server_port):
    try:
        pid = int(open(PIDFILE).read().strip())
    except (OSError, ValueError):
        return None
    inode = socket_inode(port, server_port)
    if inode is None:
        return None
    want = f"socket:[{inode}]"
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                    return pid
            except OSError:
                pass
    except OSError:
        pass
    return None

def client_connected(client):
    owners[client.id] = owner(client.peername[1], client.sockname[1])

def request(flow):
    if flow.request.path.startswith("/_bench/ping"):
        flow.response = http.Response.make(200, b"ok")

def response(flow):
    req = flow.request
    if req.path.startswith("/_bench/"):
        return
    m = re.search(r"Credential=([^,\s]+)", req.headers.get("authorization", ""))
    scope = unquote(m.group(1)).split("/") if m else []
    service = scope[-2] if len(scope) >= 5 else ""
    path = urlsplit(req.path).path
    if service == "batch":
        action = path.rsplit("/", 1)[-1]
    elif service != "s3":
        action = (parse_qs(req.get_text(strict=False) or "").get("Action") or ["?"])[0]
    else:
        action = req.method + (" bucket" if path.strip("/").count("/") == 0 else " object")
    OUT.write(json.dumps({"pid": owners.get(flow.client_conn.id), "service": service,
                          "action": action, "path": req.path, "status": flow.response.status_code,
                          "t0": req.timestamp_start, "t1": flow.response.timestamp_end}) + "\n")
EOF
: >"$WORK/calls.jsonl"
ENDPOINT="$MOTO"
if [[ $PROXY == 1 ]]; then
  PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BENCH_CALLS="$WORK/calls.jsonl" BENCH_PIDFILE="$WORK/client.pid" "$MITMDUMP" -q \
    --mode "reverse:$MOTO" --listen-host 127.0.0.1 --listen-port "$PORT" \
    --set connection_strategy=lazy --set keep_host_header=true \
    --set "confdir=${RTB_WORLD_FAULTS_CONFDIR:-$ROOT/.world/mitmproxy}" \
    -s "$WORK/count_calls.py" >"$WORK/mitmdump.log" 2>&1 &
  MITM_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$PORT/_bench/ping" 2>/dev/null && break
    kill -0 "$MITM_PID" 2>/dev/null || { say "mitmdump exited:"; cat "$WORK/mitmdump.log" >&2; exit 1; }
    sleep 0.2
  done
  ENDPOINT="http://127.0.0.1:$PORT"
fi

# ── one client run, measured ───────────────────────────────────────────────────────────────
# measure.py LABEL -- CMD...: runs CMD with its pid in $WORK/client.pid, stamps the
# "submitted" line of its stderr, samples VmHWM/VmRSS, and prints one JSON object.
cat >"$WORK/measure.py" <<'EOF'
import json, os, re, subprocess, sys, threading, time

work, label, cmd = sys.argv[1], sys.argv[2], sys.argv[4:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
with open(os.path.join(work, "client.pid"), "w") as f:
    f.write(str(p.pid))
seen = {}
err_lines = []

def read_err():
    for raw in p.stderr:
        line = raw.decode(errors="replace")
        err_lines.append(line)
        m = re.search(r"(\d+) job\(s\) submitted to \S+ in (\d+) call\(s\), ([0-9.]+)s", line)
        if m and "line_s" not in seen:
            seen.update(line_s=time.monotonic() - t0, jobs=int(m[1]), calls=int(m[2]), submit_s=float(m[3]))

def read_out():
    seen["stdout"] = p.stdout.read().decode(errors="replace")

threads = [threading.Thread(target=read_err), threading.Thread(target=read_out)]
for t in threads:
    t.start()
hwm = rss = 0
while True:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    rss = max(rss, int(line.split()[1]))
    except OSError:
        pass
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    except OSError:
        break
    time.sleep(0.01)
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - t0
for t in threads:
    t.join()
with open(os.path.join(work, label + ".err"), "w") as f:
    f.writelines(err_lines)
print(json.dumps({
    "label": label, "exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 3),
    "line_s": round(seen.get("line_s", -1), 3), "jobs": seen.get("jobs"), "submit_calls": seen.get("calls"),
    "submit_s": seen.get("submit_s"), "maxrss_kb": ru.ru_maxrss, "hwm_kb": hwm, "rss_kb": rss,
    "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
}))
EOF
measure() { # LABEL CMD...: the client under measure.py, with the endpoint under test
  local label=$1
  shift
  AWS_ENDPOINT_URL="$ENDPOINT" "$PY" "$WORK/measure.py" "$WORK" "$label" -- "$@" >"$WORK/$label.json"
}
# Calls the client made in run LABEL (its pid), as JSON: total, by service, by action.
calls_of() {
  local pid
  pid=$(jq -r '.pid' "$WORK/$1.pid.json")
  jq -s --argjson pid "$pid" '[.[] | select(.pid == $pid)] |
    {total: length, batch: map(select(.service == "batch")) | length,
     s3: map(select(.service == "s3")) | length,
     by: (group_by(.service + " " + .action) | map({key: (.[0].service + " " + .[0].action), value: length}) | from_entries),
     submit_window_s: ((map(select(.action == "submitjob")) | if length > 0 then (map(.t1) | max) else null end) as $last
       | (map(select(.action == "submitjob" or (.action == "PUT object" and (.path | test("manifest"))))) | map(.t0) | min) as $first
       | if $last then (($last - $first) * 1000 | round) / 1000 else null end)}' \
    "$WORK/calls.jsonl"
}
run_client() { # LABEL CMD...: measure, and keep the pid the calls are attributed to
  local label=$1
  measure "$@"
  jq -n --arg pid "$(cat "$WORK/client.pid")" '{pid: ($pid | tonumber)}' >"$WORK/$label.pid.json"
}
# Wait (up to BENCH_SETTLE_S) until moto's server process uses under 10% of a core over 2 s:
# the jobs of the path before have been taken down and moto's job threads are done.
settle() {
  local pid t0 t1 waited=0
  pid=$(cat .world/moto.pid 2>/dev/null || true)
  [[ -n $pid && -r /proc/$pid/stat ]] || return 0
  cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  while ((waited < SETTLE_S)); do
    t0=$(cpu)
    sleep 2
    t1=$(cpu)
    waited=$((waited + 2))
    (((t1 - t0) * 100 / $(getconf CLK_TCK) < 20)) && break
  done
  say "moto settled after ${waited}s (load $(cut -d' ' -f1-3 /proc/loadavg))"
}
containers_of() { # how many containers moto runs for batch NAME (named <job name>-<job id>-<i>)
  docker ps -q --filter "name=$1" | wc -l
}

# ── the world: a bucket, a queue over moto's default VPC ───────────────────────────────────
say "$ROWS rows per path, queue $QUEUE, bucket $BUCKET; proxy: $([[ $PROXY == 1 ]] && echo "$ENDPOINT" || echo none); load $(cut -d' ' -f1-3 /proc/loadavg)"
moto_aws s3 mb "s3://$BUCKET" >/dev/null
BUCKET_MADE=1
SUBNET=$(moto_aws ec2 describe-subnets --query 'Subnets[0].SubnetId' --output text)
SG=$(moto_aws ec2 describe-security-groups --query 'SecurityGroups[0].GroupId' --output text)
QUEUE_MADE=1
if ! AWS_ENDPOINT_URL="$MOTO" "$RR" aws-batch setup --queue "$QUEUE" --ami ami-12345678 --instance-type m5.large \
  --max-vcpus 16 --subnet "$SUBNET" --security-group "$SG" --output-bucket "$BUCKET" >"$WORK/setup.err" 2>&1; then
  say "aws-batch setup failed:"
  cat "$WORK/setup.err" >&2
  exit 1
fi

batch_file() { # NAME SUBMIT TIMEOUT
  local name=$1 n
  {
    echo "n,cmd"
    for ((n = 1; n <= ROWS; n++)); do echo "$n,disp($n)"; done
  } >"$WORK/$name.csv"
  cat >"$WORK/$name.toml" <<EOF
[batch]
csv = "$name.csv"
vcpus = 1
memory-mib = 1024
submit = "$2"

[job]
ami = "ami-12345678"
image = "$SUPPORT_IMAGE"
interpreter = "octave-cli"
command = "\${cmd}"
output = "s3://$BUCKET/$name/\${n}"
job-id = "$name-\${n}"
timeout = "$3"
EOF
}

PATHS=(array per-row)
declare -A TIMEOUT=([array]=10m [per-row]=11m)
for path in "${PATHS[@]}"; do
  name="$TAG-${path/-/}"
  batch_file "$name" "$path" "${TIMEOUT[$path]}"
  settle
  say "$path: submitting $ROWS rows (load $(cut -d' ' -f1-3 /proc/loadavg))"
  SUBMITTED+=("$name")
  run_client "$path" "$RR" batch "$WORK/$name.toml" --engine aws-batch --queue "$QUEUE" --detach
  jq -c . "$WORK/$path.json" >&2
  if [[ $(jq -r .exit "$WORK/$path.json") != 0 || $(jq -r .jobs "$WORK/$path.json") != "$ROWS" ]]; then
    say "$path: the client failed or did not say it submitted $ROWS jobs:"
    cat "$WORK/$path.err" >&2
    exit 1
  fi
  # End the jobs at once: the benchmark is about submitting.
  run_client "$path-stop" "$RR" stop --batch "$name"
  STOPPED+=("$name")
  tail -n 2 "$WORK/$path-stop.err" >&2
  waited=0
  while (($(containers_of "$name") > 0 && waited < DRAIN_S)); do
    sleep 2
    waited=$((waited + 2))
  done
  say "$path: containers gone after ${waited}s ($(containers_of "$name") left)"
done

# ── the table ──────────────────────────────────────────────────────────────────────────────
for path in "${PATHS[@]}" "${PATHS[@]/%/-stop}"; do
  if [[ $PROXY == 1 ]]; then calls_of "$path"; else echo '{"total": null, "batch": null, "s3": null, "by": {}}'; fi \
    >"$WORK/$path.calls.json"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
field() { jq -r "$2" "$WORK/$1.json"; }
calls() { jq -r "$2 // \"-\"" "$WORK/$1.calls.json"; }
echo
fmt='%-13s %5s %8s %9s %9s %8s %9s %9s %7s %7s %7s\n'
# shellcheck disable=SC2059
printf "$fmt" path rows "submit s" "window s" "to line s" "wall s" SubmitJob "AWS calls" "RSS MB" "CPU s" "stop s"
for path in "${PATHS[@]}"; do
  # shellcheck disable=SC2059
  printf "$fmt" "$path" "$ROWS" "$(field "$path" .submit_s)" "$(calls "$path" .submit_window_s)" \
    "$(field "$path" .line_s)" "$(field "$path" .wall_s)" "$(field "$path" .submit_calls)" "$(calls "$path" .total)" \
    "$(awk -v k="$(field "$path" .maxrss_kb)" 'BEGIN {printf "%.1f", k / 1024}')" "$(field "$path" .cpu_s)" \
    "$(field "$path-stop" .wall_s)"
done
# shellcheck disable=SC2059
printf "$fmt" "per-row/array" "" \
  "$(ratio "$(field per-row .submit_s)" "$(field array .submit_s)")" \
  "$(ratio "$(jq -r '.submit_window_s // 0' "$WORK/per-row.calls.json")" "$(jq -r '.submit_window_s // 0' "$WORK/array.calls.json")")" \
  "$(ratio "$(field per-row .line_s)" "$(field array .line_s)")" \
  "$(ratio "$(field per-row .wall_s)" "$(field array .wall_s)")" \
  "$(ratio "$(field per-row .submit_calls)" "$(field array .submit_calls)")" \
  "$(ratio "$(jq -r '.total // 0' "$WORK/per-row.calls.json")" "$(jq -r '.total // 0' "$WORK/array.calls.json")")" \
  "$(ratio "$(field per-row .maxrss_kb)" "$(field array .maxrss_kb)")" \
  "$(ratio "$(field per-row .cpu_s)" "$(field array .cpu_s)")" \
  "$(ratio "$(field per-row-stop .wall_s)" "$(field array-stop .wall_s)")"
echo "submit s: the client's own figure (one decimal); window s: first manifest PUT / SubmitJob request"
echo "to the last SubmitJob response, at the proxy; to line s / wall s: from the client's start to"
echo "its 'submitted' line / to its exit; stop s: \`run-render stop --batch\` right after."
echo
if [[ $PROXY == 1 ]]; then
  for path in "${PATHS[@]}" "${PATHS[@]/%/-stop}"; do
    echo "$path calls: $(jq -c .by "$WORK/$path.calls.json")"
  done
  echo "calls through the proxy from other processes (the jobs' runners): $(jq -s '[.[] | select(.pid == null)] | length' "$WORK/calls.jsonl")"
fi
for path in "${PATHS[@]}"; do
  echo "$path: sampled VmHWM $(field "$path" .hwm_kb) kB, ru_maxrss $(field "$path" .maxrss_kb) kB"
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; run-render $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates Cargo.toml Cargo.lock || echo ' + uncommitted changes')"
