#!/bin/bash
# ami/test-deadline.sh: run the AMI's deadline tooling under a real systemd, in a container.
#
# Boots systemd (Debian bookworm's, 252) in a container with no network (--network none), installs
# rtb-deadline, rtb-max-lifetime and rtb-max-lifetime.service as the AMI build does, serves a fake
# IMDSv2 on the container's own 127.0.0.1, and checks the contract run-render relies on:
#   - rtb-deadline EPOCH arms one timer at EPOCH, re-arming replaces it, --cancel disarms it
#   - a re-arm that systemd-run refuses exits 1 and leaves the earlier deadline armed, unchanged
#   - bad arguments exit 2; it returns at once
#   - rtb-max-lifetime.service arms the rtb:deadline tag's time, else boot + max lifetime, and
#     keeps a deadline armed earlier in the boot
#   - the client's user data line arms the deadline
#   - a due timer powers the machine off; a past EPOCH powers off at once
# In a container "power off" ends its systemd, which is what is checked.
#
# Needs Docker and a Debian bookworm image to build on (RTB_TEST_BASE_IMAGE, default
# rtb-world/base:bookworm); the test image (systemd, curl, python3) is built once and cached as
# rtb-ami-test/systemd:bookworm. Prints one line per check; exits non-zero on the first failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
base=${RTB_TEST_BASE_IMAGE:-rtb-world/base:bookworm}
image=rtb-ami-test/systemd:bookworm
port=8111
prefix=rtb-ami-test-$$

