#!/usr/bin/env bash
# The main demo: installs what is missing (scripts/setup.sh), then starts an embedded 3-broker
# broker-sim cluster and runs the exactly-once word-count application on it end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo run --quiet -p moldau-examples --bin word-count
