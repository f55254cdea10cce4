#!/usr/bin/env bash
# Fuzzing: runs every target of `vibetuner::fuzzing` under libFuzzer (cargo-fuzz) for a bounded
# time each, starting from the checked-in seeds in crates/vibetuner/fuzz/corpus/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 60 s each, every target)
# New interesting inputs go to a temporary corpus (the checked-in one is only read); a failing
# input is saved under crates/vibetuner/fuzz/artifacts/<target>/ and the script exits 1 with the
# command that reproduces it. Installs cargo-fuzz when missing; uses the nightly toolchain when
# rustup has one, else the stable compiler with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags).
# Not part of scripts/test.sh: the test suite runs each target over its seeds and generated inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safe_next headers store_filter request session sse)
case $secs in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
cd crates/vibetuner
status=0
for target in "${targets[@]}"; do
  [ -d "fuzz/corpus/$target" ] || { echo "no fuzz target $target (see crates/vibetuner/fuzz/fuzz_targets)" >&2; exit 2; }
  work=$(mktemp -d)
  echo "== $target: ${secs}s"
  log="$work.log"
  # No leak checks: the request and store targets keep one app for the whole run on purpose.
  rc=0
  ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" cargo "${toolchain[@]}" fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -timeout=30 -detect_leaks=0 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked at' "$log" || true
  if [ "$rc" -ne 0 ]; then
    grep -E -A3 'panicked at|ERROR: ' "$log" | head -n 20 >&2 || tail -n 30 "$log" >&2
    echo "!! $target failed (exit $rc); inputs in crates/vibetuner/fuzz/artifacts/$target/ reproduce it: (cd crates/vibetuner && cargo ${toolchain[*]} fuzz run $target fuzz/artifacts/$target/<file>)" >&2
    status=1
  fi
  echo "   corpus grew to $(find "$work" -type f | wc -l) new inputs"
  rm -rf "$work" "$log"
done
exit $status
