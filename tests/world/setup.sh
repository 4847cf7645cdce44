#!/usr/bin/env bash
# Bring up the local test world: system packages, a Python venv with MiniStack (and one with
# mitmproxy, for the fault proxy, and one with moto, for AWS Batch), the runner binary, the
# Docker images, MiniStack on 127.0.0.1:$RTB_WORLD_PORT, moto on 127.0.0.1:$RTB_WORLD_MOTO_PORT,
# and .world/env.
# Idempotent: every step checks first and does nothing when its result is already there.
# See tests/world/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
WORLD=$REPO/.world
VENV=$WORLD/venv
FAULTS_VENV=$WORLD/faults-venv
FAULTS_CONFDIR=$WORLD/mitmproxy
MOTO_VENV=$WORLD/moto-venv
BROWSER_VENV=$WORLD/browser-venv
PORT=${RTB_WORLD_PORT:-45660}
ENDPOINT=http://127.0.0.1:$PORT
MOTO_PORT=${RTB_WORLD_MOTO_PORT:-45670}
MOTO_URL=http://127.0.0.1:$MOTO_PORT
# The IAM-enforcing proxies (tests/world/iam.py + faults.py in one mitmdump), long-lived, one
# in front of MiniStack and one in front of moto. Instances reach AWS through the first.
IAM_PORT=$((PORT + 2))
IAM_URL=http://127.0.0.1:$IAM_PORT
MOTO_IAM_PORT=$((PORT + 3))
MOTO_IAM_URL=http://127.0.0.1:$MOTO_IAM_PORT

# RTB_WORLD_IMAGE_PREFIX gives a second, independent set of images (e.g. to try a cold setup
# on an engine whose rtb-world/* images others are using).
PREFIX=${RTB_WORLD_IMAGE_PREFIX:-rtb-world}
BASE_IMAGE=$PREFIX/base:bookworm
OCTAVE_IMAGE=$PREFIX/octave:bookworm
SUPPORT_IMAGE=$PREFIX/support:test
AMI_IMAGE=$PREFIX/ami:test

# What instance containers get (docker-run style flags, parsed by MiniStack): the host's
# Docker socket, so instances can start peer containers, and the endpoints/region, so the
# SDK and the CLI inside an instance talk to MiniStack (IMDS included) as they would to AWS,
# through the IAM-enforcing proxy. RTB_WORLD_IMDS_BY_INSTANCE: the AMI's docker wrapper gives
# each peer container the metadata endpoint $IAM_URL/_imds/<instance id>/, so the proxy knows
# which instance the credentials it hands out belong to (tests/world/iam.py).
EC2_FLAGS="-v /var/run/docker.sock:/var/run/docker.sock"
EC2_FLAGS+=" -e AWS_EC2_METADATA_SERVICE_ENDPOINT=$IAM_URL/"
EC2_FLAGS+=" -e AWS_ENDPOINT_URL=$IAM_URL"
EC2_FLAGS+=" -e RTB_WORLD_IMDS_BY_INSTANCE=$IAM_URL/_imds/"
EC2_FLAGS+=" -e AWS_REGION=us-east-1 -e AWS_DEFAULT_REGION=us-east-1"

# One line per step, with the seconds since setup started.
say() { printf 'world: %s [%ss]\n' "$*" "$SECONDS"; }
die() {
    printf 'world: ERROR: %s\n' "$*" >&2
    exit 1
}
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

tmp_paths=()
images_pid=
faults_pid=
moto_pid=
browser_pid=
cleanup() {
    local p
    # A failure here must not orphan the background jobs (the image build and its temp rootfs).
    if [[ -n $images_pid ]]; then wait "$images_pid" 2>/dev/null || true; fi
    if [[ -n $faults_pid ]]; then wait "$faults_pid" 2>/dev/null || true; fi
    if [[ -n $moto_pid ]]; then wait "$moto_pid" 2>/dev/null || true; fi
    if [[ -n $browser_pid ]]; then wait "$browser_pid" 2>/dev/null || true; fi
    for p in "${tmp_paths[@]}"; do
        if [[ -e $p ]]; then as_root rm -rf "$p" || true; fi
    done
    return 0
}
trap cleanup EXIT

