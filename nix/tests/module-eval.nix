# Evaluates nix/modules/vibetuner.nix with several configurations, against stub declarations of
# the NixOS options it sets, and checks the resulting units, firewall, databases, assertions and
# warnings. Needs only nixpkgs' `lib`; the result is a summary string, a failed check throws with
# its name.
#
#   nix-instantiate --eval --strict --arg lib 'import <nixpkgs.lib checkout>/lib' nix/tests/module-eval.nix
#   (scripts/nix-check.sh does this when NIXPKGS_LIB is set; `nix flake check` runs it too.)
{ lib }:

let
  inherit (lib) mkOption types;

  # The few `pkgs` attributes the module uses, as derivation-like values.
  fakeDrv = name: extra: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  } // extra;

  pkgs = {
    mongodb-ce = fakeDrv "mongodb-ce-8.0.0" { };
    writeShellScript = name: _text: "/nix/store/00000000000000000000000000000000-${name}";
  };

  app = fakeDrv "app-0.1.0" {
    pname = "app";
    version = "0.1.0";
    meta.mainProgram = "app";
  };

  # Stand-ins for the NixOS options the module reads and sets.
  freeform = types.submodule { freeformType = types.attrsOf types.anything; };
  stubs = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      systemd.services = mkOption { type = types.attrsOf freeform; default = { }; };
      systemd.targets = mkOption { type = types.attrsOf freeform; default = { }; };
      users.users = mkOption { type = types.attrsOf freeform; default = { }; };
      users.groups = mkOption { type = types.attrsOf freeform; default = { }; };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      services.mongodb = mkOption { type = freeform; default = { }; };
      # As nixpkgs' redis.nix: per-server user, group and socket.
      services.redis.servers = mkOption {
        default = { };
        type = types.attrsOf (types.submodule ({ name, config, ... }: {
          freeformType = types.attrsOf types.anything;
          options = {
            enable = mkOption { type = types.bool; default = false; };
            user = mkOption { type = types.str; default = "redis-${name}"; };
            group = mkOption { type = types.str; default = config.user; };
            unixSocket = mkOption { type = types.str; default = "/run/redis-${name}/redis.sock"; };
          };
        }));
      };
    };
  };

  eval = settings: (lib.evalModules {
    modules = [
      stubs
      ../modules/vibetuner.nix
      { _module.args.pkgs = pkgs; }
      settings
    ];
  }).config;

  withApp = extra: lib.recursiveUpdate
    {
      services.vibetuner = {
        enable = true;
        package = app;
        credentials.SESSION_KEY = "/run/secrets/session-key";
        credentials.SMTP_URL = "/run/secrets/smtp-url";
      };
    }
    extra;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # A check: its name and whether it holds; `eq` shows both sides when it does not.
  check = name: ok: { inherit name ok; detail = ""; };
  eq = name: actual: expected: {
    inherit name;
    ok = actual == expected;
    detail = "\n  expected: ${builtins.toJSON expected}\n  actual:   ${builtins.toJSON actual}";
  };
  hasMessage = name: config: fragment: {
    inherit name;
    ok = lib.any (lib.hasInfix fragment) (failedAssertions config);
    detail = "\n  no failed assertion mentions: ${fragment}\n  failed: ${builtins.toJSON (failedAssertions config)}";
  };

  # 1. Defaults: one web instance, one worker, local MongoDB and Redis.
  default = eval (withApp { });
  web = default.systemd.services.vibetuner-web-1;
  worker = default.systemd.services.vibetuner-worker-1;
  wrapper = "/nix/store/00000000000000000000000000000000-vibetuner-with-credentials";

  # 2. Scale-out: three instances from port 9000 on all addresses, two workers, firewall open.
  scaled = eval (withApp {
    services.vibetuner = {
      host = "0.0.0.0";
      port = 9000;
      instances = 3;
      openFirewall = true;
      worker.instances = 2;
    };
  });

  # 3. Own databases, no worker, development mode without a session key, extra settings.
  external = eval {
    services.vibetuner = {
      enable = true;
      package = app;
      mongodb.createLocally = false;
      redis.createLocally = false;
      worker.enable = false;
      environmentFile = "/run/secrets/vibetuner.env";
      settings = {
        ENVIRONMENT = "dev";
        MONGODB_URL = "mongodb://db.internal:27017/shop";
        REDIS_URL = "redis://cache.internal:6379/0";
        DEBUG = true;
        MAX_BODY_SIZE = 1048576;
        DATA_DIR = "/srv/shop";
      };
    };
  };

  # 4. Contradictions that must fail with a readable message.
  noInstances = eval (withApp { services.vibetuner.instances = 0; });
  noWorkers = eval (withApp { services.vibetuner.worker.instances = 0; });
  pastLastPort = eval (withApp { services.vibetuner = { port = 65535; instances = 2; }; });
  prodWithoutKey = eval {
    services.vibetuner = { enable = true; package = app; };
  };
  prodWithoutMail = eval {
    services.vibetuner = { enable = true; package = app; credentials.SESSION_KEY = "/run/secrets/session-key"; };
  };
  urlWithLocalDb = eval (withApp { services.vibetuner.settings.MONGODB_URL = "mongodb://elsewhere/x"; });
  urlWithLocalRedis = eval (withApp { services.vibetuner.credentials.REDIS_URL = "/run/secrets/redis-url"; });
  hostInSettings = eval (withApp { services.vibetuner.settings.PORT = 1234; });
  badCredential = eval (withApp { services.vibetuner.credentials."SMTP-URL" = "/run/secrets/smtp"; });

  # 5. Secrets in the store: warnings.
  leaky = eval (withApp {
    services.vibetuner = {
      settings.OAUTH_GITHUB_CLIENT_SECRET = "hunter2";
      credentials.SMTP_URL = "/nix/store/00000000000000000000000000000000-smtp-url";
    };
  });

  disabled = eval { services.vibetuner.package = app; };

  checks = [
    (eq "defaults: no failed assertion" (failedAssertions default) [ ])
    (eq "defaults: no warning" default.warnings [ ])
    (eq "defaults: units" (lib.attrNames default.systemd.services) [ "vibetuner-web-1" "vibetuner-worker-1" ])
    (eq "web: ExecStart runs serve through the credentials wrapper" web.serviceConfig.ExecStart
      "${wrapper} ${app}/bin/app serve")
    (eq "worker: ExecStart runs worker" worker.serviceConfig.ExecStart "${wrapper} ${app}/bin/app worker")
    (eq "web: environment" web.environment {
      HOST = "127.0.0.1";
      PORT = "8000";
      ENVIRONMENT = "prod";
      LOG_LEVEL = "info";
      DATA_DIR = "/var/lib/vibetuner";
      MONGODB_URL = "mongodb://127.0.0.1:27017/app";
      REDIS_URL = "redis+unix:///run/redis-vibetuner/redis.sock";
    })
    (check "worker: no HOST/PORT" (!(worker.environment ? HOST || worker.environment ? PORT)))
    (eq "web: secrets as credentials" web.serviceConfig.LoadCredential [ "SESSION_KEY:/run/secrets/session-key" "SMTP_URL:/run/secrets/smtp-url" ])
    (check "web: no secret in the environment" (!(web.environment ? SESSION_KEY)))
    (eq "web: Type=notify with a watchdog, restart on failure"
      { inherit (web.serviceConfig) Type WatchdogSec Restart; }
      { Type = "notify"; WatchdogSec = 60; Restart = "on-failure"; })
    (eq "web: hardening"
      {
        inherit (web.serviceConfig) ProtectSystem NoNewPrivileges PrivateTmp PrivateDevices ProtectHome
          CapabilityBoundingSet RestrictAddressFamilies SystemCallFilter MemoryDenyWriteExecute
          RestrictNamespaces LockPersonality UMask;
      }
      {
        ProtectSystem = "strict";
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectHome = true;
        CapabilityBoundingSet = "";
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        SystemCallFilter = [ "@system-service" "~@privileged" ];
        MemoryDenyWriteExecute = true;
        RestrictNamespaces = true;
        LockPersonality = true;
        UMask = "0077";
      })
    (eq "web: dedicated user, state directory, Redis socket group"
      { inherit (web.serviceConfig) User Group StateDirectory SupplementaryGroups; }
      { User = "vibetuner"; Group = "vibetuner"; StateDirectory = "vibetuner"; SupplementaryGroups = [ "redis-vibetuner" ]; })
    (eq "web: starts after and requires MongoDB and Redis" { inherit (web) after requires; } {
      after = [ "network.target" "mongodb.service" "redis-vibetuner.service" ];
      requires = [ "mongodb.service" "redis-vibetuner.service" ];
    })
    (eq "web: part of vibetuner.target" { inherit (web) wantedBy partOf; }
      { wantedBy = [ "vibetuner.target" ]; partOf = [ "vibetuner.target" ]; })
    (eq "target: wanted by multi-user.target" default.systemd.targets.vibetuner.wantedBy [ "multi-user.target" ])
    (eq "defaults: MongoDB enabled with mongodb-ce"
      { inherit (default.services.mongodb) enable package; }
      { enable = true; package = pkgs.mongodb-ce; })
    (check "defaults: Redis server vibetuner enabled" default.services.redis.servers.vibetuner.enable)
    (eq "defaults: firewall closed" default.networking.firewall.allowedTCPPorts [ ])
    (check "defaults: user and group created" (default.users.users ? vibetuner && default.users.groups ? vibetuner))

    (eq "scaled: units" (lib.attrNames scaled.systemd.services) [
      "vibetuner-web-1"
      "vibetuner-web-2"
      "vibetuner-web-3"
      "vibetuner-worker-1"
      "vibetuner-worker-2"
    ])
    (eq "scaled: consecutive ports"
      (map (i: scaled.systemd.services."vibetuner-web-${toString i}".environment.PORT) [ 1 2 3 ])
      [ "9000" "9001" "9002" ])
    (eq "scaled: host" scaled.systemd.services.vibetuner-web-3.environment.HOST "0.0.0.0")
    (eq "scaled: firewall opens every instance's port" scaled.networking.firewall.allowedTCPPorts [ 9000 9001 9002 ])

    (eq "external: no failed assertion" (failedAssertions external) [ ])
    (eq "external: web only" (lib.attrNames external.systemd.services) [ "vibetuner-web-1" ])
    (eq "external: URLs and typed settings rendered" (lib.getAttrs [ "MONGODB_URL" "REDIS_URL" "DEBUG" "MAX_BODY_SIZE" "ENVIRONMENT" "DATA_DIR" ] external.systemd.services.vibetuner-web-1.environment) {
      MONGODB_URL = "mongodb://db.internal:27017/shop";
      REDIS_URL = "redis://cache.internal:6379/0";
      DEBUG = "true";
      MAX_BODY_SIZE = "1048576";
      ENVIRONMENT = "dev";
      DATA_DIR = "/srv/shop";
    })
    (eq "external: no local databases, no ordering on them"
      { inherit (external.systemd.services.vibetuner-web-1) after requires; mongodb = external.services.mongodb.enable or false; redis = external.services.redis.servers ? vibetuner; }
      { after = [ "network.target" ]; requires = [ ]; mongodb = false; redis = false; })
    (eq "external: environment file, no credentials, own DATA_DIR writable"
      { inherit (external.systemd.services.vibetuner-web-1.serviceConfig) EnvironmentFile LoadCredential SupplementaryGroups ReadWritePaths; }
      { EnvironmentFile = [ "/run/secrets/vibetuner.env" ]; LoadCredential = [ ]; SupplementaryGroups = [ ]; ReadWritePaths = [ "/srv/shop" ]; })
    (eq "defaults: nothing writable beyond the state directory" web.serviceConfig.ReadWritePaths [ ])

    (hasMessage "assertion: instances < 1" noInstances "services.vibetuner.instances must be at least 1 (it is 0)")
    (eq "assertion: instances < 1 runs no web unit" (lib.attrNames noInstances.systemd.services) [ "vibetuner-worker-1" ])
    (hasMessage "assertion: worker.instances < 1" noWorkers "worker.instances must be at least 1")
    (hasMessage "assertion: ports past 65535" pastLastPort "go past port 65535")
    (hasMessage "assertion: prod without a session key" prodWithoutKey "ENVIRONMENT=prod needs a session key")
    (hasMessage "assertion: prod without mail" prodWithoutMail "ENVIRONMENT=prod needs a mail transport")
    (hasMessage "assertion: MONGODB_URL with mongodb.createLocally" urlWithLocalDb "MONGODB_URL is given while mongodb.createLocally is true")
    (hasMessage "assertion: REDIS_URL with redis.createLocally" urlWithLocalRedis "REDIS_URL is given while redis.createLocally is true")
    (hasMessage "assertion: PORT in settings" hostInSettings "must not set HOST or PORT")
    (hasMessage "assertion: credential name" badCredential "SMTP-URL is not an environment variable name")

    (eq "warnings: secret in settings, credential in the store" leaky.warnings [
      "services.vibetuner.settings.OAUTH_GITHUB_CLIENT_SECRET looks like a secret and ends up world-readable in the Nix store; use services.vibetuner.credentials.OAUTH_GITHUB_CLIENT_SECRET (a file) instead."
      "services.vibetuner.credentials.SMTP_URL is a file in the Nix store, which is world-readable; point it at a file outside the store."
    ])

    (eq "disabled: nothing" { inherit (disabled) systemd assertions warnings; } {
      systemd = { services = { }; targets = { }; };
      assertions = [ ];
      warnings = [ ];
    })
  ];

  failed = lib.filter (c: !c.ok) checks;
in
if failed == [ ] then
  "module-eval: ${toString (lib.length checks)} checks passed"
else
  throw "module-eval: ${toString (lib.length failed)} of ${toString (lib.length checks)} checks failed:\n${lib.concatMapStringsSep "\n" (c: "- ${c.name}${c.detail}") failed}"
