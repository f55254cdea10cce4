#!/usr/bin/env bash
# The app's test command (CI runs it too): formatting, lints, then every test in `tests/`,
# which builds the app in-process on a temporary embedded store (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test "$@"
