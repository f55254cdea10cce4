# services.vibetuner: a vibetuner app (built with `vibetuner.lib.mkVibetunerApp`) as hardened
# systemd services: `instances` web servers on consecutive ports, workers, and optionally a local
# MongoDB and Redis it is wired to. Secrets reach the app as systemd credentials.
{ config, lib, pkgs, ... }:

let
  inherit (lib)
    attrNames
    filter
    getExe
    hasPrefix
    isBool
    literalExpression
    mapAttrs
    mapAttrsToList
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    nameValuePair
    optional
    optionalAttrs
    optionals
    range
    types
    ;

  cfg = config.services.vibetuner;
  redis = config.services.redis.servers.vibetuner;

  # Settings that hold secrets: they belong in `credentials` or `environmentFile`.
  isSecretName = name:
    name == "SESSION_KEY" || name == "SMTP_URL"
    || builtins.match ".*(SECRET|PASSWORD|TOKEN).*" name != null;

  renderValue = value: if isBool value then lib.boolToString value else toString value;

  environment =
    { DATA_DIR = "/var/lib/vibetuner"; }
    // mapAttrs (_: renderValue) cfg.settings
    // optionalAttrs cfg.mongodb.createLocally {
      MONGODB_URL = "mongodb://127.0.0.1:27017/${cfg.mongodb.database}";
    }
    // optionalAttrs cfg.redis.createLocally {
      REDIS_URL = "redis+unix://${redis.unixSocket}";
    };

  # Exports each systemd credential as the environment variable of the same name, then runs
  # the app; the values never enter the Nix store or the unit file.
  withCredentials = pkgs.writeShellScript "vibetuner-with-credentials" ''
    if [ -n "''${CREDENTIALS_DIRECTORY:-}" ]; then
      for file in "$CREDENTIALS_DIRECTORY"/*; do
        [ -f "$file" ] || continue
        export "''${file##*/}=$(< "$file")"
      done
    fi
    exec "$@"
  '';

  localUnits =
    optional cfg.mongodb.createLocally "mongodb.service"
    ++ optional cfg.redis.createLocally "redis-vibetuner.service";

  mkService = description: command: extraEnvironment: {
    inherit description;
    wantedBy = [ "vibetuner.target" ];
    partOf = [ "vibetuner.target" ];
    after = [ "network.target" ] ++ localUnits;
    requires = localUnits;
    environment = environment // extraEnvironment;

    serviceConfig = {
      Type = "notify";
      ExecStart = "${withCredentials} ${getExe cfg.package} ${command}";
      WatchdogSec = 60;
      Restart = "on-failure";
      RestartSec = 2;

      User = cfg.user;
      Group = cfg.group;
      SupplementaryGroups = optional cfg.redis.createLocally redis.group;
      StateDirectory = "vibetuner";
      StateDirectoryMode = "0750";
      WorkingDirectory = "/var/lib/vibetuner";
      # A DATA_DIR of one's own stays writable under ProtectSystem=strict.
      ReadWritePaths = optional (environment.DATA_DIR != "/var/lib/vibetuner") environment.DATA_DIR;
      EnvironmentFile = optional (cfg.environmentFile != null) cfg.environmentFile;
      LoadCredential = mapAttrsToList (name: path: "${name}:${toString path}") cfg.credentials;

      # Hardening
      AmbientCapabilities = "";
      CapabilityBoundingSet = "";
      DeviceAllow = "";
      DevicePolicy = "closed";
      LockPersonality = true;
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      PrivateDevices = true;
      PrivateMounts = true;
      PrivateTmp = true;
      ProcSubset = "pid";
      ProtectClock = true;
      ProtectControlGroups = true;
      ProtectHome = true;
      ProtectHostname = true;
      ProtectKernelLogs = true;
      ProtectKernelModules = true;
      ProtectKernelTunables = true;
      ProtectProc = "invisible";
      ProtectSystem = "strict";
      RemoveIPC = true;
      # AF_UNIX: the notify socket and the local Redis socket.
      RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      SystemCallArchitectures = "native";
      SystemCallErrorNumber = "EPERM";
      SystemCallFilter = [ "@system-service" "~@privileged" ];
      UMask = "0077";
    };
  };

  webServices = map
    (i: nameValuePair "vibetuner-web-${toString i}" (
      mkService "vibetuner app, instance ${toString i}" "serve" {
        HOST = cfg.host;
        PORT = toString (cfg.port + i - 1);
      }
    ))
    (range 1 cfg.instances);

  workerServices = optionals cfg.worker.enable (map
    (i: nameValuePair "vibetuner-worker-${toString i}" (
      mkService "vibetuner background worker ${toString i}" "worker" { }
    ))
    (range 1 cfg.worker.instances));

  secretSettings = filter isSecretName (attrNames cfg.settings);
  storeCredentials = filter (name: hasPrefix builtins.storeDir (toString cfg.credentials.${name}))
    (attrNames cfg.credentials);
  badCredentialNames = filter (name: builtins.match "[A-Za-z_][A-Za-z0-9_]*" name == null)
    (attrNames cfg.credentials);
