#!/usr/bin/env bash
# The test command: installs prerequisites, then formatting, lints and every test
# (unit, in-process, end to end with a generated app built and served over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prerequisites.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"
