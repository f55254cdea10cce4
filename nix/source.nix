# The workspace source for crane: the Rust sources plus the files the crates embed at compile
# time (framework templates and statics, the project template `vibetuner new` renders, through
# the CLI crate's links to it, and its generators' templates), and the files a test keeps in
# step with the settings registry (README.md, nix/settings.json).
{ lib, craneLib }:

let
  root = ../.;
in
lib.fileset.toSource {
  inherit root;
  fileset = lib.fileset.unions [
    (craneLib.fileset.commonCargoSources root)
    ../crates/vibetuner/templates
    ../crates/vibetuner/statics
    ../crates/vibetuner/tests/fixture
    ../crates/vibetuner/tests/second-wire-server.txt
    ../templates
    ../crates/vibetuner-cli/template
    ../crates/vibetuner-cli/generators
    ../README.md
    ../nix/settings.json
  ];
}
