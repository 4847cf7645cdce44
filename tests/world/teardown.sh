#!/usr/bin/env bash
# Stop the test world: MiniStack (when this checkout started it: .world/ministack.pid), moto
# (.world/moto.pid), the IAM proxies (.world/iam-proxy-PORT.pid), the
# instance containers MiniStack made for this port (ministack-ec2-*), the containers
# tests start (name rtb-job-*, or label rtb-world=1), and any fault proxy left running
# (mitmdump with this checkout's tests/world/faults.py). Idempotent.
#   teardown.sh           stop and remove
#   teardown.sh --purge   also remove the images ($RTB_WORLD_IMAGE_PREFIX, default rtb-world/*)
#                         and .world (venv included)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
WORLD=$REPO/.world
PORT=${RTB_WORLD_PORT:-45660}
PREFIX=${RTB_WORLD_IMAGE_PREFIX:-rtb-world}

say() { printf 'world: %s\n' "$*"; }

purge=false
case ${1-} in
    "") ;;
    --purge) purge=true ;;
    *)
        echo "usage: $0 [--purge]" >&2
        exit 2 ;;
esac

# MiniStack: TERM, then KILL after 10 s. It removes its own containers as it exits.
suffix=
[[ $PORT == 45660 ]] || suffix=-$PORT
pidfile=$WORLD/ministack$suffix.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if [[ $pid =~ ^[0-9]+$ ]] && grep -qa ministack "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        say "ministack killed (pid $pid did not stop within 10 s)"
    else
        say "ministack stopped (pid $pid)"
    fi
else
    say "ministack not running from this checkout"
fi
rm -f "$pidfile"

# moto (when this checkout started it: .world/moto.pid): TERM, then KILL after 10 s.
MOTO_PORT=${RTB_WORLD_MOTO_PORT:-45670}
suffix=
[[ $MOTO_PORT == 45670 ]] || suffix=-$MOTO_PORT
pidfile=$WORLD/moto$suffix.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if [[ $pid =~ ^[0-9]+$ ]] && grep -qa moto_server "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        say "moto killed (pid $pid did not stop within 10 s)"
    else
        say "moto stopped (pid $pid)"
    fi
else
    say "moto not running from this checkout"
fi
rm -f "$pidfile"

# The world's IAM proxies (setup.sh started them: .world/iam-proxy-PORT.pid).
for port in $((PORT + 2)) $((PORT + 3)); do
    pidfile=$WORLD/iam-proxy-$port.pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && grep -qa "$REPO/tests/world/iam.py" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        say "IAM proxy stopped (pid $pid, port $port)"
    fi
    rm -f "$pidfile" "$WORLD/iam-proxy-$port.stamp"
done

# Fault proxies a test left behind (each FaultProxy normally stops its own), by pid.
addon=$REPO/tests/world/faults.py
proxies=()
for proc in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
    case $cmd in *mitmdump*"$addon"*) proxies+=("${proc#/proc/}") ;; esac
done
if ((${#proxies[@]})); then
    kill -TERM "${proxies[@]}" 2>/dev/null || true
    say "stopped ${#proxies[@]} fault proxy process(es): ${proxies[*]}"
fi

# Containers. Instance containers carry MiniStack's label ministack.instance=<host>:<port>:
# only this port's are ours (another MiniStack on this engine keeps its instances).
if docker info >/dev/null 2>&1; then
    ids=()
    while IFS='|' read -r id name owner world; do
        case $name in
            ministack-ec2-*) [[ -z $owner || $owner == *":$PORT" ]] && ids+=("$id") ;;
            rtb-job-*) ids+=("$id") ;;
            *) [[ $world == 1 ]] && ids+=("$id") ;;
        esac
    done < <(docker ps -a --format \
        '{{.ID}}|{{.Names}}|{{.Label "ministack.instance"}}|{{.Label "rtb-world"}}')
    if ((${#ids[@]})); then
        docker rm -f "${ids[@]}" >/dev/null
        say "removed ${#ids[@]} container(s)"
    else
        say "no world containers left"
    fi
    if $purge; then
        mapfile -t images < <(docker images --format '{{.Repository}}:{{.Tag}}' "$PREFIX/*")
        if ((${#images[@]})); then
            docker rmi "${images[@]}" >/dev/null || say "some images are still in use"
            say "removed images: ${images[*]}"
        fi
    fi
else
    say "docker not reachable: containers left alone"
fi

if $purge; then
    rm -rf "$WORLD"
    say "removed $WORLD"
fi
