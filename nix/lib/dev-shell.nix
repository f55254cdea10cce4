# The development shell shared by this repository and generated apps: the pinned toolchain
# (Rust with clippy, rustfmt and rust-analyzer, cargo-nextest, Node for the npm-pinned Tailwind,
# daisyUI and esbuild, bun, MongoDB, Redis, process-compose) and a one-screen summary printed on
# entry. Entering it builds nothing of the workspace: the `vibetuner` CLI is a package output
# (`nix run <vibetuner flake> -- ...`, or `cargo run -p vibetuner-cli` in this repository);
# pass it in `packages` to have it on PATH. MongoDB is unfree: pass
# `vibetuner.legacyPackages.<system>` (or a nixpkgs that allows `mongodb-ce`) as `pkgs`.
{ crane }:

{ pkgs
, # Printed when the shell starts.
  motd ? ""
, # More packages for the shell.
  packages ? [ ]
}:

let
  craneLib = crane.mkLib pkgs;
in
craneLib.devShell {
  packages = with pkgs; [
    rust-analyzer
    cargo-nextest
    nodejs
    bun
    mongodb-ce
    mongosh
    redis
    process-compose
  ] ++ packages;

  RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";

  shellHook = pkgs.lib.optionalString (motd != "") ''
    cat <<'EOF'
    ${motd}
    EOF
  '';
}
