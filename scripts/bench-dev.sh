#!/usr/bin/env bash
# Developer-loop benchmark (not run in CI): on a generated project under `vibetuner dev`, the
# median time from a template edit to the page served again, a CSS bundle write to the `css`
# live-reload event, a Rust handler edit to the new response, and `vibetuner new` to the first
# 200 from `vibetuner dev` with a warm cargo cache. `--cold` also measures the last one into an
# empty target directory (the cargo registry stays cached; takes minutes). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dev profile: the figures measure the processes it drives, not this binary.
cargo bench --profile dev -p vibetuner-e2e --bench dev_loop -- "$@"
