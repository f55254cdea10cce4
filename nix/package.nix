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

  # The framework and CLI crates, their MongoDB and Redis suites included: the check starts a
  # Redis and a mongod on loopback in the build sandbox. (The end-to-end crate needs npm and the
  # network: it runs in scripts/test.sh.)
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "-p vibetuner -p vibetuner-cli";
      partitions = 1;
      partitionType = "count";
      nativeCheckInputs = [ pkgs.redis pkgs.mongodb-ce ];
      preCheck = ''
        export HOME=$TMPDIR
        mkdir -p $TMPDIR/redis $TMPDIR/mongodb
        redis-server --bind 127.0.0.1 --port 6390 --dir $TMPDIR/redis --save "" --appendonly no \
          --daemonize yes --logfile $TMPDIR/redis.log
        mongod --bind_ip 127.0.0.1 --port 27018 --dbpath $TMPDIR/mongodb --nounixsocket \
          --fork --logpath $TMPDIR/mongod.log
        export TEST_REDIS_URL=redis://127.0.0.1:6390 TEST_MONGODB_URL=mongodb://127.0.0.1:27018
      '';
      postCheck = ''
        redis-cli -p 6390 shutdown nosave || true
        mongod --dbpath $TMPDIR/mongodb --shutdown || true
      '';
    }
  );
}
