#!/usr/bin/env bash
# The test command: bring up the local test world (tests/world/setup.sh), run the whole
# workspace's tests against it, then fail if any test left an instance or a job container
# running (tests/world/leftovers.sh). Extra arguments go to the test runner, e.g.
#   tests/run.sh -E 'test(plan::)'        (cargo nextest filter)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
cd "$REPO"

bash tests/world/setup.sh
# shellcheck source=/dev/null
. .world/env

if [[ ${CI:-} == true ]]; then
    export NEXTEST_PROFILE=ci
fi

tests_rc=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" || tests_rc=$?
else
    echo "run: cargo-nextest not installed; falling back to cargo test" >&2
    cargo test --workspace --no-fail-fast "$@" || tests_rc=$?
fi

leftovers_rc=0
bash tests/world/leftovers.sh || leftovers_rc=$?

if ((tests_rc != 0)); then
    echo "run: tests failed (exit $tests_rc)" >&2
fi
if ((leftovers_rc != 0)); then
    echo "run: tests left instances or containers running" >&2
fi
if ((tests_rc != 0 || leftovers_rc != 0)); then
    exit 1
fi
echo "run: all tests passed, nothing left running"
