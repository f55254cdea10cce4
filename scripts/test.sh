#!/usr/bin/env bash
# The test command: installs prerequisites, starts the test services (Redis and a MongoDB
# wire-protocol server on free 127.0.0.1 ports), then formatting, lints, the publish dry run of
# both crates, templates/app/Cargo.lock against Cargo.lock, the offline Nix checks, the
# documentation examples and every test (unit, in-process on both store backends, end to end with
# a generated app).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prerequisites.sh --test
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The framework with no optional feature (embedded store, in-process jobs and SSE, magic links).
cargo clippy -p vibetuner --lib --no-default-features --locked -- -D warnings
# The publish dry run: both crates package and build on their own (the CLI carries the template).
cargo package --workspace --locked --quiet
scripts/template-lock.sh --check
scripts/nix-check.sh
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
# Documentation examples compile (nextest does not run doctests).
cargo test --doc -p vibetuner --locked --quiet
cargo nextest run --workspace --locked --no-fail-fast "$@"
