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
# The framework with no optional feature (embedded store, in-process jobs and SSE, magic links),
# then with each optional feature on its own: every combination an app may choose compiles clean.
cargo clippy -p vibetuner --all-targets --no-default-features --locked -- -D warnings
for feature in mongodb redis oauth testing; do
  cargo clippy -p vibetuner --lib --no-default-features --features "$feature" --locked -- -D warnings
done
# The publish dry run: every crate packages and builds on its own (the CLI carries the template).
# Cargo treats the packaged crates like registry crates: it reuses their unpacked sources and
# compiled artifacts while the version stays the same, so both are removed first, and the dry run
# builds in a target folder of its own (its dependencies stay cached there).
package_target=target/package-check
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/vibetuner-* \
  "$package_target"/debug/.fingerprint/vibetuner* "$package_target"/debug/deps/*vibetuner* \
  "$package_target"/debug/build/vibetuner*
CARGO_TARGET_DIR=$package_target cargo package --workspace --locked --quiet
scripts/template-lock.sh --check
scripts/nix-check.sh
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
# Documentation examples compile (nextest does not run doctests).
cargo test --doc -p vibetuner --locked --quiet
cargo nextest run --workspace --locked --no-fail-fast "$@"
# The framework's unit and integration suites built without its optional features, as an app
# with `default-features = false` compiles it: the embedded store, store-backed sessions and
# tasks, in-process SSE and magic links (the MongoDB, Redis and OAuth tests are compiled out).
cargo nextest run -p vibetuner --no-default-features --locked --no-fail-fast "$@"
