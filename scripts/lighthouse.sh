#!/usr/bin/env bash
# Bench (not part of scripts/test.sh): Lighthouse 12.2.3 with Debian's Chromium on the pages of a
# generated app as its developer first sees it (dev mode, the dev outbox for sign-in): /,
# /auth/login, /notes and /user/ (signed in). Error pages are left to the layout test in
# tests/tests/e2e/browser.rs: Lighthouse refuses to audit a page answered with 4xx/5xx. Fails when a
# page scores below 95 (LIGHTHOUSE_MIN) in performance, accessibility or best practices.
# Uses the app the end-to-end tests build ($CARGO_TARGET_DIR/e2e/app, made by
# `cargo nextest run -p vibetuner-e2e -E 'test(/^browser::/)'`); Lighthouse is installed once under
# $CARGO_TARGET_DIR/lighthouse with --ignore-scripts (no browser download). Reports go to
# $CARGO_TARGET_DIR/lighthouse/reports.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$(pwd)/target}
app=$target/e2e/app
binary=$target/debug/e2e-shop
min=${LIGHTHOUSE_MIN:-95}
if [ ! -x "$binary" ] || [ ! -f "$app/assets/statics/css/bundle.css" ]; then
  echo "no generated app in $app: run \`cargo nextest run -p vibetuner-e2e -E 'test(/^browser::/)'\` first" >&2
  exit 2
fi
export CHROME_PATH=${CHROME_PATH:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROME_PATH" ]; then
  echo "no Chromium: apt-get install chromium (or set CHROME_PATH)" >&2
  exit 2
fi
tools=$target/lighthouse
lighthouse=$tools/node_modules/.bin/lighthouse
if [ ! -x "$lighthouse" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --ignore-scripts --loglevel=error lighthouse@12.2.3
fi
reports=$tools/reports
mkdir -p "$reports"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
data=$(mktemp -d)
jar=$data/cookies
log=$data/server.log
(cd "$app" && exec env -i PATH="$PATH" DATA_DIR="$data" \
  "$binary" serve --host 127.0.0.1 --port "$port" >"$log" 2>&1) &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -fsS "$base/health/ping" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/health/ping" >/dev/null || { cat "$log" >&2; exit 1; }

# A signed-in session for /user/ and /notes: ask for a link, read it from the outbox, confirm.
curl -fsS -c "$jar" -b "$jar" -o /dev/null -d email=lighthouse@example.com "$base/auth/magic-link-login"
link=$(curl -fsS "$base/_dev/outbox" | grep -oE '/auth/email-verify/[A-Za-z0-9_~.-]+' | head -n1)
[ -n "$link" ] || { echo "no sign-in link in the dev outbox" >&2; exit 1; }
curl -fsS -c "$jar" -b "$jar" -o /dev/null -X POST -d replace= "$base$link"
session=$(awk '$6 == "session" { print $7 }' "$jar")
[ -n "$session" ] || { echo "the sign-in gave no session cookie" >&2; exit 1; }

failed=0
run() { # name path [signed-in]
  local name=$1 path=$2 headers=()
  [ "${3:-}" = signed-in ] && headers=(--extra-headers "{\"Cookie\": \"session=$session\"}")
  "$lighthouse" "$base$path" --quiet --output=json --output-path="$reports/$name.json" \
    --only-categories=performance,accessibility,best-practices \
    --chrome-flags="--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage" \
    "${headers[@]}" || { echo "lighthouse failed on $path" >&2; failed=1; return; }
  local scores
  scores=$(node -e '
    const r = require(process.argv[1]);
    console.log(["performance", "accessibility", "best-practices"]
      .map((c) => `${c}=${Math.round(r.categories[c].score * 100)}`).join(" "));' "$reports/$name.json")
  echo "$path: $scores"
  for score in $scores; do
    if [ "${score#*=}" -lt "$min" ]; then
      echo "  below $min: ${score%=*} (see $reports/$name.json)" >&2
      failed=1
    fi
  done
}
run home /
run login /auth/login
run notes /notes signed-in
run profile /user/ signed-in
exit $failed