[[ $PORT =~ ^[0-9]+$ ]] || die "RTB_WORLD_PORT must be a port number, not '$PORT'"
[[ $MOTO_PORT =~ ^[0-9]+$ ]] || die "RTB_WORLD_MOTO_PORT must be a port number, not '$MOTO_PORT'"
for p in "$IAM_PORT" "$MOTO_IAM_PORT"; do
    [[ $p != "$MOTO_PORT" ]] || die "RTB_WORLD_MOTO_PORT ($MOTO_PORT) collides with the IAM proxies' ports (RTB_WORLD_PORT+2, +3)"
done
mkdir -p "$WORLD"

# Images are shared by every checkout on this Docker engine: one setup at a time.
exec 9>"${TMPDIR:-/tmp}/rtb-world-setup.lock"
flock 9

# ── a. System packages (in the background job below, before the base image) ─────────────────
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }
# apt-get that waits for the dpkg lock instead of failing (the venv step may need apt too).
apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}
# chromium and chromium-driver: the browser test opens a batch's page in Debian's own browser
# (tests/report.rs, tests/world/browser.py); nothing downloads one at test time.
system_packages() {
    if have octave-cli && have debootstrap && have shellcheck && have chromium && have chromedriver; then
        say "system packages present (octave, debootstrap, shellcheck, chromium, chromedriver)"
        return
    fi
    say "installing system packages: octave debootstrap shellcheck chromium chromium-driver (1-3 min)"
    apt_get update -qq >"$WORLD/apt.log" 2>&1 ||
        { tail -n 30 "$WORLD/apt.log" >&2; die "apt-get update failed (log: $WORLD/apt.log)"; }
    apt_get install -y -qq --no-install-recommends octave debootstrap shellcheck \
        chromium chromium-driver \
        >>"$WORLD/apt.log" 2>&1 ||
        { tail -n 30 "$WORLD/apt.log" >&2; die "apt-get install failed (log: $WORLD/apt.log)"; }
    say "installed system packages"
}

# ── d. Docker images (base and Octave start now, in the background) ─────────────────────────
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
DOCKER_CLI=$(command -v docker)
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# The Debian mirror the host's apt uses for bookworm (one-line and deb822 sources), so the
# bootstrap works where only that mirror is reachable.
debian_mirror() {
    local f m=
    if [[ -n ${RTB_WORLD_DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "$RTB_WORLD_DEBIAN_MIRROR"
        return
    fi
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f && -z $m ]] || continue
        m=$(awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == "bookworm") { print $i; exit }
            }' "$f")
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f && -z $m ]] || continue
        m=$(awk 'BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; types = ""; enabled = "yes"
                for (k = 1; k <= NF; k++) {
                    l = $k
                    if (l ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l); uris = l }
                    else if (l ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", l); suites = " " l " " }
                    else if (l ~ /^Types:/) { sub(/^Types:[ \t]*/, "", l); types = " " l " " }
                    else if (l ~ /^Enabled:/) { sub(/^Enabled:[ \t]*/, "", l); enabled = l }
                }
                if (types ~ / deb / && suites ~ / bookworm / && enabled !~ /^[Nn]o/) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
    done
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

build_base() {
    local mirror rootfs
    if [[ -n $(image_id "$BASE_IMAGE") ]]; then
        say "image $BASE_IMAGE present"
        return
    fi
    mirror=$(debian_mirror)
    mirror=${mirror%/}
    say "bootstrapping $BASE_IMAGE from $mirror (~1 min)"
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/rtb-world-rootfs.XXXXXX")
    tmp_paths+=("$rootfs")
    as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
        >"$WORLD/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORLD/debootstrap.log" >&2; die "debootstrap failed (log: $WORLD/debootstrap.log)"; }
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs/etc/hostname"
    as_root tar -C "$rootfs" -c . |
        docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$rootfs"
    say "imported $BASE_IMAGE"
}

