#!/usr/bin/env bash
# HTTP benchmark: a release build of a generated app against a bare axum baseline (wrk), and
# the notes API on the embedded store and on MongoDB (SecantusDB, started here); then the jobs
# benchmark: task throughput on Redis and SSE fan-out to 1,000 subscribers (Redis started here).
#   scripts/bench.sh [--check]   (--check: exit 1 when an HTTP target is missed; the jobs bench
#                                 always fails on a lost SSE delivery or a task not run once)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prerequisites.sh --bench
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
cargo bench -p vibetuner-e2e --bench http -- "$@"
cargo bench -p vibetuner-e2e --bench jobs