cleanup() { # the containers this run started (named ${prefix}-*), running or exited
    local ids
    ids=$(docker ps -aq --filter "name=^${prefix}-")
    if [ -n "${ids}" ]; then
        # shellcheck disable=SC2086 # one id per word
        docker rm -f ${ids} >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

fail() {
    echo "FAIL $*"
    exit 1
}
pass() { echo "ok   $*"; }

if ! docker image inspect "${image}" >/dev/null 2>&1; then
    docker image inspect "${base}" >/dev/null 2>&1 || fail "base image ${base} not found"
    printf '%s\n' \
        "FROM ${base}" \
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd systemd-sysv curl python3 && rm -rf /var/lib/apt/lists/*" \
        | DOCKER_BUILDKIT=0 docker build -q -t "${image}" - >/dev/null
fi

# A fake IMDSv2: PUT /latest/api/token, then GET .../tags/instance/<key> with the token header.
# The tag's value is read from /etc/fake-imds/<key> (absent: 404, as when there is no such tag).
fake_imds='
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body=b""):
        self.send_response(code); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_PUT(self):
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.reply(200, b"TOKEN") if ok else self.reply(400)
    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN":
            return self.reply(401)
        prefix = "/latest/meta-data/tags/instance/"
        key = self.path[len(prefix):] if self.path.startswith(prefix) else None
        path = os.path.join("/etc/fake-imds", key or "-")
        if key and os.path.isfile(path):
            return self.reply(200, open(path, "rb").read().strip())
        self.reply(404)
http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
'

start() { # start a systemd container, print its id
    local name=${prefix}-$1
    docker run -d --name "${name}" --network none \
        --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
        -v /sys/fs/cgroup:/sys/fs/cgroup:ro -e container=docker \
        -v "${here}/scripts:/src:ro" \
        "${image}" /lib/systemd/systemd >/dev/null
    local state
    for _ in $(seq 1 50); do
        state=$(docker exec "${name}" systemctl is-system-running 2>/dev/null || true)
        case "${state}" in running | degraded) break ;; esac
        sleep 0.2
    done
    case "${state}" in running | degraded) ;; *) fail "systemd did not start in ${name} (${state})" ;; esac
    docker exec -i "${name}" bash -s <<EOF
set -e
install -m 0755 /src/rtb-deadline /usr/local/sbin/rtb-deadline
install -m 0755 /src/rtb-max-lifetime /usr/local/sbin/rtb-max-lifetime
install -m 0644 /src/rtb-max-lifetime.service /etc/systemd/system/rtb-max-lifetime.service
install -d /etc/rtb-support /etc/fake-imds /etc/systemd/system/rtb-max-lifetime.service.d
printf '[Service]\nEnvironment=RTB_IMDS_ENDPOINT=http://127.0.0.1:${port} RTB_IMDS_ATTEMPTS=2\n' \
    > /etc/systemd/system/rtb-max-lifetime.service.d/test.conf
systemctl daemon-reload
EOF
    docker exec -d "${name}" python3 -c "${fake_imds//PORT/${port}}"
    echo "${name}"
}

cx() { docker exec "${c}" "$@"; }

armed() { # the epochs the armed rtb-deadline timers fire at, one per line, sorted
    local unit when
    for unit in $(cx systemctl list-units --type=timer --state=active --plain --no-legend \
        'rtb-deadline*' | awk '{ print $1 }'); do
        when=$(cx systemctl show -p NextElapseUSecRealtime --value "${unit}")
        date -u -d "${when}" +%s
    done | sort -n
}

armed_at() { # the epoch the one armed rtb-deadline timer fires at, "none", or "N timers: ..."
    local epochs n
    epochs=$(armed)
    n=$(printf '%s' "${epochs}" | grep -c .)
    case "${n}" in
        0) echo none ;;
        1) echo "${epochs}" ;;
        *) echo "${n} timers: $(printf '%s' "${epochs}" | tr '\n' ' ')" ;;
    esac
}

near() { # near A B: A is a number and |A - B| <= 2
    case "$1" in '' | *[!0-9]*) return 1 ;; esac
    local d=$(($1 - $2))
    [ "${d#-}" -le 2 ]
}

c=$(start a)
for _ in $(seq 1 50); do cx curl -fsS -o /dev/null -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 5' \
    "http://127.0.0.1:${port}/latest/api/token" 2>/dev/null && break; sleep 0.1; done
pass "systemd $(cx systemctl --version | head -n 1 | cut -d' ' -f2) up in a container without network"

# rtb-deadline: usage
for bad in "" abc -5 "1 2"; do
    code=0; cx rtb-deadline ${bad:+"$bad"} 2>/dev/null || code=$?
    [ "${code}" -eq 2 ] || fail "rtb-deadline '${bad}' exited ${code}, not 2"
done
code=0; cx rtb-deadline 1 2 2>/dev/null || code=$?
[ "${code}" -eq 2 ] || fail "rtb-deadline with two arguments exited ${code}"
pass "rtb-deadline: bad arguments exit 2"

# arm, re-arm, cancel
now=$(cx date +%s)
t0=$(date +%s%N)
cx rtb-deadline $((now + 600)) 2>/dev/null
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
near "$(armed_at)" $((now + 600)) || fail "armed at $(armed_at), wanted $((now + 600))"
cx rtb-deadline $((now + 1200)) 2>/dev/null
near "$(armed_at)" $((now + 1200)) || fail "re-armed at $(armed_at), wanted $((now + 1200))"
[ "$(cx systemctl list-timers --all --no-legend 'rtb-deadline*' | wc -l)" -eq 1 ] || fail "more than one rtb-deadline timer"
cx rtb-deadline $((now + 1200)) 2>/dev/null || fail "re-arming at the same EPOCH failed"
near "$(armed_at)" $((now + 1200)) || fail "re-armed at the same EPOCH: $(armed_at)"
cx rtb-deadline --cancel 2>/dev/null
[ "$(armed_at)" = none ] || fail "--cancel left the timer armed"
pass "rtb-deadline: arms at EPOCH (returned in ${elapsed_ms} ms), re-arming replaces, --cancel disarms"

# A re-arm that systemd refuses: a systemd-run that fails, earlier on rtb-deadline's PATH.
cx rtb-deadline $((now + 600)) 2>/dev/null
cx sh -c 'printf "#!/bin/sh\necho systemd-run: refused >&2\nexit 1\n" > /usr/local/bin/systemd-run && chmod 0755 /usr/local/bin/systemd-run'
code=0; cx rtb-deadline $((now + 1800)) 2>/dev/null || code=$?
cx rm -f /usr/local/bin/systemd-run
[ "${code}" -eq 1 ] || fail "rtb-deadline with a failing systemd-run exited ${code}, not 1"
near "$(armed_at)" $((now + 600)) || fail "a failed re-arm left $(armed_at), wanted the earlier $((now + 600))"
status=$(cx rtb-deadline --status 2>/dev/null)
grep -q 'rtb-deadline-' <<<"${status}" || fail "--status does not show the kept deadline: ${status}"
# ... and once systemd-run works again, re-arming still replaces: one timer, at the new time.
cx rtb-deadline $((now + 1800)) 2>/dev/null || fail "re-arming after the failure exited non-zero"
near "$(armed_at)" $((now + 1800)) || fail "re-armed after the failure: $(armed_at), wanted $((now + 1800))"
cx rtb-deadline --cancel 2>/dev/null
[ "$(armed_at)" = none ] || fail "--cancel left $(armed_at)"
pass "rtb-deadline: a re-arm systemd-run refuses exits 1 and keeps the earlier deadline; the next re-arm replaces it"

# rtb-max-lifetime.service: the tag
tag_epoch=$((now + 7200))
cx sh -c "date -u -d @${tag_epoch} +%Y-%m-%dT%H:%M:%SZ > '/etc/fake-imds/rtb:deadline'"
cx systemctl restart rtb-max-lifetime.service
near "$(armed_at)" "${tag_epoch}" || fail "max-lifetime armed $(armed_at), wanted the tag's ${tag_epoch}"
pass "rtb-max-lifetime.service: arms the rtb:deadline tag ($(cx cat '/etc/fake-imds/rtb:deadline'))"

# ... keeps a deadline armed earlier in this boot
cx rtb-deadline $((now + 900)) 2>/dev/null
cx systemctl restart rtb-max-lifetime.service
near "$(armed_at)" $((now + 900)) || fail "max-lifetime replaced an armed deadline"
pass "rtb-max-lifetime.service: keeps a deadline armed earlier in the boot"

# ... no tag, or a bad one: boot + max lifetime (the container shares the host's boot time, so the
# hours are chosen to land in the future)
# shellcheck disable=SC2016 # awk's $1, not the shell's
btime=$(cx awk '$1 == "btime" { print $2 }' /proc/stat)
hours=$(((now - btime) / 3600 + 2))
cx sh -c "echo RTB_MAX_LIFETIME_HOURS=${hours} > /etc/rtb-support/max-lifetime.env"
for tag in none "tomorrow" "2025-13-45T99:00:00Z"; do
    cx rtb-deadline --cancel 2>/dev/null
    if [ "${tag}" = none ]; then
        cx rm -f '/etc/fake-imds/rtb:deadline'
    else
        cx sh -c "echo '${tag}' > '/etc/fake-imds/rtb:deadline'"
    fi
    cx systemctl restart rtb-max-lifetime.service
    near "$(armed_at)" $((btime + hours * 3600)) || fail "tag '${tag}': armed $(armed_at), wanted boot + ${hours} h"
done
pass "rtb-max-lifetime.service: without a (valid) tag, boot + RTB_MAX_LIFETIME_HOURS"

# ... metadata service unreachable: still the floor
cx sh -c "mkdir -p /run/systemd/system/rtb-max-lifetime.service.d && printf '[Service]\nEnvironment=RTB_IMDS_ENDPOINT=http://127.0.0.1:9 RTB_IMDS_ATTEMPTS=2 RTB_IMDS_TIMEOUT=1\n' > /run/systemd/system/rtb-max-lifetime.service.d/zz.conf && systemctl daemon-reload"
cx rtb-deadline --cancel 2>/dev/null
cx systemctl restart rtb-max-lifetime.service
near "$(armed_at)" $((btime + hours * 3600)) || fail "without IMDS: armed $(armed_at)"
pass "rtb-max-lifetime.service: metadata service unreachable, boot + max lifetime"

# the client's user data, run as cloud-init runs it (/bin/sh, systemd's default PATH)
ud_epoch=$((now + 3000))
cx env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c \
    "command -v rtb-deadline >/dev/null 2>&1 && rtb-deadline ${ud_epoch} || shutdown -h +50" 2>/dev/null
near "$(armed_at)" "${ud_epoch}" || fail "user data armed $(armed_at), wanted ${ud_epoch}"
pass "user data line: 'command -v rtb-deadline ... && rtb-deadline EPOCH || shutdown -h +MINUTES' arms EPOCH"

# a due timer powers off
cx rtb-deadline $(($(cx date +%s) + 3)) 2>/dev/null
for _ in $(seq 1 40); do
    [ "$(docker inspect -f '{{.State.Running}}' "${c}")" = false ] && break
    sleep 0.5
done
[ "$(docker inspect -f '{{.State.Running}}' "${c}")" = false ] || fail "the timer did not power off within 20 s"
pass "rtb-deadline: the timer powered the machine off when due"

# a past EPOCH powers off at once
c=$(start b)
cx rtb-deadline 1 2>/dev/null || true
for _ in $(seq 1 20); do
    [ "$(docker inspect -f '{{.State.Running}}' "${c}")" = false ] && break
    sleep 0.5
done
[ "$(docker inspect -f '{{.State.Running}}' "${c}")" = false ] || fail "a past EPOCH did not power off within 10 s"
pass "rtb-deadline: a past EPOCH powers off at once"
