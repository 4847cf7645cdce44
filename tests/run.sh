#!/usr/bin/env bash
# The test command: bring up the local test world (tests/world/setup.sh), check the deployable
# parts (tests/deployables.sh), run the whole workspace's tests against the world, then fail if any test left an instance or a job container
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

# The deployable parts (IAM policies, Dockerfile lint and build, Packer template, workflow).
# In CI the tools are installed and the production image is built and run (~4 min cold).
deploy_rc=0
if [[ ${CI:-} == true ]]; then
    RTB_INSTALL_TOOLS=${RTB_INSTALL_TOOLS:-1} RTB_BUILD_PROD_IMAGE=${RTB_BUILD_PROD_IMAGE:-1} \
        bash tests/deployables.sh || deploy_rc=$?
else
    bash tests/deployables.sh || deploy_rc=$?
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

if ((deploy_rc != 0)); then
    echo "run: deployables checks failed (exit $deploy_rc)" >&2
fi
if ((tests_rc != 0)); then
    echo "run: tests failed (exit $tests_rc)" >&2
fi
if ((leftovers_rc != 0)); then
    echo "run: tests left instances or containers running" >&2
fi
if ((deploy_rc != 0 || tests_rc != 0 || leftovers_rc != 0)); then
    exit 1
fi
echo "run: all tests passed, nothing left running"
