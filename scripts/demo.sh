#!/usr/bin/env bash
# The main job: builds the CLI, generates a demo app, builds its CSS/JS bundle and serves it
# on http://127.0.0.1:8000 with no external service. Ctrl-C stops it.
# Environment: DEMO_DIR (default target/demo), PORT (default 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# Only what the main job needs (Rust, npm): test tools come with scripts/test.sh.
scripts/prerequisites.sh

demo=${DEMO_DIR:-$root/target/demo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --quiet -p vibetuner-cli
if [ -f "$demo/vibetuner.toml" ]; then
  echo "reusing the demo app in $demo (delete it to generate a fresh one)"
else
  "$CARGO_TARGET_DIR/debug/vibetuner" new "$demo" --defaults --data project_name="Vibetuner Demo" </dev/null
fi
cd "$demo"
cargo build --offline --quiet
npm install --no-audit --no-fund --prefer-offline --loglevel=error
npm run --silent build
exec "$CARGO_TARGET_DIR/debug/vibetuner-demo" serve --host 127.0.0.1 --port "${PORT:-8000}"
