#!/usr/bin/env bash
# Installs what vibetuner needs on a Debian machine, skipping what is there.
#   scripts/prerequisites.sh           the main job (scripts/demo.sh): Rust (expected already:
#                                      rustup) and Node.js with npm
#   scripts/prerequisites.sh --test    also the test tools (scripts/test.sh): cargo-nextest, Nix
#                                      (nix-bin), Redis, SecantusDB, aiosmtpd, Chromium +
#                                      chromedriver
#   scripts/prerequisites.sh --bench   the test tools, wrk and valgrind (the bench scripts)
set -euo pipefail
mode=${1:-}
case "$mode" in
  "" | --test | --bench) ;;
  *) echo "usage: scripts/prerequisites.sh [--test | --bench]" >&2; exit 2 ;;
esac

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${VIBETUNER_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export VIBETUNER_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust first: https://rustup.rs (then open a new shell)" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing Node.js and npm (apt)"
  apt_install nodejs npm
fi
[ -n "$mode" ] || exit 0

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest from crates.io"
  cargo install --locked cargo-nextest
fi
if ! command -v nix >/dev/null 2>&1; then
  # The e2e test comparing `nix flake init` with `vibetuner new` runs nix (offline).
  echo "installing Nix (apt: nix-bin)"
  apt_install nix-bin
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing Redis (apt: redis-server)"
  apt_install redis-server
fi
# No MongoDB binary is packaged for Debian; SecantusDB speaks MongoDB's wire protocol. Pinned:
# the MongoDB suites' results are this version's.
secantus=0.7.0b3
if ! command -v secantusd-py >/dev/null 2>&1 ||
  [ "$(pip3 show SecantusDB 2>/dev/null | sed -n 's/^Version: //p')" != "$secantus" ]; then
  echo "installing SecantusDB $secantus, a MongoDB wire-protocol server (pip)"
  command -v pip3 >/dev/null 2>&1 || apt_install python3-pip
  pip3 install --quiet "SecantusDB==$secantus" ||
    pip3 install --quiet --break-system-packages "SecantusDB==$secantus"
fi
# A second, independent wire-protocol server (NeoSQLite's nx-27017), pinned: the store's
# random-query test records where it disagrees (crates/vibetuner/tests/second-wire-server.txt).
nx=0.8.1
if ! command -v nx-27017 >/dev/null 2>&1 ||
  [ "$(pip3 show nx-27017 2>/dev/null | sed -n 's/^Version: //p')" != "$nx" ]; then
  echo "installing nx-27017 $nx, a second MongoDB wire-protocol server (pip)"
  command -v pip3 >/dev/null 2>&1 || apt_install python3-pip
  pip3 install --quiet "nx-27017==$nx" ||
    pip3 install --quiet --break-system-packages "nx-27017==$nx"
fi
# A real SMTP server for the mail tests (crates/vibetuner/tests/integration/mail.rs), pinned,
# and openssl to make its test certificate.
command -v openssl >/dev/null 2>&1 || apt_install openssl
aiosmtpd=1.4.6
if ! python3 -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$aiosmtpd')" 2>/dev/null; then
  echo "installing aiosmtpd $aiosmtpd, an SMTP server (pip)"
  command -v pip3 >/dev/null 2>&1 || apt_install python3-pip
  pip3 install --quiet "aiosmtpd==$aiosmtpd" ||
    pip3 install --quiet --break-system-packages "aiosmtpd==$aiosmtpd"
fi
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  # The browser test signs in through a real headless Chromium driven over WebDriver.
  echo "installing Chromium and its WebDriver (apt: chromium chromium-driver)"
  apt_install chromium chromium-driver
fi
if [ "$mode" = "--bench" ] && ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (apt)"
  apt_install wrk
fi
if [ "$mode" = "--bench" ] && ! command -v valgrind >/dev/null 2>&1; then
  echo "installing valgrind (apt), for instruction counts (scripts/bench-instructions.sh)"
  apt_install valgrind
fi
