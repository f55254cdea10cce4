#!/usr/bin/env bash
# Soak benchmark (not in CI): the generated app in release and prod on the embedded store under a
# mixed load (home page, notes list, read, create + delete) at 80% of its measured peak for
# SECONDS (default 600), reporting steps/s, errors, p99 and RSS every 30 s and RSS at start, end
# and max. Exits 1 if any request failed.
#   scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-600} in '' | *[!0-9]*) echo "usage: scripts/soak.sh [SECONDS]" >&2; exit 2 ;; esac
scripts/prerequisites.sh --bench
SOAK_SECS=${1:-600} cargo bench -p vibetuner-e2e --bench soak
