#!/usr/bin/env bash
# The project's single test command: installs what the tests need, then runs every test:
# the unit, integration and crash tests under nextest, then the doc examples (nextest does not
# run doctests). Arguments go to nextest (a filter, say); with any, the doc examples are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

status=0
# setup.sh installed the pinned cargo-nextest; its profile (.config/nextest.toml) bounds
# every test's time.
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
if [ $# -eq 0 ]; then
    cargo test --doc --workspace --no-fail-fast || status=$?
fi
exit "$status"
