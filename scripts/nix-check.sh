#!/usr/bin/env bash
# Offline checks of the Nix side (no nixpkgs, no binary cache needed):
# every .nix file parses, deadnix and nixpkgs-fmt are clean, flake.lock agrees with flake.nix,
# `nix flake init -t` yields exactly templates/app, the input-free outputs evaluate, the
# devcontainers have what they need, the module's app and worker units rate an exposure of at
# most 2.0 in `systemd-analyze security --offline=true` (nix/tests/units/, rendered from the
# module), and with NIXPKGS_LIB the NixOS module evaluation test and a check that
# nix/tests/units/ is what the module renders today.
# Installs what is missing: nix-bin and systemd (apt), deadnix and nixpkgs-fmt (cargo install).
# Environment: NIXPKGS_LIB, a checkout of github:nix-community/nixpkgs.lib (or of nixpkgs);
# by default ../shared/nixpkgs.lib beside the checkout, when it is there.
# `nix flake check` runs the checks that need nixpkgs: builds, clippy, fmt, nextest, VM test.
#
#   scripts/nix-check.sh                 the checks
#   scripts/nix-check.sh --units DIR     only write every unit the module defines to DIR
#                                        (needs NIXPKGS_LIB; DIR=nix/tests/units refreshes them)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# nixpkgs' lib beside the checkout (../shared/nixpkgs.lib, as on the CI machines) unless given.
if [ -z "${NIXPKGS_LIB:-}" ] && [ -d "$root/../shared/nixpkgs.lib/lib" ]; then
  NIXPKGS_LIB=$(cd "$root/../shared/nixpkgs.lib" && pwd)
  export NIXPKGS_LIB
fi