in
{
  options.services.vibetuner = {
    enable = mkEnableOption "a vibetuner web app, its workers and (optionally) local MongoDB and Redis";

    package = mkOption {
      type = types.package;
      example = literalExpression "inputs.my-app.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = ''
        The app to run, built with `vibetuner.lib.mkVibetunerApp`; its `meta.mainProgram`
        is the binary with the `serve` and `worker` commands.
      '';
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address the web instances listen on (`HOST`).";
    };

    port = mkOption {
      type = types.port;
      default = 8000;
      description = ''
        Port of the first web instance (`PORT`); instance *n* listens on `port + n - 1`.
      '';
    };

    instances = mkOption {
      type = types.int;
      default = 1;
      example = 4;
      description = ''
        Number of web instances (`vibetuner-web-1` ...), on consecutive ports from `port`,
        to put behind a reverse proxy. Sessions, pub/sub and queues go through Redis.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the web instances' ports in the firewall.";
    };

    worker = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to run background workers (`<app> worker`).";
      };

      instances = mkOption {
        type = types.int;
        default = 1;
        description = "Number of worker processes (`vibetuner-worker-1` ...).";
      };
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = with types; attrsOf (oneOf [ bool int str ]);
        options = {
          ENVIRONMENT = mkOption {
            type = types.enum [ "dev" "prod" ];
            default = "prod";
            description = "`prod` requires a session key and turns on JSON logs and static caching.";
          };
          LOG_LEVEL = mkOption {
            type = types.str;
            default = "info";
            example = "debug,hyper=info";
            description = "Log filter (`tracing` env-filter syntax).";
          };
        };
      };
      default = { };
      example = { LOG_LEVEL = "debug"; MAX_BODY_SIZE = 10485760; };
      description = ''
        Settings passed to the app as environment variables (see the app's README). They
        end up in the world-readable Nix store: put secrets in `credentials` or
        `environmentFile`. `HOST` and `PORT` come from `host`/`port`, `DATA_DIR` defaults to
        the state directory, and `MONGODB_URL`/`REDIS_URL` are set by `createLocally`.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/vibetuner.env";
      description = "An environment file (`KEY=value` lines) read by every app and worker process.";
    };

    credentials = mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = {
        SESSION_KEY = "/run/secrets/vibetuner/session-key";
        SMTP_URL = "/run/secrets/vibetuner/smtp-url";
        GOOGLE_CLIENT_SECRET = "/run/secrets/vibetuner/google-client-secret";
      };
      description = ''
        Secrets as systemd credentials (`LoadCredential=`): each attribute is an environment
        variable and its value a file, outside the Nix store, holding the secret. The file is
        read by systemd when a process starts and exported to it; nothing is copied to the
        store. Typical names: `SESSION_KEY` (make one with `vibetuner crypto generate-key`),
        `SMTP_URL` (with its password), `<PROVIDER>_CLIENT_SECRET`.
      '';
    };

    user = mkOption {
      type = types.str;
      default = "vibetuner";
      description = "User the app runs as (created when left at the default).";
    };

    group = mkOption {
      type = types.str;
      default = "vibetuner";
      description = "Group the app runs as (created when left at the default).";
    };

    mongodb = {
      createLocally = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether to run MongoDB on this host (`services.mongodb` with `pkgs.mongodb-ce`,
          which is unfree: allow it in `nixpkgs.config`) and point `MONGODB_URL` at it.
        '';
      };

      database = mkOption {
        type = types.str;
        default = lib.getName cfg.package;
        defaultText = literalExpression "lib.getName config.services.vibetuner.package";
        description = "Database name in the local MongoDB.";
      };
    };

    redis.createLocally = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to run Redis on this host (`services.redis.servers.vibetuner`) and point
        `REDIS_URL` at its Unix socket.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.instances >= 1;
        message = "services.vibetuner.instances must be at least 1 (it is ${toString cfg.instances}).";
      }
      {
        assertion = cfg.port + cfg.instances - 1 <= 65535;
        message = "services.vibetuner: ${toString cfg.instances} instances from port ${toString cfg.port} go past port 65535; lower port or instances.";
      }
      {
        assertion = cfg.worker.enable -> cfg.worker.instances >= 1;
        message = "services.vibetuner.worker.instances must be at least 1 (it is ${toString cfg.worker.instances}); set worker.enable = false to run no worker.";
      }
      {
        assertion = cfg.settings.ENVIRONMENT == "prod" -> cfg.credentials ? SESSION_KEY || cfg.environmentFile != null;
        message = "services.vibetuner: ENVIRONMENT=prod needs a session key: set services.vibetuner.credentials.SESSION_KEY to a file holding one (make it with `vibetuner crypto generate-key`), or put SESSION_KEY in services.vibetuner.environmentFile.";
      }
      {
        assertion = cfg.settings.ENVIRONMENT == "prod" -> cfg.credentials ? SMTP_URL || cfg.settings ? SMTP_URL || cfg.environmentFile != null;
        message = "services.vibetuner: ENVIRONMENT=prod needs a mail transport for sign-in emails: set services.vibetuner.credentials.SMTP_URL to a file holding e.g. smtps://user:password@smtp.example.com:465, or put SMTP_URL in services.vibetuner.environmentFile.";
      }
      {
        assertion = !(cfg.settings ? HOST || cfg.settings ? PORT);
        message = "services.vibetuner.settings must not set HOST or PORT: use services.vibetuner.host and services.vibetuner.port.";
      }
      {
        assertion = cfg.mongodb.createLocally -> !(cfg.settings ? MONGODB_URL || cfg.credentials ? MONGODB_URL);
        message = "services.vibetuner: MONGODB_URL is given while mongodb.createLocally is true; set services.vibetuner.mongodb.createLocally = false to use your own MongoDB, or drop MONGODB_URL.";
      }
      {
        assertion = cfg.redis.createLocally -> !(cfg.settings ? REDIS_URL || cfg.credentials ? REDIS_URL);
        message = "services.vibetuner: REDIS_URL is given while redis.createLocally is true; set services.vibetuner.redis.createLocally = false to use your own Redis, or drop REDIS_URL.";
      }
      {
        assertion = badCredentialNames == [ ];
        message = "services.vibetuner.credentials: ${toString badCredentialNames} is not an environment variable name.";
      }
    ];

    warnings =
      map (name: "services.vibetuner.settings.${name} looks like a secret and ends up world-readable in the Nix store; use services.vibetuner.credentials.${name} (a file) instead.") secretSettings
      ++ map (name: "services.vibetuner.credentials.${name} is a file in the Nix store, which is world-readable; point it at a file outside the store.") storeCredentials;

    systemd.targets.vibetuner = {
      description = "vibetuner app, its instances and workers";
      wantedBy = [ "multi-user.target" ];
    };

    systemd.services = builtins.listToAttrs (webServices ++ workerServices);

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (range cfg.port (cfg.port + cfg.instances - 1));

    services.mongodb = mkIf cfg.mongodb.createLocally {
      enable = true;
      package = mkDefault pkgs.mongodb-ce;
    };

    services.redis.servers = mkIf cfg.redis.createLocally { vibetuner.enable = true; };

    users.users = optionalAttrs (cfg.user == "vibetuner") {
      vibetuner = {
        isSystemUser = true;
        inherit (cfg) group;
        home = "/var/lib/vibetuner";
        description = "vibetuner app";
      };
    };

    users.groups = optionalAttrs (cfg.group == "vibetuner") { vibetuner = { }; };
  };
}
