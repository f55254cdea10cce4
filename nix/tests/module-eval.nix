# Evaluates nix/modules/vibetuner.nix with several configurations (against the stub NixOS
# options of harness.nix) and checks the resulting units, firewall, databases, users, assertions
# and warnings: one app, scale-out, remote databases, a local MongoDB, two apps on one host, the
# VM test's host and the app template's example host, and the `settings` options generated from
# the framework's settings registry (nix/settings.json). Needs only nixpkgs' `lib`; the result is
# a summary string, a failed check throws with its name.
#
#   nix-instantiate --eval --strict --arg lib 'import <nixpkgs.lib checkout>/lib' nix/tests/module-eval.nix
#   (scripts/nix-check.sh does this when NIXPKGS_LIB is set; `nix flake check` runs it too.)
{ lib }:

let
  harness = import ./harness.nix { inherit lib; };
  inherit (harness) app pkgs eval;

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

  secrets = name: {
    SESSION_KEY = "/run/secrets/${name}/session-key";
    SMTP_URL = "/run/secrets/${name}/smtp-url";
  };

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # Whether evaluating the configuration's units fails (an option type refuses a value).
  refused = config: !(builtins.tryEval (builtins.deepSeq config.systemd.services true)).success;

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

  # 1. Defaults: one web instance, one worker, the app's own Redis, the embedded store.
  default = eval (withApp { });
  web = default.systemd.services.vibetuner-web-1;
  worker = default.systemd.services.vibetuner-worker-1;

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

  # 3. Remote databases, no worker, development mode, extra settings, a data folder of its own.
  external = eval {
    services.vibetuner = {
      enable = true;
      package = app;
      redis.createLocally = false;
      worker.enable = false;
      dataDir = "/srv/shop";
      environmentFile = "/run/secrets/vibetuner.env";
      credentials.MONGODB_URL = "/run/secrets/mongodb-url";
      settings = {
        ENVIRONMENT = "dev";
        REDIS_URL = "redis://cache.internal:6379/0";
        DEBUG = true;
        MAX_BODY_SIZE = 1048576;
        CONTENT_SECURITY_POLICY = "default-src 'self'; img-src * 100%";
      };
    };
  };
  externalWeb = external.systemd.services.vibetuner-web-1;

  # 4. A local MongoDB on a Unix socket.
  withMongo = eval (withApp { services.vibetuner.mongodb.createLocally = true; });
  mongod = withMongo.systemd.services.vibetuner-mongodb;

  # 5. Two apps on one host (and no `services.vibetuner.enable`).
  twoApps = eval {
    services.vibetuner.apps = {
      shop = { package = app; port = 8100; instances = 2; credentials = secrets "shop"; mongodb.createLocally = true; };
      blog = { package = app; port = 8200; worker.enable = false; credentials = secrets "blog"; host = "::"; openFirewall = true; };
      off = { package = app; enable = false; };
    };
  };
  shopWeb = twoApps.systemd.services.shop-web-2;
  blogWeb = twoApps.systemd.services.blog-web-1;

  # 6. The hosts this repository ships: the VM test's and the app template's example.
  vmHost = eval (import ./vm-host.nix { inherit app; });
  exampleHost = eval (import ../../templates/app/nix/example-host.nix { package = app; });

  # 7. Contradictions that must fail with a readable message.
  pastLastPort = eval (withApp { services.vibetuner = { port = 65535; instances = 2; }; });
  prodWithoutKey = eval { services.vibetuner = { enable = true; package = app; }; };
  prodWithoutMail = eval {
    services.vibetuner = { enable = true; package = app; credentials.SESSION_KEY = "/run/secrets/session-key"; };
  };
  appWithoutMail = eval { services.vibetuner.apps.shop = { package = app; credentials.SESSION_KEY = "/run/k"; }; };
  urlWithLocalDb = eval (withApp { services.vibetuner = { mongodb.createLocally = true; settings.MONGODB_URL = "mongodb://elsewhere/x"; }; });
  urlWithLocalRedis = eval (withApp { services.vibetuner.credentials.REDIS_URL = "/run/secrets/redis-url"; });
  portInSettings = eval (withApp { services.vibetuner.settings.PORT = 1234; });
  dataDirInSettings = eval (withApp { services.vibetuner.settings.DATA_DIR = "/srv/x"; });
  badCredential = eval (withApp { services.vibetuner.credentials."SMTP-URL" = "/run/secrets/smtp"; });
  firewallOnLoopback = eval (withApp { services.vibetuner.openFirewall = true; });
  sameName = eval (withApp { services.vibetuner.apps.vibetuner = { package = app; port = 9000; credentials = secrets "x"; }; });
  overlapping = eval {
    services.vibetuner.apps = {
      a = { package = app; port = 8000; instances = 3; credentials = secrets "a"; };
      b = { package = app; port = 8002; credentials = secrets "b"; };
    };
  };

  # 8. Values the option types refuse.
  noInstances = eval (withApp { services.vibetuner.instances = 0; });
  noWorkers = eval (withApp { services.vibetuner.worker.instances = 0; });
  credentialInStore = eval (withApp { services.vibetuner.credentials.SMTP_URL = "/nix/store/00000000000000000000000000000000-smtp-url"; });
  relativeDataDir = eval (withApp { services.vibetuner.dataDir = "data"; });

  # 9. Secrets in settings: a warning.
  leaky = eval (withApp { services.vibetuner.settings.OAUTH_GITHUB_CLIENT_SECRET = "hunter2"; });
  # SMTP_URL is a secret in the registry: a warning, yet prod has its mail transport.
  smtpInSettings = eval {
    services.vibetuner = {
      enable = true;
      package = app;
      credentials.SESSION_KEY = "/run/secrets/session-key";
      settings.SMTP_URL = "smtps://user:password@smtp.example.com:465";
    };
  };
  # The app reads setting names in any case.
  lowercaseSecret = eval (withApp { services.vibetuner.settings.session_key = "k"; });
  # Neither an OAuth client id (not secret in the registry) nor an app's own setting.
  notSecret = eval (withApp { services.vibetuner.settings = { GOOGLE_CLIENT_ID = "id"; ARCHIVE_DAYS = 30; }; });

  # 10. The settings declared from the framework's registry.
  registry = builtins.fromJSON (builtins.readFile ../settings.json);
  declarable = lib.filter (e: !(lib.hasInfix "<" e.name) && !e.secret && !(lib.elem e.name [ "HOST" "PORT" "DATA_DIR" ])) registry;
  settingOptions = lib.filter (o: lib.hasPrefix "services.vibetuner.settings." o.name && !(lib.hasInfix "._module." o.name)) docs;
  settingOption = name: lib.findFirst (o: o.name == "services.vibetuner.settings.${name}") null docs;
  registryDoc = name: (lib.findFirst (e: e.name == name) null registry).doc;
  # Settings given explicitly, `false` among them (a value, not "unset").
  explicit = eval (withApp { services.vibetuner.settings = { LOG_LEVEL = "debug,hyper=info"; DEBUG = false; SHUTDOWN_TIMEOUT = 10; }; });
  explicitWeb = explicit.systemd.services.vibetuner-web-1;
  # Values the generated option types refuse.
  sizeAsText = eval (withApp { services.vibetuner.settings.MAX_BODY_SIZE = "10M"; });
  boolAsText = eval (withApp { services.vibetuner.settings.DEBUG = "yes"; });
  badEnvironment = eval (withApp { services.vibetuner.settings.ENVIRONMENT = "staging"; });
  hostInSettings = eval (withApp { services.vibetuner.settings.HOST = "0.0.0.0"; });

  disabled = eval { services.vibetuner.package = app; };

  # The option documentation (as the NixOS manual renders it): every default, example and
  # description evaluates.
  docs = lib.optionAttrSetToDocList (lib.evalModules {
    modules = [ ../modules/vibetuner.nix { _module.args.pkgs = pkgs; _module.check = false; } ];
  }).options;

  checks = [
    (eq "defaults: no failed assertion" (failedAssertions default) [ ])
    (eq "defaults: no warning" default.warnings [ ])
    (eq "defaults: units" (lib.attrNames default.systemd.services) [ "vibetuner-web-1" "vibetuner-worker-1" ])
    (eq "web: ExecStart runs serve, no wrapper" web.serviceConfig.ExecStart "${app}/bin/app serve")
    (eq "worker: ExecStart runs worker" worker.serviceConfig.ExecStart "${app}/bin/app worker")
    (eq "web: environment (embedded store, own Redis, no secret)" web.environment {
      HOST = "127.0.0.1";
      PORT = "8000";
      ENVIRONMENT = "prod";
      DATA_DIR = "/var/lib/vibetuner";
      REDIS_URL = "redis+unix:///run/redis-vibetuner/redis.sock";
    })
    (check "worker: no HOST/PORT" (!(worker.environment ? HOST || worker.environment ? PORT)))
    (eq "web: secrets as credentials the app reads" web.serviceConfig.LoadCredential [ "SESSION_KEY:/run/secrets/session-key" "SMTP_URL:/run/secrets/smtp-url" ])
    (eq "web: Type=notify with a watchdog, restart on failure, LimitNOFILE"
      { inherit (web.serviceConfig) Type WatchdogSec Restart LimitNOFILE; }
      { Type = "notify"; WatchdogSec = 60; Restart = "on-failure"; LimitNOFILE = 65536; })
    (eq "web: hardening"
      {
        inherit (web.serviceConfig) ProtectSystem NoNewPrivileges PrivateTmp PrivateDevices ProtectHome
          CapabilityBoundingSet RestrictAddressFamilies SystemCallFilter MemoryDenyWriteExecute
          RestrictNamespaces LockPersonality UMask ProtectProc ProcSubset;
      }
      {
        ProtectSystem = "strict";
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectHome = true;
        CapabilityBoundingSet = "";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
        MemoryDenyWriteExecute = true;
        RestrictNamespaces = true;
        LockPersonality = true;
        UMask = "0077";
        ProtectProc = "invisible";
        ProcSubset = "pid";
      })
    (eq "web: dedicated user, state directory, Redis socket group"
      { inherit (web.serviceConfig) User Group StateDirectory WorkingDirectory SupplementaryGroups ReadWritePaths; }
      { User = "vibetuner"; Group = "vibetuner"; StateDirectory = "vibetuner"; WorkingDirectory = "/var/lib/vibetuner"; SupplementaryGroups = [ "redis-vibetuner" ]; ReadWritePaths = [ ]; })
    (eq "web: ordered after the app's Redis, not network-online" { inherit (web) after requires wants; } {
      after = [ "network.target" "redis-vibetuner.service" ];
      requires = [ "redis-vibetuner.service" ];
      wants = [ ];
    })
    (eq "web: part of vibetuner.target" { inherit (web) wantedBy partOf; }
      { wantedBy = [ "vibetuner.target" ]; partOf = [ "vibetuner.target" ]; })
    (eq "target: wanted by multi-user.target" default.systemd.targets.vibetuner.wantedBy [ "multi-user.target" ])
    (eq "defaults: the app's Redis server, no MongoDB"
      { redis = lib.attrNames default.services.redis.servers; inherit (default.services.redis.servers.vibetuner) enable; mongodb = default.systemd.services ? vibetuner-mongodb; }
      { redis = [ "vibetuner" ]; enable = true; mongodb = false; })
    (eq "defaults: firewall closed, no tmpfiles" { ports = default.networking.firewall.allowedTCPPorts; inherit (default.systemd.tmpfiles) rules; } { ports = [ ]; rules = [ ]; })
    (eq "defaults: user and group created" { users = lib.attrNames default.users.users; groups = lib.attrNames default.users.groups; inherit (default.users.users.vibetuner) isSystemUser group; }
      { users = [ "vibetuner" ]; groups = [ "vibetuner" ]; isSystemUser = true; group = "vibetuner"; })

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
    (eq "external: settings rendered, MONGODB_URL only as a credential"
      (lib.filterAttrs (n: _: lib.elem n [ "MONGODB_URL" "REDIS_URL" "DEBUG" "MAX_BODY_SIZE" "ENVIRONMENT" "DATA_DIR" "CONTENT_SECURITY_POLICY" ]) externalWeb.environment)
      {
        CONTENT_SECURITY_POLICY = "default-src 'self'; img-src * 100%%";
        REDIS_URL = "redis://cache.internal:6379/0";
        DEBUG = "true";
        MAX_BODY_SIZE = "1048576";
        ENVIRONMENT = "dev";
        DATA_DIR = "/srv/shop";
      })
    (eq "external: remote databases wait for network-online.target"
      { inherit (externalWeb) after wants requires; redis = external.services.redis.servers; }
      { after = [ "network.target" "network-online.target" ]; wants = [ "network-online.target" ]; requires = [ ]; redis = { }; })
    (eq "external: environment file, credentials, own DATA_DIR created and writable"
      { inherit (externalWeb.serviceConfig) EnvironmentFile LoadCredential SupplementaryGroups ReadWritePaths; inherit (external.systemd.tmpfiles) rules; }
      {
        EnvironmentFile = [ "/run/secrets/vibetuner.env" ];
        LoadCredential = [ "MONGODB_URL:/run/secrets/mongodb-url" ];
        SupplementaryGroups = [ ];
        ReadWritePaths = [ "/srv/shop" ];
        rules = [ "d /srv/shop 0750 vibetuner vibetuner - -" ];
      })

    (eq "mongodb: no failed assertion" (failedAssertions withMongo) [ ])
    (eq "mongodb: URL of the Unix socket" withMongo.systemd.services.vibetuner-web-1.environment.MONGODB_URL
      "mongodb://%%2Frun%%2Fvibetuner-mongodb%%2Fmongodb.sock/app") # %% is systemd's escape
    (eq "mongodb: web requires it" withMongo.systemd.services.vibetuner-web-1.requires [ "vibetuner-mongodb.service" "redis-vibetuner.service" ])
    (eq "mongodb: mongod in the foreground as the app's user, socket only, private runtime directory"
      { inherit (mongod.serviceConfig) ExecStart User Group RuntimeDirectory RuntimeDirectoryMode StateDirectory RestrictAddressFamilies; inherit (mongod) wantedBy; }
      {
        ExecStart = "${pkgs.mongodb-ce}/bin/mongod --config /nix/store/00000000000000000000000000000000-vibetuner-mongodb.yaml";
        User = "vibetuner";
        Group = "vibetuner";
        RuntimeDirectory = "vibetuner-mongodb";
        RuntimeDirectoryMode = "0700";
        StateDirectory = "vibetuner-mongodb";
        RestrictAddressFamilies = [ "AF_UNIX" ];
        wantedBy = [ "vibetuner.target" ];
      })

    (eq "two apps: no failed assertion, no warning" { a = failedAssertions twoApps; w = twoApps.warnings; } { a = [ ]; w = [ ]; })
    (eq "two apps: units of each" (lib.attrNames twoApps.systemd.services) [
      "blog-web-1"
      "shop-mongodb"
      "shop-web-1"
      "shop-web-2"
      "shop-worker-1"
    ])
    (eq "two apps: targets" (lib.attrNames twoApps.systemd.targets) [ "blog" "shop" ])
    (eq "two apps: own users, groups, state directories, Redis servers"
      {
        users = lib.attrNames twoApps.users.users;
        groups = lib.attrNames twoApps.users.groups;
        redis = lib.attrNames twoApps.services.redis.servers;
        shop = { inherit (shopWeb.serviceConfig) User StateDirectory SupplementaryGroups; inherit (shopWeb.environment) DATA_DIR REDIS_URL PORT MONGODB_URL; };
        blog = { inherit (blogWeb.serviceConfig) User StateDirectory SupplementaryGroups; inherit (blogWeb.environment) DATA_DIR REDIS_URL PORT HOST; };
      }
      {
        users = [ "blog" "shop" ];
        groups = [ "blog" "shop" ];
        redis = [ "blog" "shop" ];
        shop = { User = "shop"; StateDirectory = "shop"; SupplementaryGroups = [ "redis-shop" ]; DATA_DIR = "/var/lib/shop"; REDIS_URL = "redis+unix:///run/redis-shop/redis.sock"; PORT = "8101"; MONGODB_URL = "mongodb://%%2Frun%%2Fshop-mongodb%%2Fmongodb.sock/app"; };
        blog = { User = "blog"; StateDirectory = "blog"; SupplementaryGroups = [ "redis-blog" ]; DATA_DIR = "/var/lib/blog"; REDIS_URL = "redis+unix:///run/redis-blog/redis.sock"; PORT = "8200"; HOST = "::"; };
      })
    (eq "two apps: firewall opens only the non-loopback app's port" twoApps.networking.firewall.allowedTCPPorts [ 8200 ])
    (eq "two apps: each app's own credentials" shopWeb.serviceConfig.LoadCredential [ "SESSION_KEY:/run/secrets/shop/session-key" "SMTP_URL:/run/secrets/shop/smtp-url" ])

    (eq "VM host: no failed assertion, no warning" { a = failedAssertions vmHost; w = vmHost.warnings; } { a = [ ]; w = [ ]; })
    (eq "VM host: units" (lib.attrNames vmHost.systemd.services) [
      "second-web-1"
      "vibetuner-mongodb"
      "vibetuner-web-1"
      "vibetuner-web-2"
      "vibetuner-worker-1"
    ])
    (eq "example host: no failed assertion, no warning" { a = failedAssertions exampleHost; w = exampleHost.warnings; } { a = [ ]; w = [ ]; })
    (eq "example host: two instances and a worker on the embedded store"
      { units = lib.attrNames exampleHost.systemd.services; mongodb = exampleHost.systemd.services.vibetuner-web-1.environment ? MONGODB_URL; }
      { units = [ "vibetuner-web-1" "vibetuner-web-2" "vibetuner-worker-1" ]; mongodb = false; })

    (hasMessage "assertion: ports past 65535" pastLastPort "services.vibetuner: 2 instances from port 65535 go past port 65535")
    (hasMessage "assertion: prod without a session key" prodWithoutKey "services.vibetuner: ENVIRONMENT=prod needs a session key")
    (hasMessage "assertion: prod without mail" prodWithoutMail "services.vibetuner: ENVIRONMENT=prod needs a mail transport")
    (hasMessage "assertion: an app's messages name the app" appWithoutMail "services.vibetuner.apps.shop: ENVIRONMENT=prod needs a mail transport")
    (hasMessage "assertion: MONGODB_URL with mongodb.createLocally" urlWithLocalDb "MONGODB_URL is given while mongodb.createLocally is true")
    (hasMessage "assertion: REDIS_URL with redis.createLocally" urlWithLocalRedis "REDIS_URL is given while redis.createLocally is true")
    (hasMessage "assertion: PORT in settings" portInSettings "must not set HOST, PORT or DATA_DIR")
    (hasMessage "assertion: HOST in settings" hostInSettings "must not set HOST, PORT or DATA_DIR")
    (hasMessage "assertion: DATA_DIR in settings" dataDirInSettings "must not set HOST, PORT or DATA_DIR")
    (hasMessage "assertion: credential name" badCredential "SMTP-URL is not a setting name")
    (hasMessage "assertion: openFirewall on loopback" firewallOnLoopback "openFirewall is set but the app listens on 127.0.0.1 only")
    (hasMessage "assertion: enable and apps.vibetuner" sameName "services.vibetuner.enable and services.vibetuner.apps.vibetuner both define")
    (hasMessage "assertion: overlapping ports" overlapping "the web ports of a and b overlap")
    (eq "assertions: each message is tested" (lib.length default.assertions) 10)

    (check "type: instances = 0 refused (ints.positive)" (refused noInstances))
    (check "type: worker.instances = 0 refused (ints.positive)" (refused noWorkers))
    (check "type: a credential in the Nix store refused (externalPath)" (refused credentialInStore))
    (check "type: a relative dataDir refused (externalPath)" (refused relativeDataDir))

    (eq "warnings: secret in settings" leaky.warnings [
      "services.vibetuner.settings.OAUTH_GITHUB_CLIENT_SECRET looks like a secret and ends up world-readable in the Nix store; use services.vibetuner.credentials.OAUTH_GITHUB_CLIENT_SECRET (a file) instead."
    ])

    (eq "warnings: SMTP_URL in settings (a secret in the registry), which gives prod its mail transport"
      { w = smtpInSettings.warnings; a = failedAssertions smtpInSettings; }
      {
        w = [ "services.vibetuner.settings.SMTP_URL looks like a secret and ends up world-readable in the Nix store; use services.vibetuner.credentials.SMTP_URL (a file) instead." ];
        a = [ ];
      })
    (eq "warnings: a secret named in lower case" lowercaseSecret.warnings [
      "services.vibetuner.settings.session_key looks like a secret and ends up world-readable in the Nix store; use services.vibetuner.credentials.session_key (a file) instead."
    ])
    (eq "warnings: none for an OAuth client id or an app's own setting" notSecret.warnings [ ])

    (eq "registry: every literal, non-secret setting but HOST, PORT and DATA_DIR is a settings option"
      (lib.sort lib.lessThan (map (o: lib.removePrefix "services.vibetuner.settings." o.name) settingOptions))
      (lib.sort lib.lessThan (map (e: e.name) declarable)))
    (eq "registry: an option's description is the registry's doc and default"
      (settingOption "MAX_BODY_SIZE").description
      "${registryDoc "MAX_BODY_SIZE"}\n\nDefault: `${(lib.findFirst (e: e.name == "MAX_BODY_SIZE") null registry).default}`.")
    (eq "registry: ENVIRONMENT is prod here, documented from the registry"
      { default = (settingOption "ENVIRONMENT").default.text; doc = lib.hasPrefix (registryDoc "ENVIRONMENT") (settingOption "ENVIRONMENT").description; }
      { default = "\"prod\""; doc = true; })
    (eq "registry: unset settings are null and not in the environment"
      { inherit (default.services.vibetuner.settings) MAX_BODY_SIZE LOG_LEVEL; env = lib.sort lib.lessThan (lib.filter (n: web.environment ? ${n}) (map (e: e.name) declarable)); }
      # ENVIRONMENT is prod here, REDIS_URL the app's own Redis (when the registry declares it).
      { MAX_BODY_SIZE = null; LOG_LEVEL = null; env = lib.filter (n: lib.elem n (map (e: e.name) declarable)) [ "ENVIRONMENT" "REDIS_URL" ]; })
    (eq "registry: given settings are in the environment, false as false"
      { inherit (explicitWeb.environment) LOG_LEVEL DEBUG SHUTDOWN_TIMEOUT; inherit (explicit) warnings; }
      { LOG_LEVEL = "debug,hyper=info"; DEBUG = "false"; SHUTDOWN_TIMEOUT = "10"; warnings = [ ]; })
    (check "type: MAX_BODY_SIZE as text refused (bytes: ints.unsigned)" (refused sizeAsText))
    (check "type: DEBUG as text refused (bool)" (refused boolAsText))
    (check "type: an ENVIRONMENT not in the registry's choices refused (enum)" (refused badEnvironment))

    (check "option documentation evaluates"
      (builtins.deepSeq (map (o: [ o.name (o.default or null) (o.example or null) o.description o.type ]) docs)
        (lib.any (o: o.name == "services.vibetuner.apps.<name>.mongodb.createLocally") docs)))

    (eq "disabled: nothing" { inherit (disabled) systemd assertions warnings; } {
      systemd = { services = { }; targets = { }; tmpfiles.rules = [ ]; };
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