# Octave: slow (~1.5 min), so built only when missing or when its recipe (the Dockerfile and
# the base image it starts from) changed.
build_octave() {
    local recipe have_recipe old
    recipe=$( (cat "$here/images/octave.Dockerfile"; image_id "$BASE_IMAGE") | sha256sum | cut -c1-16)
    have_recipe=$(docker image inspect -f '{{index .Config.Labels "rtb-world.recipe"}}' \
        "$OCTAVE_IMAGE" 2>/dev/null || true)
    if [[ $have_recipe == "$recipe" ]]; then
        say "image $OCTAVE_IMAGE present"
        return
    fi
    say "building $OCTAVE_IMAGE (~1.5 min)"
    old=$(image_id "$OCTAVE_IMAGE")
    docker build --network host --label "rtb-world.recipe=$recipe" -t "$OCTAVE_IMAGE" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" - <"$here/images/octave.Dockerfile" >"$WORLD/build-octave.log" 2>&1 ||
        { tail -n 30 "$WORLD/build-octave.log" >&2; die "building $OCTAVE_IMAGE failed (log: $WORLD/build-octave.log)"; }
    [[ -z $old || $old == "$(image_id "$OCTAVE_IMAGE")" ]] || docker rmi "$old" >/dev/null 2>&1 || true
    say "built $OCTAVE_IMAGE"
}

# System packages, then the base and Octave images (network and disk bound, minutes when
# cold), in the background while the venv and the runner (CPU bound) are made.
(
    trap cleanup EXIT # its own copy of tmp_paths (the rootfs)
    system_packages
    build_base
    build_octave
) &
images_pid=$!

# ── b. Python venvs: MiniStack, docker-py, awscli, s5cmd; and mitmproxy for the fault proxy ──
PY=
python_for_venvs() {
    [[ -z $PY ]] || return 0
    PY=$(command -v python3.11 || command -v python3) || die "python3 not found"
    if ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for ensurepip.
        apt_get update -qq >/dev/null
        apt_get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
}

