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
[ ${#targets[@]} -gt 0 ] || targets=(safe_next headers store_filter request)
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
  cargo "${toolchain[@]}" fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 >"$log" 2>&1 || true
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked at' "$log" || true
  if ! grep -q 'stat::number_of_executed_units' "$log"; then
    tail -n 30 "$log" >&2
    echo "!! $target did not finish its run (log above)" >&2
    status=1
  fi
  if ls "fuzz/artifacts/$target"/crash-* "fuzz/artifacts/$target"/timeout-* >/dev/null 2>&1; then
    echo "!! $target found a failing input: reproduce with (cd crates/vibetuner && cargo ${toolchain[*]} fuzz run $target fuzz/artifacts/$target/<file>)" >&2
    status=1
  fi
  echo "   corpus grew to $(find "$work" -type f | wc -l) new inputs"
  rm -rf "$work" "$log"
done
exit $status
