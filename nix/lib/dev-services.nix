# `nix run .#services`: Redis and MongoDB for development, run by process-compose in the
# foreground (its terminal UI; `-t=false` for plain logs), data under the project's `.data/`
# (or $VIBETUNER_DATA), listening on loopback only. Point the app at them in `.env.local`:
#   MONGODB_URL=mongodb://127.0.0.1:27017/<app>   REDIS_URL=redis://127.0.0.1:6379
# MongoDB is unfree (mongodb-ce): pass `vibetuner.legacyPackages.<system>` (or a nixpkgs that
# allows it) as `pkgs`, or `mongodb = false` for Redis alone.
{ pkgs
, # Whether to run MongoDB (else the app uses its embedded store).
  mongodb ? true
, # Whether to run Redis (else sessions, pub/sub and the queue stay in-process).
  redis ? true
, redisPort ? 6379
, mongodbPort ? 27017
}:

let
  inherit (pkgs) lib;

  processes =
    lib.optionalAttrs redis
      {
        redis = {
          command = "${lib.getExe' pkgs.redis "redis-server"} --bind 127.0.0.1 --port ${toString redisPort} --dir \"$VIBETUNER_DATA/redis\" --save 60 1";
          readiness_probe.exec.command = "${lib.getExe' pkgs.redis "redis-cli"} -p ${toString redisPort} ping";
          shutdown.signal = 15;
        };
      }
    // lib.optionalAttrs mongodb {
      mongodb = {
        command = "${lib.getExe' pkgs.mongodb-ce "mongod"} --bind_ip 127.0.0.1 --port ${toString mongodbPort} --dbpath \"$VIBETUNER_DATA/mongodb\" --nounixsocket";
        readiness_probe.exec.command = "${lib.getExe pkgs.mongosh} --quiet --port ${toString mongodbPort} --eval 'db.runCommand({ ping: 1 }).ok'";
        shutdown.signal = 15;
      };
    };

  # JSON is YAML.
  config = pkgs.writeText "vibetuner-services.yaml" (builtins.toJSON {
    version = "0.5";
    inherit processes;
  });
in
pkgs.writeShellApplication {
  name = "vibetuner-services";
  runtimeInputs = [ pkgs.process-compose ];
  text = ''
    export VIBETUNER_DATA=''${VIBETUNER_DATA:-$PWD/.data}
    mkdir -p "$VIBETUNER_DATA/redis" "$VIBETUNER_DATA/mongodb"
    echo "data in $VIBETUNER_DATA; set in .env.local:"
    ${lib.optionalString mongodb ''echo "  MONGODB_URL=mongodb://127.0.0.1:${toString mongodbPort}/app"''}
    ${lib.optionalString redis ''echo "  REDIS_URL=redis://127.0.0.1:${toString redisPort}"''}
    exec process-compose up --config ${config} "$@"
  '';
}
