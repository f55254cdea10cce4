#!/usr/bin/env bash
# Adversarial load (not in CI): the generated app in release and prod, with its default limits,
# attacked in turn by slow request bodies, slow readers, costly queries, a session flood and an
# SSE channel flood for SECONDS each (default 15), while a legitimate signed-in client reads its
# notes 20 times a second. Prints, per phase, the legitimate client's errors and p50/p99/max
# latency, what the attack got, RSS before/max/after and the sessions stored; exits 1 when a
# legitimate request failed or its p99 passed 100 ms.
#   scripts/attack.sh [SECONDS] [PHASE,...]   (phases: baseline, slow-bodies, slow-reads,
#                                              costly-queries, session-flood, channel-flood)
# The attacks open about 11,000 connections from 127.0.1.x addresses: the open-file limit is
# raised to its hard limit first (12,000 at least; the server and the attacker each hold up to 11,000).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-15} in '' | *[!0-9]*) echo "usage: scripts/attack.sh [SECONDS] [PHASE,...]" >&2; exit 2 ;; esac
scripts/prerequisites.sh --bench
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  echo "the open-file limit is $(ulimit -n); the attacks need about 12,000 per process (raise the hard limit)" >&2
  exit 2
fi
ATTACK_SECS=${1:-15} ATTACK_PHASES=${2:-baseline,slow-bodies,slow-reads,costly-queries,session-flood,channel-flood} \
  cargo bench -p vibetuner-e2e --bench attack
