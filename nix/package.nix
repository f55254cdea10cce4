# The `vibetuner` CLI and the workspace checks, built with crane: the dependencies are built
# once (`cargoArtifacts`) and reused by the package, clippy and nextest.
{ lib, craneLib, pkgs }:

let
  src = import ./source.nix { inherit lib craneLib; };
  workspacePackage = (lib.importTOML ../Cargo.toml).workspace.package;

  commonArgs = {
    inherit src;
    pname = "vibetuner";
    inherit (workspacePackage) version;
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
        homepage = workspacePackage.repository;
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

  # The framework's suites that run in the build sandbox: built without the mongodb feature
  # (its tests are compiled out; mongod cannot start in the sandbox, which has no /sys), with
  # Redis on loopback. The MongoDB suites run in the VM test against mongod (`mongodbTests`).
  # (The end-to-end crate needs npm and the network: it runs in scripts/test.sh.)
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "-p vibetuner --no-default-features --features redis,oauth";
      partitions = 1;
      partitionType = "count";
      nativeCheckInputs = [ pkgs.redis ];
      preCheck = ''
        export HOME=$TMPDIR
        mkdir -p $TMPDIR/redis
        redis-server --bind 127.0.0.1 --port 6390 --dir $TMPDIR/redis --save "" --appendonly no \
          --daemonize yes --logfile $TMPDIR/redis.log
        export TEST_REDIS_URL=redis://127.0.0.1:6390
      '';
      postCheck = ''
        redis-cli -p 6390 shutdown nosave || true
      '';
    }
  );

  # The CLI's suites (generation, generators, update) in the sandbox.
  nextest-cli = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "-p vibetuner-cli";
      partitions = 1;
      partitionType = "count";
      preCheck = "export HOME=$TMPDIR";
    }
  );

  # The framework's test binaries with every feature, for the VM test to run the MongoDB suites
  # against mongod: `bin/` holds them (uncompressed, so their libraries stay in the closure) and
  # `workspace` names the folder they were built in, where they look for their fixtures.
  mongodbTests = craneLib.mkCargoDerivation (
    commonArgs
    // {
      inherit cargoArtifacts;
      pnameSuffix = "-mongodb-tests";
      doInstallCargoArtifacts = false;
      nativeBuildInputs = [ pkgs.jq ];
      buildPhaseCargoCommand = ''
        cargo test --locked -p vibetuner --no-run --message-format=json-render-diagnostics > build.json
        mkdir -p $out/bin
        jq -r 'select(.profile.test == true and .executable != null) | .executable' build.json |
          while read -r exe; do cp "$exe" "$out/bin/$(basename "$exe" | sed 's/-[0-9a-f]*$//')"; done
        pwd > $out/workspace
      '';
    }
  );
}
