#!/bin/bash
# /usr/local/sbin/rtb-deadline in the test "AMI" image (rtb-world/ami:test).
#
#   rtb-deadline EPOCH_SECONDS   stop this instance at EPOCH_SECONDS (Unix time)
#   rtb-deadline --cancel        disarm the pending deadline, if any
#
# The emulator's analogue of an on-instance `shutdown -h now` with shutdown behaviour
# "terminate": at the deadline it sends TERM to PID 1 (docker's init, which MiniStack runs
# every instance container under), the container stops, and MiniStack reports the instance
# `terminated` on the next DescribeInstances. Peers started with the image's docker wrapper
# share the instance's PID namespace and are killed with it.
#
# The waiting happens in a detached session with stdio on /dev/null, so an SSM command that
# calls this returns at once. Arming again replaces the earlier deadline.
set -euo pipefail

pidfile=/run/rtb-deadline.pid

usage() {
    echo "usage: rtb-deadline EPOCH_SECONDS | rtb-deadline --cancel" >&2
    exit 2
}

# Stop the waiter an earlier call started (its whole session: the shell and its sleep).
cancel_previous() {
    local old
    old=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $old =~ ^[0-9]+$ ]] && grep -qa rtb-deadline "/proc/$old/cmdline" 2>/dev/null; then
        kill -TERM -- "-$old" 2>/dev/null || kill -TERM "$old" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case ${1-} in
    --cancel)
        [[ $# -eq 1 ]] || usage
        cancel_previous
        echo "rtb-deadline: disarmed" ;;
    --wait)
        # Internal: the detached waiter.
        [[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
        now=$(date +%s)
        if ((10#$2 > now)); then sleep $((10#$2 - now)); fi
        kill -TERM 1 ;;
    *)
        [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || usage
        epoch=$((10#$1))
        cancel_previous
        self=$(readlink -f "${BASH_SOURCE[0]}")
        # A background job of a non-interactive shell is not a process-group leader, so
        # setsid does not fork again: $! is the new session's id, which --cancel kills.
        setsid "$self" --wait "$epoch" </dev/null >/dev/null 2>&1 &
        echo "$!" >"$pidfile"
        left=$((epoch - $(date +%s)))
        echo "rtb-deadline: instance stops at $epoch (in $((left > 0 ? left : 0)) s)" ;;
esac
