#!/bin/bash
# /usr/local/sbin/rtb-deadline in the test "AMI" image (rtb-world/ami:test).
#
#   rtb-deadline EPOCH_SECONDS   stop this instance at EPOCH_SECONDS (Unix time)
#   rtb-deadline --status        print the armed deadline, if any
#   rtb-deadline --cancel        disarm the pending deadline, if any
#
# The emulator's analogue of an on-instance `shutdown -h now` with shutdown behaviour
# "terminate": at the deadline it sends TERM to PID 1 (docker's init, which MiniStack runs
# every instance container under), the container stops, and MiniStack reports the instance
# `terminated` on the next DescribeInstances. Peers started with the image's docker wrapper
# share the instance's PID namespace and are killed with it.
#
# The waiting happens in a detached session with stdio on /dev/null, so an SSM command that
# calls this returns at once. Arming again replaces the earlier deadline as the AMI's
# rtb-deadline does: the new waiter is started first, and the earlier one is stopped only once
# the new one runs. When arming fails the earlier deadline stays armed and the exit status is 1
# (callers then fall back to `shutdown -h +MINUTES`). Tests make arming fail on purpose with
# the file /run/rtb-deadline.fail: while it exists, `rtb-deadline EPOCH` exits 1 and changes
# nothing. Usage errors exit 2.
set -euo pipefail

pidfile=/run/rtb-deadline.pid
failfile=/run/rtb-deadline.fail
lock=/run/rtb-deadline.lock

usage() {
    echo "usage: rtb-deadline EPOCH_SECONDS | rtb-deadline --status | rtb-deadline --cancel" >&2
    exit 2
}

# The epoch the waiter PID waits for, if PID is one of our waiters.
waiter_epoch() {
    local args=()
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    mapfile -d '' -t args 2>/dev/null <"/proc/$1/cmdline" || return 1
    # bash SCRIPT --wait EPOCH: the waiter itself, not setsid about to exec it.
    ((${#args[@]} == 4)) && [[ ${args[0]} == *bash && ${args[1]} == *rtb-deadline* &&
        ${args[2]} == --wait ]] || return 1
    printf '%s\n' "${args[3]}"
}

# Stop a waiter (its whole session: the shell and its sleep).
stop_waiter() {
    if waiter_epoch "$1" >/dev/null; then
        kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
    fi
}

case ${1-} in
    --wait)
        # Internal: the detached waiter.
        [[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
        now=$(date +%s)
        if ((10#$2 > now)); then sleep $((10#$2 - now)); fi
        kill -TERM 1
        exit 0 ;;
    --status)
        [[ $# -eq 1 ]] || usage
        if epoch=$(waiter_epoch "$(cat "$pidfile" 2>/dev/null)"); then
            echo "rtb-deadline: instance stops at $epoch"
        else
            echo "rtb-deadline: no deadline armed"
        fi
        exit 0 ;;
    --cancel) [[ $# -eq 1 ]] || usage ;;
    *) [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || usage ;;
esac

# One change at a time (a second caller would stop the waiter the first one just started).
exec 9>>"$lock"
flock -w 30 9 || echo "rtb-deadline: could not lock $lock: going on without it" >&2
old=$(cat "$pidfile" 2>/dev/null || true)

if [[ $1 == --cancel ]]; then
    stop_waiter "$old"
    rm -f "$pidfile"
    echo "rtb-deadline: disarmed"
    exit 0
fi

epoch=$((10#$1))
if [[ -e $failfile ]]; then
    echo "rtb-deadline: arming refused ($failfile exists): the earlier deadline stays" >&2
    exit 1
fi
self=$(readlink -f "${BASH_SOURCE[0]}")
# A background job of a non-interactive shell is not a process-group leader, so setsid does
# not fork again: $! is the new session's id, which stop_waiter kills.
setsid "$self" --wait "$epoch" </dev/null >/dev/null 2>&1 9>&- &
new=$!
# Armed once the waiter runs (setsid exec'd this script); gone means arming failed.
for _ in $(seq 1 200); do
    waiter_epoch "$new" >/dev/null && break
    kill -0 "$new" 2>/dev/null || break
    sleep 0.01
done
if ! waiter_epoch "$new" >/dev/null; then
    kill -TERM "$new" 2>/dev/null || true
    echo "rtb-deadline: the waiter did not start: the earlier deadline stays" >&2
    exit 1
fi
echo "$new" >"$pidfile.tmp"
mv -f "$pidfile.tmp" "$pidfile"
[[ $old == "$new" ]] || stop_waiter "$old"
left=$((epoch - $(date +%s)))
echo "rtb-deadline: instance stops at $epoch (in $((left > 0 ? left : 0)) s)"
