# The `vibetuner` CLI and the workspace checks, built with crane: the dependencies are built
# once (`cargoArtifacts`) and reused by the package, clippy and nextest.
{ lib, craneLib }:

let
  src = import ./source.nix { inherit lib craneLib; };

  commonArgs = {
    inherit src;
    pname = "vibetuner";
    inherit ((lib.importTOML ../Cargo.toml).workspace.package) version;
    strictDeps = true;
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;
in
{
  inherit src cargoArtifacts;

  vibetuner = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoExtraArgs = "--locked -p vibetuner-cli";
      # Tests run in the nextest check.
      doCheck = false;
      meta = {
        description = "Generate and manage vibetuner web apps";
        homepage = "https://github.com/alltuner/vibetuner-rs";
        license = lib.licenses.mit;
        mainProgram = "vibetuner";
      };
    }
  );

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
    }
  );

  fmt = craneLib.cargoFmt { inherit src; pname = "vibetuner"; };

  # Only the framework and CLI crates: the end-to-end crate needs npm and the network.
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "-p vibetuner -p vibetuner-cli";
      partitions = 1;
      partitionType = "count";
    }
  );
}
