#!/usr/bin/env bash
# Check the test world end to end with the plain aws cli (needs tests/world/setup.sh first):
#   1. an instance from the test AMI gets the endpoint env, is SSM-managed, and a
#      SendCommand'ed `docker run` peer on the host network runs Octave and reaches MiniStack;
#   2. TerminateInstances kills a peer the instance started (the docker wrapper's --pid);
#   3. `rtb-deadline EPOCH` returns at once and the instance is `terminated` soon after EPOCH,
#      taking its peer with it; re-arming replaces the earlier deadline, a refused re-arm
#      (/run/rtb-deadline.fail) exits 1 and keeps it, --cancel disarms.
# Cleans up what it made. Exit status 0 when every check passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
# shellcheck source=/dev/null
. "$REPO/.world/env"
AWS=$RTB_WORLD_VENV/bin/aws
PY=$RTB_WORLD_VENV/bin/python
PORT=$RTB_WORLD_PORT
tag=smoke-$$

failures=0
ok() { printf 'smoke: ok   %s\n' "$*"; }
bad() {
    printf 'smoke: FAIL %s\n' "$*" >&2
    failures=$((failures + 1))
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

instances=()
ami=
cleanup() {
    set +e
    if ((${#instances[@]})); then
        "$AWS" ec2 terminate-instances --instance-ids "${instances[@]}" >/dev/null 2>&1
    fi
    [[ -n $ami ]] && "$AWS" ec2 deregister-image --image-id "$ami" >/dev/null 2>&1
    local c
    for c in $(docker ps -aq --filter "name=rtb-job-$tag"); do docker rm -f "$c" >/dev/null; done
    for i in "${instances[@]}"; do
        docker rm -f "ministack-ec2-000000000000-us-east-1-$i" >/dev/null 2>&1
    done
}
trap cleanup EXIT

state() {
    "$AWS" ec2 describe-instances --instance-ids "$1" \
        --query 'Reservations[0].Instances[0].State.Name' --output text
}
launch() { # sets $iid (not a $(...) subshell, so the cleanup list is kept)
    iid=$("$AWS" ec2 run-instances --image-id "$ami" --instance-type t3.micro --count 1 \
        --instance-initiated-shutdown-behavior terminate \
        --query 'Instances[0].InstanceId' --output text)
    instances+=("$iid")
}
# send INSTANCE SCRIPT: SendCommand AWS-RunShellScript, prints the command id.
send() {
    local params
    params=$("$PY" -c 'import json, sys; print(json.dumps({"commands": [sys.argv[1]]}))' "$2")
    "$AWS" ssm send-command --instance-ids "$1" --document-name AWS-RunShellScript \
        --parameters "$params" --query 'Command.CommandId' --output text
}
# wait_command INSTANCE COMMAND_ID: polls until the invocation ends; prints
# "STATUS CODE" on the first line, then the output.
wait_command() {
    local st
    for _ in $(seq 1 120); do
        st=$("$AWS" ssm get-command-invocation --instance-id "$1" --command-id "$2" \
            --query 'Status' --output text)
        case $st in Pending | InProgress | Delayed) sleep 0.5 ;; *) break ;; esac
    done
    "$AWS" ssm get-command-invocation --instance-id "$1" --command-id "$2" \
        --query '[Status, ResponseCode, StandardOutputContent]' --output text
}
wait_state() { # wait_state INSTANCE STATE SECONDS
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        [[ $(state "$1") == "$2" ]] && return 0
        sleep 0.25
    done
    return 1
}

ami=$("$AWS" ec2 register-image --name "rtb-$tag" --image-location "$RTB_WORLD_AMI_IMAGE" \
    --query ImageId --output text)
ok "registered $RTB_WORLD_AMI_IMAGE as $ami"

# ── 1. instance env, SSM, peers ─────────────────────────────────────────────────────────
launch
i1=$iid
check "instance $i1 running" wait_state "$i1" running 10
check "instance $i1 SSM Online" test "$("$AWS" ssm describe-instance-information \
    --filters "Key=InstanceIds,Values=$i1" --query 'InstanceInformationList[0].PingStatus' \
    --output text)" == Online

script="env | grep -E '^AWS_' | sort
docker run --rm --network host --entrypoint octave-cli $RTB_WORLD_SUPPORT_IMAGE --quiet --eval 'disp(1+1)'
docker run --rm --network host --entrypoint bash $RTB_WORLD_SUPPORT_IMAGE -c '
  exec 3<>/dev/tcp/127.0.0.1/$PORT
  printf \"GET /_ministack/health HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n\" >&3
  head -n 1 <&3'
docker run --rm --network host $RTB_WORLD_SUPPORT_IMAGE >/dev/null 2>&1; echo runner-exit=\$?
docker run --rm --network host -e AWS_EC2_METADATA_SERVICE_ENDPOINT --entrypoint sh $RTB_WORLD_SUPPORT_IMAGE -c 'echo peer-imds=\$AWS_EC2_METADATA_SERVICE_ENDPOINT'"
t0=$SECONDS
out=$(wait_command "$i1" "$(send "$i1" "$script")")
printf '%s\n' "$out" | sed 's/^/smoke:      | /'
check "command succeeded ($((SECONDS - t0)) s)" grep -q '^Success[[:space:]]0' <<<"$out"
# Instances reach AWS through the world's IAM-enforcing proxy (RTB_WORLD_PORT+2).
check "instance env has AWS_ENDPOINT_URL" grep -qx "AWS_ENDPOINT_URL=http://127.0.0.1:$((PORT + 2))" <<<"$out"
check "instance env has AWS_EC2_METADATA_SERVICE_ENDPOINT" \
    grep -qx "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$((PORT + 2))/" <<<"$out"
check "a peer's metadata endpoint names its instance" \
    grep -qx "peer-imds=http://127.0.0.1:$((PORT + 2))/_imds/$i1/" <<<"$out"
check "instance env has AWS_REGION" grep -qx "AWS_REGION=us-east-1" <<<"$out"
check "peer ran octave-cli (disp(1+1) -> 2)" grep -qx 2 <<<"$out"
check "peer reached MiniStack on 127.0.0.1:$PORT" grep -q 'HTTP/1.1 200' <<<"$out"
check "peer ran the support image's entrypoint (rtb-job)" grep -q 'runner-exit=' <<<"$out"

out=$(wait_command "$i1" "$(send "$i1" 'exit 3')")
check "exit 3 -> Failed 3" grep -q '^Failed[[:space:]]3' <<<"$out"

# ── 2. TerminateInstances kills the instance's peers ────────────────────────────────────
peer=rtb-job-$tag-term
cid=$(send "$i1" "docker run --name $peer --network host --entrypoint sleep $RTB_WORLD_SUPPORT_IMAGE 1000")
for _ in $(seq 1 40); do
    [[ $(docker inspect -f '{{.State.Status}}' "$peer" 2>/dev/null) == running ]] && break
    sleep 0.25
done
check "peer $peer running (started attached by SendCommand)" \
    test "$(docker inspect -f '{{.State.Status}}' "$peer" 2>/dev/null)" == running
t0=$SECONDS
"$AWS" ec2 terminate-instances --instance-ids "$i1" >/dev/null
check "instance $i1 terminated" wait_state "$i1" terminated 10
for _ in $(seq 1 40); do
    [[ $(docker inspect -f '{{.State.Status}}' "$peer" 2>/dev/null) == exited ]] && break
    sleep 0.25
done
check "peer killed with the instance (exit 137) within $((SECONDS - t0)) s" \
    test "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$peer")" == "exited 137"
status=$("$AWS" ssm get-command-invocation --instance-id "$i1" --command-id "$cid" \
    --query '[Status, ResponseCode]' --output text 2>&1 || true)
printf 'smoke:      (the interrupted command now reads: %s)\n' "$status"

# ── 3. rtb-deadline ─────────────────────────────────────────────────────────────────────
launch
i2=$iid
wait_state "$i2" running 10
peer=rtb-job-$tag-deadline
send "$i2" "docker run -d --name $peer --network host --entrypoint sleep $RTB_WORLD_SUPPORT_IMAGE 1000" >/dev/null
# Arm far away, re-arm (replaces), cancel, then arm for real 3 s from now.
# (The pattern is assembled at run time so this script's own command line never matches.)
# shellcheck disable=SC2016 # expanded in the instance
out=$(wait_command "$i2" "$(send "$i2" 'p="sbin/rtb-deadline --w"; p="${p}ait"
waiters() {
  n=0
  for f in /proc/[0-9]*/cmdline; do
    case "$(tr "\0" " " <"$f" 2>/dev/null)" in *"$p"*) n=$((n + 1)) ;; esac
  done
  echo "waiters=$n"
}
rtb-deadline $(( $(date +%s) + 600 ))
at=$(( $(date +%s) + 900 ))
rtb-deadline $at
waiters
touch /run/rtb-deadline.fail
rtb-deadline $(( $(date +%s) + 1200 )) || echo "refused=$?"
rm -f /run/rtb-deadline.fail
waiters
rtb-deadline --status | grep -q "stops at $at\$" && echo "kept=$at"
rtb-deadline --cancel
waiters')")
printf '%s\n' "$out" | sed 's/^/smoke:      | /'
check "re-arming leaves one waiter, a refused re-arm (exit 1) keeps it, --cancel leaves none" \
    test "$(grep -o 'waiters=[0-9]*\|refused=[0-9]*\|kept=' <<<"$out" | tr '\n' ' ')" == \
    "waiters=1 refused=1 waiters=1 kept= waiters=0 "
t0=$SECONDS
# 8 s: under load the aws cli polls take seconds, and the instance must still be up when checked.
# shellcheck disable=SC2016 # expanded in the instance
out=$(wait_command "$i2" "$(send "$i2" 'rtb-deadline $(( $(date +%s) + 8 ))')")
check "rtb-deadline returned at once ($((SECONDS - t0)) s): $(head -n 1 <<<"$out" | tr '\t' ' ')" \
    grep -q '^Success[[:space:]]0' <<<"$out"
check "still running right after arming" test "$(state "$i2")" == running
if wait_state "$i2" terminated 20; then
    ok "instance $i2 terminated by its deadline $((SECONDS - t0)) s after arming (deadline +8 s)"
else
    bad "instance $i2 not terminated 20 s after arming (state $(state "$i2"))"
fi
for _ in $(seq 1 20); do
    [[ $(docker inspect -f '{{.State.Status}}' "$peer" 2>/dev/null) == exited ]] && break
    sleep 0.25
done
check "its peer was killed too" \
    test "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$peer")" == "exited 137"

if ((failures)); then
    echo "smoke: $failures check(s) failed" >&2
    exit 1
fi
echo "smoke: all checks passed"