# Writes the unit files of nix/tests/units.nix to $1.
render_units() {
  local dir=$1 json
  [ -n "${NIXPKGS_LIB:-}" ] || { echo "rendering units needs NIXPKGS_LIB (a checkout of github:nix-community/nixpkgs.lib)" >&2; return 1; }
  json=$(nix-instantiate --eval --strict --json --arg lib "import $NIXPKGS_LIB/lib" nix/tests/units.nix) || return 1
  mkdir -p "$dir"
  rm -f "$dir"/*.service
  python3 -c '
import json, os, sys
units = json.loads(sys.argv[2])
for name, text in units.items():
    with open(os.path.join(sys.argv[1], name), "w") as f:
        f.write(text)
print(f"wrote {len(units)} units to {sys.argv[1]}")
' "$dir" "$json"
}

if [ "${1:-}" = "--units" ]; then
  [ -n "${2:-}" ] || { echo "usage: scripts/nix-check.sh --units DIR" >&2; exit 2; }
  render_units "$2"
  exit
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "installing Nix (apt: nix-bin)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nix-bin >/dev/null
fi
# Flakes on, and no build users when the nixbld group does not exist (single-user use).
NIX_CONFIG="experimental-features = nix-command flakes${NIX_CONFIG:+
$NIX_CONFIG}"
getent group nixbld >/dev/null 2>&1 || NIX_CONFIG="$NIX_CONFIG
build-users-group ="
export NIX_CONFIG

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd-analyze (apt: systemd)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq systemd >/dev/null
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
for tool in deadnix nixpkgs-fmt; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "installing $tool (cargo install --locked)"
    cargo install --locked --quiet "$tool"
  fi
done

failures=()
step() {
  local name=$1
  shift
  if "$@"; then
    echo "ok: $name"
  else
    echo "FAILED: $name" >&2
    failures+=("$name")
  fi
}

mapfile -t nix_files < <(find . \( -name target -o -name node_modules -o -name .git -o -name result \) -prune \
  -o -name '*.nix' -type f -print | sort)

parse_all() {
  local f status=0
  for f in "${nix_files[@]}"; do
    nix-instantiate --parse "$f" >/dev/null || { echo "  does not parse: $f" >&2; status=1; }
  done
  return $status
}
step "${#nix_files[@]} .nix files parse" parse_all
step "deadnix --fail" deadnix --fail "${nix_files[@]}"
fmt_check() {
  local out
  out=$(nixpkgs-fmt --check "${nix_files[@]}" 2>&1) && return 0
  echo "$out" | sed 's/^/  /' >&2
  echo "  to fix: nixpkgs-fmt FILE... (or nix fmt)" >&2
  return 1
}
step "nixpkgs-fmt --check" fmt_check

step "flake.lock matches flake.nix" scripts/check-flake-lock.py .
if [ -f templates/app/flake.lock ]; then
  step "templates/app/flake.lock matches its flake.nix" scripts/check-flake-lock.py templates/app
else
  app_inputs() { nix-instantiate --eval --strict -E "(import $root/templates/app/flake.nix).inputs" >/dev/null; }
  step "templates/app/flake.nix inputs evaluate (no flake.lock shipped: written on first use)" app_inputs
fi

# The flake as a clone would have it (tracked and unignored files): `path:` copies the folder
# to the store, target/ included, so it is never pointed at the checkout itself.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 cp --no-dereference --parents -t "$tmp" --
  src="$tmp"
else
  src="$root"
fi

flake_init() {
  local template=$1 dir="$tmp/init-$1"
  mkdir -p "$dir"
  (cd "$dir" && nix flake init -t "path:$src#$template" >/dev/null 2>&1) &&
    diff -r "$src/templates/app" "$dir"
}
step "nix flake init -t path:...#app gives templates/app" flake_init app
step "nix flake init -t path:... (default) gives templates/app" flake_init default
step "input-free outputs evaluate offline (templates, nixosModules, overlays, lib)" \
  nix eval --impure --raw --expr "
    let f = builtins.getFlake \"path:$src\"; in
    assert builtins.attrNames f.templates == [ \"app\" \"default\" ];
    assert builtins.isFunction f.nixosModules.default && builtins.isFunction f.overlays.default;
    assert builtins.isFunction f.lib.mkVibetunerApp && builtins.isFunction f.lib.mkDevShell && builtins.isFunction f.lib.mkDevServices;
    \"\""

# `nix flake check` on the outputs that need no input (the rest needs nixpkgs): Nix's own
# schema checks of the overlay, the NixOS modules and the templates.
flake_check_offline() {
  mkdir -p "$tmp/probe"
  cat >"$tmp/probe/flake.nix" <<EOF
{
  outputs = _: {
    inherit (builtins.getFlake "path:$src") overlays nixosModules templates;
  };
}
EOF
  nix flake check --impure "path:$tmp/probe" 2>&1 | grep -v '^evaluating flake' >&2
  return "${PIPESTATUS[0]}"
}
step "nix flake check of overlays, nixosModules and templates" flake_check_offline

check_devcontainers() {
  python3 - .devcontainer/devcontainer.json templates/app/.devcontainer/devcontainer.json <<'EOF'
import json, os, sys
status = 0
for path in sys.argv[1:]:
    try:
        c = json.load(open(path))
        nix = c["features"]["ghcr.io/devcontainers/features/nix:1"]
        assert "flakes" in nix.get("extraNixConfig", ""), "nix feature without flakes in extraNixConfig"
        assert 8000 in c["forwardPorts"], "forwardPorts lacks 8000"
        extensions = c["customizations"]["vscode"]["extensions"]
        for wanted in ("rust-lang.rust-analyzer", "jnoortheen.nix-ide", "bradlc.vscode-tailwindcss"):
            assert wanted in extensions, f"extension {wanted} missing"
        assert "nix develop" in c["postCreateCommand"], "postCreateCommand does not build the dev shell"
        assert "direnv allow" in c["postCreateCommand"], "postCreateCommand does not allow .envrc"
        assert "mkhl.direnv" in extensions, "no direnv extension: the editor would run outside the dev shell"
        assert any("target=/nix" in m and "type=volume" in m for m in c["mounts"]), "/nix is on no named volume"
        assert "nix run .#services" in c["postStartCommand"], "postStartCommand does not start the dev services"
        envrc = os.path.join(os.path.dirname(os.path.dirname(path)), ".envrc")
        assert open(envrc).read().strip() == "use flake", f"{envrc} is not `use flake`"
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        print(f"  {path}: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
sys.exit(status)
EOF
}
step "devcontainers: nix feature, /nix volume, direnv (use flake) for terminals and editor, dev services, port 8000" check_devcontainers

# The hardening of every app and worker unit (the rendered units in nix/tests/units/).
units_security() {
  local unit out status=0
  for unit in nix/tests/units/*-web-*.service nix/tests/units/*-worker-*.service; do
    out=$(systemd-analyze security --offline=true --threshold=20 "$root/$unit" 2>&1) || status=1
    echo "  $(echo "$out" | grep -o 'Overall exposure level.*')"
  done
  for unit in nix/tests/units/*-mongodb.service; do
    out=$(systemd-analyze security --offline=true "$root/$unit" 2>&1) || true
    echo "  $(echo "$out" | grep -o 'Overall exposure level.*') (not bounded: mongod)"
  done
  return $status
}
step "systemd-analyze security: app and worker units at exposure <= 2.0" units_security

if [ -n "${NIXPKGS_LIB:-}" ]; then
  units_current() {
    render_units "$tmp/units" >/dev/null && diff -r nix/tests/units "$tmp/units" ||
      { echo "  nix/tests/units/ is stale: run scripts/nix-check.sh --units nix/tests/units" >&2; return 1; }
  }
  step "nix/tests/units/ is what the module renders" units_current
  module_eval() {
    local result
    result=$(nix-instantiate --eval --strict --arg lib "import $NIXPKGS_LIB/lib" nix/tests/module-eval.nix) &&
      echo "  $result"
  }
  step "NixOS module evaluation test (lib from $NIXPKGS_LIB)" module_eval
else
  echo "NIXPKGS_LIB not set: module evaluation test and unit rendering not run (set it to a checkout of github:nix-community/nixpkgs.lib; nix flake check runs both)"
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "nix-check: ${#failures[@]} failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "nix-check: all passed"