# make_venv DIR REQUIREMENTS PROGRAM: (re)made when PROGRAM is missing or REQUIREMENTS changed.
make_venv() {
    local dir=$1 req=$2 prog=$3 stamp want
    stamp=$dir/.rtb-world-requirements.sha256
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [[ -x $dir/bin/$prog && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        say "venv up to date ($dir)"
        return
    fi
    say "creating venv $dir"
    python_for_venvs
    "$PY" -m venv "$dir" || die "python -m venv $dir failed"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
        >"$dir.pip.log" 2>&1 ||
        { tail -n 30 "$dir.pip.log" >&2; die "pip install -r $req failed (log: $dir.pip.log)"; }
    printf '%s\n' "$want" >"$stamp"
    say "installed $(basename "$req") into $dir"
}

make_venv "$VENV" "$here/requirements.txt" ministack

# The fault proxy's venv (mitmproxy's pins conflict with MiniStack's) and its CA, made once so
# each proxy a test starts reads it instead of generating a key (~0.7 s). In the background:
# pip is network bound, the runner's build below is CPU bound.
(
    trap - EXIT
    make_venv "$FAULTS_VENV" "$here/faults-requirements.txt" mitmdump
    if [[ ! -s $FAULTS_CONFDIR/mitmproxy-ca.pem ]]; then
        rm -rf "$FAULTS_CONFDIR.tmp"
        "$FAULTS_VENV/bin/python" -c 'import sys
from mitmproxy import certs
certs.CertStore.from_store(sys.argv[1], "mitmproxy", 2048)' "$FAULTS_CONFDIR.tmp" ||
            die "making the fault proxy's CA in $FAULTS_CONFDIR failed"
        rm -rf "$FAULTS_CONFDIR"
        mv "$FAULTS_CONFDIR.tmp" "$FAULTS_CONFDIR"
    fi
) &
faults_pid=$!

# moto's venv (its boto3/botocore pins differ from MiniStack's awscli), in the background too.
(
    trap - EXIT
    make_venv "$MOTO_VENV" "$here/moto-requirements.txt" moto_server
) &
moto_pid=$!

# Selenium's venv, for the browser test (it drives the system's chromium), in the background.
(
    trap - EXIT
    make_venv "$BROWSER_VENV" "$here/browser-requirements.txt" python
    "$BROWSER_VENV/bin/python" -c 'import selenium' ||
        die "selenium does not import in $BROWSER_VENV"
) &
browser_pid=$!

# ── c. The job runner ───────────────────────────────────────────────────────────────────────
# One build of the whole workspace: the demo, the tests and the runner image all use these
# artifacts, and building a single package would unify the SDK's features differently and
# compile it again. A cold build takes minutes, so its progress is shown every 20 s.
cargo_log=$WORLD/cargo-build.log
(cd "$REPO" && cargo build --workspace --bins --color never >"$cargo_log" 2>&1) &
cargo_pid=$!
total=$(grep -c '^name = ' "$REPO/Cargo.lock" || echo '?')
while kill -0 "$cargo_pid" 2>/dev/null; do
    for _ in $(seq 20); do kill -0 "$cargo_pid" 2>/dev/null && sleep 1; done
    kill -0 "$cargo_pid" 2>/dev/null || break
    done_n=$(grep -c '^ *Compiling ' "$cargo_log" || true)
    now=$(grep '^ *Compiling ' "$cargo_log" | tail -n 1 | awk '{print $2}')
    if [[ $done_n -gt 0 ]]; then
        say "building the Rust workspace: ${done_n} of at most ${total} crates started, now ${now:-?} (cold: about 9 min on 2 cores)"
    fi
done
wait "$cargo_pid" || { tail -n 20 "$cargo_log" >&2; die "cargo build --workspace failed (log: $cargo_log)"; }
target_dir=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
RUNNER=$target_dir/debug/rtb-job
[[ -x $RUNNER ]] || die "$RUNNER missing after cargo build"
say "built $RUNNER"

# ── d. Docker images, continued ─────────────────────────────────────────────────────────────
wait "$images_pid" || die "system packages or base images failed (see above)"
images_pid=

# Put a file into a build context: a hard link when possible (no copy of a big binary).
stage() { ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

# build IMAGE DOCKERFILE CONTEXT [BUILD-ARG...]: rebuilt every run (the layer cache makes that
# cheap); the image it replaces is removed when nothing uses it any more.
build() {
    local image=$1 dockerfile=$2 ctx=$3 old a
    local args=()
    for a in "${@:4}"; do args+=(--build-arg "$a"); done
    old=$(image_id "$image")
    cp "$dockerfile" "$ctx/Dockerfile"
    docker build --network host -q "${args[@]}" -t "$image" "$ctx" >"$WORLD/build.log" 2>&1 ||
        { cat "$WORLD/build.log" >&2; die "building $image failed"; }
    if [[ -z $old ]]; then
        say "built $image (new)"
    elif [[ $old != "$(image_id "$image")" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
        say "built $image (changed)"
    else
        say "built $image (unchanged)"
    fi
}

ctx=$(mktemp -d "$WORLD/build-support.XXXXXX")
tmp_paths+=("$ctx")
stage "$DOCKER_CLI" "$ctx/docker"
stage "$RUNNER" "$ctx/rtb-job"
build "$SUPPORT_IMAGE" "$here/images/support.Dockerfile" "$ctx" "OCTAVE_IMAGE=$OCTAVE_IMAGE"

ctx=$(mktemp -d "$WORLD/build-ami.XXXXXX")
tmp_paths+=("$ctx")
stage "$DOCKER_CLI" "$ctx/docker"
install -m 0755 "$here/images/ami/docker-wrapper.sh" "$ctx/docker-wrapper.sh"
install -m 0755 "$here/images/ami/rtb-deadline.sh" "$ctx/rtb-deadline.sh"
build "$AMI_IMAGE" "$here/images/ami.Dockerfile" "$ctx" "BASE_IMAGE=$BASE_IMAGE"

# ── e. MiniStack ────────────────────────────────────────────────────────────────────────────
healthy() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "$ENDPOINT/_ministack/health" 2>/dev/null
    else
        "$VENV/bin/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$ENDPOINT/_ministack/health" 2>/dev/null
    fi
}

# .world/ministack.{pid,log} for the default port, .world/ministack-PORT.{pid,log} for others.
suffix=
[[ $PORT == 45660 ]] || suffix=-$PORT
pidfile=$WORLD/ministack$suffix.pid
logfile=$WORLD/ministack$suffix.log
if healthy; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/environ ]]; then
        if ! tr '\0' '\n' <"/proc/$pid/environ" | grep -qxF "EC2_DOCKER_FLAGS=$EC2_FLAGS"; then
            say "WARNING: the running MiniStack (pid $pid) has other settings;" \
                "restart it: tests/world/teardown.sh && tests/world/setup.sh"
        fi
        say "ministack already up on 127.0.0.1:$PORT (pid $pid)"
    else
        say "ministack already up on 127.0.0.1:$PORT (not started by this checkout)"
    fi
else
    say "starting ministack on 127.0.0.1:$PORT"
    (
        cd "$WORLD"
        export BIND_HOST=127.0.0.1 GATEWAY_PORT=$PORT DOCKER_NETWORK=host EC2_DOCKER_FLAGS=$EC2_FLAGS
        nohup setsid "$VENV/bin/ministack" </dev/null >>"$logfile" 2>&1 9>&- &
        echo "$!" >"$pidfile"
    )
    pid=$(cat "$pidfile")
    for _ in $(seq 1 60); do
        healthy && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! healthy; then
        tail -n 30 "$logfile" >&2
        die "ministack did not become healthy on 127.0.0.1:$PORT (log: $logfile)"
    fi
    say "ministack up on 127.0.0.1:$PORT (pid $pid, log $logfile)"
fi

wait "$faults_pid" || die "the fault proxy's venv failed (see above)"
faults_pid=

# ── e2. moto: AWS Batch that runs each job as a real container (docker-py) from a local image,
# on the host network so a job reaches MiniStack and moto at 127.0.0.1. Its S3 holds the Batch
# tests' manifests and outputs. .world/moto.{pid,log} for the default port, moto-PORT.* else.
wait "$moto_pid" || die "moto's venv failed (see above)"
moto_pid=
wait "$browser_pid" || die "the browser test's venv failed (see above)"
browser_pid=
moto_healthy() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "$MOTO_URL/moto-api/" 2>/dev/null
    else
        "$VENV/bin/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$MOTO_URL/moto-api/" 2>/dev/null
    fi
}
suffix=
[[ $MOTO_PORT == 45670 ]] || suffix=-$MOTO_PORT
moto_pidfile=$WORLD/moto$suffix.pid
moto_logfile=$WORLD/moto$suffix.log
# moto runs through tests/world/moto_server.py (AWS Batch's array cascade and where a job ran,
# as AWS documents them).
# One of this checkout's started before that is restarted; another's is left alone.
moto_pid_now=$(cat "$moto_pidfile" 2>/dev/null || true)
moto_cmd_now=
if [[ -n $moto_pid_now ]] && [[ -r /proc/$moto_pid_now/cmdline ]]; then
    moto_cmd_now=$(tr '\0' ' ' <"/proc/$moto_pid_now/cmdline")
fi
# One that runs an older moto_server.py of this checkout is restarted too (stamp beside it).
moto_stampfile=$WORLD/moto$suffix.stamp
moto_stamp=$(sha256sum "$here/moto_server.py" | cut -c1-16)
moto_stale=
if [[ $moto_cmd_now == *"$here/moto_server.py -H 127.0.0.1 -p $MOTO_PORT"* ]] &&
    [[ $(cat "$moto_stampfile" 2>/dev/null || true) != "$moto_stamp" ]]; then
    moto_stale=1
fi
if moto_healthy && { [[ $moto_cmd_now == *"bin/moto_server -H 127.0.0.1 -p $MOTO_PORT "* ]] ||
    [[ -n $moto_stale ]]; }; then
    say "moto on 127.0.0.1:$MOTO_PORT (pid $moto_pid_now) runs without this tests/world/moto_server.py: restarting it"
    kill "$moto_pid_now" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$moto_pid_now" 2>/dev/null || break
        sleep 0.25
    done
fi
if moto_healthy; then
    say "moto already up on 127.0.0.1:$MOTO_PORT (pid $(cat "$moto_pidfile" 2>/dev/null || echo '?'))"
else
    say "starting moto on 127.0.0.1:$MOTO_PORT"
    (
        cd "$WORLD"
        export MOTO_DOCKER_NETWORK_MODE=host MOTO_PORT
        nohup setsid "$MOTO_VENV/bin/python" "$here/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" \
            </dev/null >>"$moto_logfile" 2>&1 9>&- &
        echo "$!" >"$moto_pidfile"
    )
    echo "$moto_stamp" >"$moto_stampfile"
    pid=$(cat "$moto_pidfile")
    for _ in $(seq 1 60); do
        moto_healthy && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! moto_healthy; then
        tail -n 30 "$moto_logfile" >&2
        die "moto did not answer on 127.0.0.1:$MOTO_PORT (log: $moto_logfile)"
    fi
    say "moto up on 127.0.0.1:$MOTO_PORT (pid $pid, log $moto_logfile)"
fi

# ── e3. The IAM-enforcing proxies: mitmdump with iam.py then faults.py, long-lived (until
# teardown.sh), in front of MiniStack and of moto. Restarted when their addons changed (the
# running one would keep the old evaluator). Tests register their principals with them
# (crates/rtb-testkit's IamScope); calls with other keys pass unevaluated.
iam_stamp=$(cat "$here/iam.py" "$here/iam_policy.py" "$here/iam_context.py" "$here/faults.py" |
    sha256sum | cut -c1-16)
iam_ping() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/_iam/ping" 2>/dev/null
    else
        "$VENV/bin/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "http://127.0.0.1:$1/_iam/ping" 2>/dev/null
    fi
}
# The pid of this checkout's IAM proxy on PORT, found by its command line (a pidfile alone can
# be stale).
our_iam_proxy() {
    local proc cmd
    for proc in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
        case $cmd in
            *mitmdump*"--listen-port $1 "*"$here/iam.py"*) echo "${proc#/proc/}"; return ;;
        esac
    done
}
# Up when it answers one of a few pings (a loaded machine can be slow to answer one).
iam_up() {
    local _
    for _ in 1 2 3 4 5; do
        iam_ping "$1" && return 0
        sleep 1
    done
    return 1
}
# start_iam_proxy LISTEN_PORT UPSTREAM WHAT
start_iam_proxy() {
    local port=$1 upstream=$2 what=$3 pidfile logfile stampfile pid
    pidfile=$WORLD/iam-proxy-$port.pid
    logfile=$WORLD/iam-proxy-$port.log
    stampfile=$WORLD/iam-proxy-$port.stamp
    pid=$(our_iam_proxy "$port")
    if [[ -n $pid ]]; then
        echo "$pid" >"$pidfile"
        if [[ $(cat "$stampfile" 2>/dev/null) == "$iam_stamp" ]] && iam_up "$port"; then
            say "IAM proxy in front of $what up on 127.0.0.1:$port (pid $pid)"
            return
        fi
        say "restarting the IAM proxy on 127.0.0.1:$port (its addons changed, or it did not answer)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    elif iam_ping "$port"; then
        say "WARNING: 127.0.0.1:$port answers as an IAM proxy not started by this checkout"
        return
    fi
    say "starting the IAM proxy in front of $what on 127.0.0.1:$port"
    (
        cd "$WORLD"
        export RTB_FAULTS_KEEP_CALLS=20000
        nohup setsid "$FAULTS_VENV/bin/mitmdump" -q --mode "reverse:$upstream" \
            --listen-host 127.0.0.1 --listen-port "$port" \
            --set connection_strategy=lazy --set keep_host_header=true \
            --set "confdir=$FAULTS_CONFDIR" -s "$here/iam.py" -s "$here/faults.py" \
            </dev/null >>"$logfile" 2>&1 9>&- &
        echo "$!" >"$pidfile"
    )
    pid=$(cat "$pidfile")
    for _ in $(seq 1 120); do
        iam_ping "$port" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! iam_up "$port"; then
        tail -n 30 "$logfile" >&2
        die "the IAM proxy did not answer on 127.0.0.1:$port (log: $logfile)"
    fi
    printf '%s\n' "$iam_stamp" >"$stampfile"
    say "IAM proxy up on 127.0.0.1:$port (pid $pid, log $logfile)"
}
start_iam_proxy "$IAM_PORT" "$ENDPOINT" MiniStack
start_iam_proxy "$MOTO_IAM_PORT" "$MOTO_URL" moto

