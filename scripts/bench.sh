#!/usr/bin/env bash
# HTTP benchmark: a release build of a generated app against a bare axum baseline (wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prerequisites.sh --bench
cargo bench -p vibetuner-e2e --bench http
