#!/usr/bin/env bash
# Instructions per request (not run in CI): the generated app (release, prod, embedded store) and
# bare axum baselines under valgrind's callgrind, a fixed number of requests to /health/ping, /,
# the notes list and a note by id; prints instructions per request, the ratio to the like-for-like
# baseline and each profile's top functions, and writes tests/benches/instructions.txt (committed,
# so a change that moves the figures shows in review). Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prerequisites.sh --bench
cargo bench -p vibetuner-e2e --bench instructions