# ── f. The env file ─────────────────────────────────────────────────────────────────────────
cat >"$WORLD/env.tmp" <<EOF
# Written by tests/world/setup.sh: source it to talk to the test world.
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export RTB_WORLD_PORT=$PORT
export RTB_WORLD_AMI_IMAGE=$AMI_IMAGE
export RTB_WORLD_SUPPORT_IMAGE=$SUPPORT_IMAGE
export RTB_WORLD_VENV=$VENV
# The fault-injection proxy (tests/world/faults.py; crates/rtb-testkit starts it).
export RTB_WORLD_MITMDUMP=$FAULTS_VENV/bin/mitmdump
export RTB_WORLD_FAULTS_CONFDIR=$FAULTS_CONFDIR
# moto (AWS Batch with real containers; tests/aws_batch.rs). Not AWS_ENDPOINT_URL: point a
# client at it explicitly.
export RTB_WORLD_MOTO_URL=$MOTO_URL
# The IAM-enforcing proxies (tests/world/iam.py; crates/rtb-testkit's IamScope registers
# principals with them): in front of MiniStack (instances use it too) and in front of moto.
export RTB_WORLD_IAM_URL=$IAM_URL
export RTB_WORLD_MOTO_IAM_URL=$MOTO_IAM_URL
# The browser test (tests/report.rs): Selenium's python, and Debian's chromium and driver.
export RTB_WORLD_BROWSER_PYTHON=$BROWSER_VENV/bin/python
export RTB_WORLD_CHROMIUM=$(command -v chromium || echo /usr/bin/chromium)
export RTB_WORLD_CHROMEDRIVER=$(command -v chromedriver || echo /usr/bin/chromedriver)
# The venv's bin goes last: aws and s5cmd resolve, the system python is not shadowed.
case ":\$PATH:" in
    *":$VENV/bin:"*) ;;
    *) export PATH="\$PATH:$VENV/bin" ;;
esac
EOF
mv "$WORLD/env.tmp" "$WORLD/env"
say "wrote $WORLD/env"
