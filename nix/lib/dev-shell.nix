# The development shell shared by this repository and generated apps: the pinned toolchain
# (Rust with clippy, rustfmt and rust-analyzer, cargo-nextest, Tailwind 4, esbuild, bun, Node,
# MongoDB, Redis, the vibetuner CLI) and a one-screen summary printed on entry. MongoDB is unfree:
# pass `vibetuner.legacyPackages.<system>` (or a nixpkgs that allows `mongodb-ce`) as `pkgs`.
{ crane }:

{ pkgs
, # Printed when the shell starts.
  motd ? ""
, # More packages for the shell.
  packages ? [ ]
}:

let
  craneLib = crane.mkLib pkgs;
  inherit (import ../package.nix { inherit (pkgs) lib; inherit craneLib; }) vibetuner;
in
craneLib.devShell {
  packages = with pkgs; [
    rust-analyzer
    cargo-nextest
    tailwindcss_4
    esbuild
    bun
    nodejs
    mongodb-ce
    mongosh
    redis
  ] ++ [ vibetuner ] ++ packages;

  RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";

  shellHook = pkgs.lib.optionalString (motd != "") ''
    cat <<'EOF'
    ${motd}
    EOF
  '';
}
