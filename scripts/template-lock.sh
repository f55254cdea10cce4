#!/usr/bin/env bash
# Writes templates/app/Cargo.lock: the workspace's Cargo.lock trimmed to what the app template
# needs, so a generated app pins the same dependency versions the framework is tested with.
# The framework's crates (vibetuner, vibetuner-macros) appear as source-less entries (the form a
# path dependency takes); a project depending on the git tag gets the tag's commit added to each
# on its first `cargo build`, and
# `nix build` (mkVibetunerApp) serves it from the flake input. Run it after Cargo.lock changes;
# the e2e test `generated_project_builds_with_plain_cargo` fails with a pointer here when the
# two drift apart.
# Usage: scripts/template-lock.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r templates/app/Cargo.toml templates/app/src "$tmp/"
[ -d templates/app/tests ] && cp -r templates/app/tests "$tmp/"
cp Cargo.lock "$tmp/Cargo.lock"
# The framework dependencies as `vibetuner new` from a checkout writes them (a path).
(cd "$tmp" && python3 "$root/nix/lib/use-framework-source.py" "$root/crates/vibetuner" \
  "$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$root/Cargo.toml")")
# Resolving (offline, from the copied lock) drops the workspace's other packages and adds the app.
(cd "$tmp" && cargo update --offline --workspace --quiet)

if [ "${1:-}" = "--check" ]; then
  if ! diff -u templates/app/Cargo.lock "$tmp/Cargo.lock"; then
    echo "templates/app/Cargo.lock is out of date: run scripts/template-lock.sh" >&2
    exit 1
  fi
else
  cp "$tmp/Cargo.lock" templates/app/Cargo.lock
  echo "wrote templates/app/Cargo.lock"
fi
