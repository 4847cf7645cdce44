#!/usr/bin/env bash
# After the tests: fail (and list them) if anything of the test world is still running:
# a container named ministack-ec2-* (an instance of this port's MiniStack) or rtb-job-*, an
# instance MiniStack reports pending/running/stopping (account 000000000000, the default,
# us-east-1), or a fault proxy (mitmdump running this checkout's tests/world/faults.py, other
# than the world's IAM proxies). No test may leave an instance or a proxy running.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
PORT=${RTB_WORLD_PORT:-45660}
ENDPOINT=http://127.0.0.1:$PORT
AWS=${RTB_WORLD_VENV:-$REPO/.world/venv}/bin/aws

found=0

while IFS='|' read -r name owner status; do
    case $name in
        ministack-ec2-*) [[ -z $owner || $owner == *":$PORT" ]] || continue ;;
        rtb-job-*) ;;
        *) continue ;;
    esac
    echo "leftover container: $name ($status)"
    found=1
done < <(docker ps --format '{{.Names}}|{{.Label "ministack.instance"}}|{{.Status}}')

# Fault proxies: each test's FaultProxy stops its mitmdump when dropped. The world's own
# IAM proxies (setup.sh, .world/iam-proxy-PORT.pid) run until teardown.sh: not leftovers.
addon=$REPO/tests/world/faults.py
world_proxies=" "
for f in "$REPO"/.world/iam-proxy-*.pid; do
    [[ -f $f ]] && world_proxies+="$(cat "$f" 2>/dev/null) "
done
for proc in /proc/[0-9]*; do
    [[ $world_proxies == *" ${proc#/proc/} "* ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
    case $cmd in
        *mitmdump*"$addon"*)
            echo "leftover fault proxy: pid ${proc#/proc/} ($cmd)"
            found=1 ;;
    esac
done

healthy() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "$ENDPOINT/_ministack/health" 2>/dev/null
    else
        "${AWS%/aws}/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$ENDPOINT/_ministack/health" 2>/dev/null
    fi
}

if ! healthy; then
    echo "leftovers: MiniStack not reachable on $ENDPOINT; instance check skipped" >&2
elif ! out=$(AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
    "$AWS" --endpoint-url "$ENDPOINT" --region us-east-1 ec2 describe-instances \
    --filters Name=instance-state-name,Values=pending,running,stopping \
    --query 'Reservations[].Instances[].[InstanceId, State.Name, ImageId]' --output text 2>&1); then
    echo "leftovers: DescribeInstances failed: $out" >&2
    found=1
elif [[ -n $out ]]; then
    while IFS=$'\t' read -r iid st ami; do
        echo "leftover instance: $iid ($st, $ami)"
    done <<<"$out"
    found=1
fi

if ((found)); then
    echo "leftovers: the tests left the above running (tests/world/teardown.sh removes them)" >&2
    exit 1
fi
echo "leftovers: none"
