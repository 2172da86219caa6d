#!/usr/bin/env bash
# The project's single test command: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# setup.sh installed the pinned cargo-nextest; its profile (.config/nextest.toml) bounds
# every test's time.
cargo nextest run --workspace --no-fail-fast "$@"
