# services.vibetuner: vibetuner apps (built with `vibetuner.lib.mkVibetunerApp`) as hardened
# systemd services.
#
#   services.vibetuner = { enable = true; package = my-app; ... };      one app, named `vibetuner`
#   services.vibetuner.apps.shop = { package = shop; port = 8100; };    several apps on one host
#
# Each app has its own user, state directory, ports, units (`<name>-web-<i>`, `<name>-worker-<i>`,
# `<name>.target`), Redis server (`services.redis.servers.<name>`) and, opt-in, its own MongoDB
# (`<name>-mongodb`, reachable only through a Unix socket only the app's user can open). Secrets
# are systemd credentials that the app reads from `$CREDENTIALS_DIRECTORY` itself: no secret is
# ever in a process environment or the Nix store.
{ config, lib, pkgs, ... }:

let
  inherit (lib)
    attrNames
    attrValues
    concatLists
    concatMap
    elem
    filter
    filterAttrs
    getExe
    isBool
    literalExpression
    mapAttrs'
    mapAttrsToList
    mkIf
    mkOption
    nameValuePair
    optional
    optionalAttrs
    optionals
    range
    types
    ;

  top = config.services.vibetuner;

  # Every setting the framework reads, from its settings registry (`nix/settings.json`, written
  # and kept current by the framework's tests): name, type, default, whether it is a secret, doc.
  # A name with `<...>` is a pattern (`<PROVIDER>_CLIENT_ID`), not a setting of its own.
  registry = builtins.fromJSON (builtins.readFile ../settings.json);
  isPattern = entry: lib.hasInfix "<" entry.name;
  literalSettings = builtins.listToAttrs (map (e: nameValuePair e.name e) (lib.filter (e: !isPattern e) registry));
  # `<PROVIDER>_CLIENT_SECRET` as a regular expression: each `<...>` stands for one or more
  # name characters.
  patternRegex = name: lib.concatMapStrings
    (part: if builtins.isList part then "[A-Z0-9_]+" else lib.escapeRegex part)
    (builtins.split "<[^>]*>" name);
  patternSettings = map (e: e // { regex = patternRegex e.name; }) (lib.filter isPattern registry);
  # The registry's entry for a setting name (keys are case-insensitive in the app), or null.
  registryEntry = name:
    let key = lib.toUpper name; in
      literalSettings.${key} or (lib.findFirst (e: builtins.match e.regex key != null) null patternSettings);

  # Settings that hold secrets: they belong in `credentials` or `environmentFile`. The registry
  # says which of the framework's are; an app's own settings are judged by their name.
  isSecretName = name:
    let entry = registryEntry name; in
    if entry != null then entry.secret
    else builtins.match ".*(SECRET|PASSWORD|TOKEN).*" (lib.toUpper name) != null;

  # Set by the module itself, from `host`, `port` and `dataDir`: not declared as settings (the
  # documentation would offer them); given in `settings` anyway, an assertion refuses them.
  moduleSettings = [ "HOST" "PORT" "DATA_DIR" ];

  settingType = entry: {
    bool = types.bool;
    integer = types.ints.unsigned;
    seconds = types.ints.unsigned;
    bytes = types.ints.unsigned;
    port = types.port;
    enum = types.enum entry.choices;
  }.${entry.type} or types.str;

  describeDefault = entry:
    if entry.default == null then "No default."
    else if entry.default == "" then "Default: empty."
    else if entry.computed or false then "Default: ${entry.default} (computed)."
    else "Default: `${entry.default}`.";

  # One option per literal, non-secret setting of the registry; null (the default) leaves it
  # unset, so the app applies its own default.
  registryOptions = lib.mapAttrs
    (_: entry: mkOption {
      type = types.nullOr (settingType entry);
      default = null;
      description = "${entry.doc}\n\n${describeDefault entry}";
    })
    (filterAttrs (name: entry: !entry.secret && !elem name moduleSettings) literalSettings);

  # Where a NixOS deployment wants another default than the app's own.
  settingOverrides = {
    ENVIRONMENT = mkOption {
      type = types.enum literalSettings.ENVIRONMENT.choices;
      default = "prod";
      description = ''
        ${literalSettings.ENVIRONMENT.doc}

        Default here: `prod` (the app's own default is `${literalSettings.ENVIRONMENT.default}`): a
        deployment runs in production unless told otherwise.
      '';
    };
  };

  renderValue = value: if isBool value then lib.boolToString value else toString value;

  # NixOS writes `environment` into `Environment=` lines verbatim, where systemd expands `%`
  # specifiers: a literal `%` (as in a socket path in a URL) is written `%%`.
  escapeSpecifiers = lib.replaceStrings [ "%" ] [ "%%" ];

  isLoopback = host: host == "127.0.0.1" || host == "::1" || host == "localhost";

  # The options of one app; `single` for `services.vibetuner` itself (the app named `vibetuner`,
  # off unless enabled), otherwise an entry of `services.vibetuner.apps` (on unless disabled).
  appModule = single: { name, config, ... }: {
    options = {
      enable = mkOption {
        type = types.bool;
        default = !single;
        description =
          if single then "Whether to run a vibetuner app (named `vibetuner`), its workers and its own Redis."
          else "Whether to run this app.";
      };

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
        description = "Port of the first web instance (`PORT`); instance *n* listens on `port + n - 1`.";
      };

      instances = mkOption {
        type = types.ints.positive;
        default = 1;
        example = 4;
        description = ''
          Number of web instances (`${name}-web-1` ...), on consecutive ports from `port`, to
          put behind a reverse proxy. Sessions, pub/sub and queues go through Redis.
        '';
      };

      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to open the web instances' ports in the firewall (only for a non-loopback `host`).";
      };

      dataDir = mkOption {
        type = types.externalPath;
        default = "/var/lib/${name}";
        defaultText = literalExpression ''"/var/lib/<name>"'';
        example = "/srv/${name}";
        description = ''
          Where the app keeps its files (`DATA_DIR`: the embedded store, local uploads). The
          default is the app's systemd state directory; another folder is created, owned by
          the app's user, and made writable to it.
        '';
      };

      worker = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run background workers (`<app> worker`).";
        };

        instances = mkOption {
          type = types.ints.positive;
          default = 1;
          description = "Number of worker processes (`${name}-worker-1` ...).";
        };
      };

      settings = mkOption {
        type = types.submodule {
          # The app's own settings, beside the framework's.
          freeformType = with types; attrsOf (oneOf [ bool int str ]);
          options = registryOptions // settingOverrides;
        };
        default = { };
        example = { LOG_LEVEL = "debug"; MAX_BODY_SIZE = 10485760; ARCHIVE_DAYS = 30; };
        description = ''
          Settings passed to the app as environment variables. The framework's settings are
          declared options, generated from its settings registry (`nix/settings.json`): each
          is `null` (unset, so the app applies its own default) unless given, except
          `ENVIRONMENT`, `prod` here. Any other name is passed too: the app's own settings (see
          the app's README). They end up in the world-readable Nix store: put secrets in
          `credentials`. `HOST` and `PORT` come from `host`/`port`, `DATA_DIR` from `dataDir`,
          and `MONGODB_URL`/`REDIS_URL` from `createLocally`.
        '';
      };

      environmentFile = mkOption {
        type = types.nullOr types.externalPath;
        default = null;
        example = "/run/secrets/${name}.env";
        description = ''
          An environment file (`KEY=value` lines) read by every app and worker process. Its
          values are in the processes' environment: prefer `credentials` for secrets.
        '';
      };

      credentials = mkOption {
        type = types.attrsOf types.externalPath;
        default = { };
        example = {
          SESSION_KEY = "/run/secrets/${name}/session-key";
          SMTP_URL = "/run/secrets/${name}/smtp-url";
          GOOGLE_CLIENT_SECRET = "/run/secrets/${name}/google-client-secret";
        };
        description = ''
          Secrets as systemd credentials (`LoadCredential=`): each attribute is a setting and
          its value a file outside the Nix store holding the secret. systemd copies the file
          into the process's private `$CREDENTIALS_DIRECTORY`, where the app reads the setting
          of the same name; it never enters the environment or the store. Typical names:
          `SESSION_KEY` (make one with `vibetuner crypto generate-key`), `SMTP_URL` (with its
          password), `<PROVIDER>_CLIENT_SECRET`, `MONGODB_URL` with a password.
        '';
      };

      user = mkOption {
        type = types.str;
        default = name;
        defaultText = literalExpression "<name>";
        description = "User the app runs as (created when left at the default).";
      };

      group = mkOption {
        type = types.str;
        default = name;
        defaultText = literalExpression "<name>";
        description = "Group the app runs as (created when left at the default).";
      };

      limitNOFILE = mkOption {
        type = types.ints.positive;
        default = 65536;
        description = "Open-file limit of each process (`LimitNOFILE=`): one descriptor per connection.";
      };

      mongodb = {
        createLocally = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Whether to run a MongoDB server for this app (`${name}-mongodb.service`, from
            `mongodb.package`) and point `MONGODB_URL` at it. It runs as the app's user and
            listens only on a Unix socket in a directory only that user can open, so it needs no
            password. Off by default: the app runs on its embedded store, and MongoDB is unfree
            (SSPL) software that nixpkgs' CI does not build.
          '';
        };

        package = mkOption {
          type = types.package;
          default = pkgs.mongodb-ce;
          defaultText = literalExpression "pkgs.mongodb-ce";
          description = "The MongoDB server (unfree: allow it in `nixpkgs.config`).";
        };

        database = mkOption {
          type = types.str;
          default = lib.getName config.package;
          defaultText = literalExpression "lib.getName package";
          description = "Database name in the local MongoDB.";
        };
      };

      redis.createLocally = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether to run a Redis server for this app (`services.redis.servers.${name}`, no TCP
          port) and point `REDIS_URL` at its Unix socket.
        '';
      };
    };
  };

  apps = filterAttrs (_: app: app.enable) (
    top.apps // optionalAttrs top.enable { vibetuner = top; }
  );

  # Everything the module derives for one app.
  appConfig = name: app:
    let
      prefix = if top.enable && name == "vibetuner" then "services.vibetuner" else "services.vibetuner.apps.${name}";
      redis = config.services.redis.servers.${name};
      stateDir = "/var/lib/${name}";
      customDataDir = app.dataDir != stateDir;
      mongoRuntime = "/run/${name}-mongodb";
      mongoSocket = "${mongoRuntime}/mongodb.sock";

      # Whether `settings` gives a value (a declared setting is there, null, when not given).
      isSet = setting: (app.settings.${setting} or null) != null;
      given = setting: isSet setting || app.credentials ? ${setting} || app.environmentFile != null;
      remoteDatabase =
        (!app.mongodb.createLocally && given "MONGODB_URL")
        || (!app.redis.createLocally && given "REDIS_URL");

      environment = lib.mapAttrs (_: escapeSpecifiers) (
        { DATA_DIR = app.dataDir; }
        // lib.mapAttrs (_: renderValue) (filterAttrs (_: value: value != null) app.settings)
        // optionalAttrs app.mongodb.createLocally {
          MONGODB_URL = "mongodb://${lib.escapeURL mongoSocket}/${app.mongodb.database}";
        }
        // optionalAttrs app.redis.createLocally {
          REDIS_URL = "redis+unix://${redis.unixSocket}";
        }
      );

      localUnits =
        optional app.mongodb.createLocally "${name}-mongodb.service"
        ++ optional app.redis.createLocally "redis-${name}.service";

      hardening = {
        AmbientCapabilities = "";
        CapabilityBoundingSet = "";
        DeviceAllow = "";
        DevicePolicy = "closed";
        KeyringMode = "private";
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
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
        SystemCallErrorNumber = "EPERM";
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
        UMask = "0077";
      };

      mkService = description: command: extraEnvironment: {
        inherit description;
        wantedBy = [ "${name}.target" ];
        partOf = [ "${name}.target" ];
        after = [ "network.target" ] ++ optional remoteDatabase "network-online.target" ++ localUnits;
        wants = optional remoteDatabase "network-online.target";
        requires = localUnits;
        environment = environment // lib.mapAttrs (_: escapeSpecifiers) extraEnvironment;

        serviceConfig = hardening // {
          Type = "notify";
          ExecStart = "${getExe app.package} ${command}";
          WatchdogSec = 60;
          Restart = "on-failure";
          RestartSec = 2;
          LimitNOFILE = app.limitNOFILE;

          User = app.user;
          Group = app.group;
          SupplementaryGroups = optional app.redis.createLocally redis.group;
          StateDirectory = name;
          StateDirectoryMode = "0750";
          WorkingDirectory = stateDir;
          # A DATA_DIR of one's own stays writable under ProtectSystem=strict.
          ReadWritePaths = optional customDataDir app.dataDir;
          EnvironmentFile = optional (app.environmentFile != null) app.environmentFile;
          LoadCredential = mapAttrsToList (setting: path: "${setting}:${path}") app.credentials;
          # AF_UNIX: the notify socket and the local Redis and MongoDB sockets.
          RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        };
      };

      webServices = map
        (i: nameValuePair "${name}-web-${toString i}" (
          mkService "${name}: vibetuner app, instance ${toString i}" "serve"
            { HOST = app.host; PORT = toString (app.port + i - 1); }
        ))
        (range 1 app.instances);

      workerServices = optionals app.worker.enable (map
        (i: nameValuePair "${name}-worker-${toString i}" (
          mkService "${name}: vibetuner background worker ${toString i}" "worker" { }
        ))
        (range 1 app.worker.instances));

      mongoConfig = pkgs.writeText "${name}-mongodb.yaml" ''
        net:
          bindIp: ${mongoSocket}
          unixDomainSocket:
            enabled: true
            pathPrefix: ${mongoRuntime}
            filePermissions: 0700
        storage:
          dbPath: /var/lib/${name}-mongodb
      '';

      mongoService = nameValuePair "${name}-mongodb" {
        description = "${name}: MongoDB on a Unix socket";
        wantedBy = [ "${name}.target" ];
        partOf = [ "${name}.target" ];
        after = [ "network.target" ];
        serviceConfig = {
          Type = "exec";
          ExecStart = "${app.mongodb.package}/bin/mongod --config ${mongoConfig}";
          User = app.user;
          Group = app.group;
          StateDirectory = "${name}-mongodb";
          StateDirectoryMode = "0700";
          RuntimeDirectory = "${name}-mongodb";
          RuntimeDirectoryMode = "0700";
          TimeoutStartSec = 120;
          Restart = "on-failure";
          LimitNOFILE = 64000;
          # No TCP at all: clients reach it only through the socket.
          RestrictAddressFamilies = [ "AF_UNIX" ];
          IPAddressDeny = "any";
          CapabilityBoundingSet = "";
          NoNewPrivileges = true;
          PrivateDevices = true;
          PrivateTmp = true;
          ProtectHome = true;
          ProtectSystem = "strict";
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectControlGroups = true;
          RestrictNamespaces = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          UMask = "0077";
        };
      };

      secretSettings = filter (s: isSet s && isSecretName s) (attrNames app.settings);
      badCredentialNames = filter (n: builtins.match "[A-Za-z_][A-Za-z0-9_]*" n == null) (attrNames app.credentials);
      lastPort = app.port + app.instances - 1;
    in
    {
      inherit name app lastPort;

      assertions = [
        {
          assertion = lastPort <= 65535;
          message = "${prefix}: ${toString app.instances} instances from port ${toString app.port} go past port 65535; lower port or instances.";
        }
        {
          assertion = app.settings.ENVIRONMENT == "prod" -> app.credentials ? SESSION_KEY || app.environmentFile != null;
          message = "${prefix}: ENVIRONMENT=prod needs a session key: set ${prefix}.credentials.SESSION_KEY to a file holding one (make it with `vibetuner crypto generate-key`), or put SESSION_KEY in ${prefix}.environmentFile.";
        }
        {
          assertion = app.settings.ENVIRONMENT == "prod" -> app.credentials ? SMTP_URL || isSet "SMTP_URL" || app.environmentFile != null;
          message = "${prefix}: ENVIRONMENT=prod needs a mail transport for sign-in emails: set ${prefix}.credentials.SMTP_URL to a file holding e.g. smtps://user:password@smtp.example.com:465, or put SMTP_URL in ${prefix}.environmentFile.";
        }
        {
          assertion = !(lib.any isSet moduleSettings);
          message = "${prefix}.settings must not set HOST, PORT or DATA_DIR: use ${prefix}.host, .port and .dataDir.";
        }
        {
          assertion = app.mongodb.createLocally -> !(isSet "MONGODB_URL" || app.credentials ? MONGODB_URL);
          message = "${prefix}: MONGODB_URL is given while mongodb.createLocally is true; set ${prefix}.mongodb.createLocally = false to use your own MongoDB, or drop MONGODB_URL.";
        }
        {
          assertion = app.redis.createLocally -> !(isSet "REDIS_URL" || app.credentials ? REDIS_URL);
          message = "${prefix}: REDIS_URL is given while redis.createLocally is true; set ${prefix}.redis.createLocally = false to use your own Redis, or drop REDIS_URL.";
        }
        {
          assertion = badCredentialNames == [ ];
          message = "${prefix}.credentials: ${toString badCredentialNames} is not a setting name (letters, digits and _).";
        }
        {
          assertion = app.openFirewall -> !(isLoopback app.host);
          message = "${prefix}.openFirewall is set but the app listens on ${app.host} only; set ${prefix}.host (e.g. \"0.0.0.0\") or drop openFirewall.";
        }
      ];

      warnings =
        map (s: "${prefix}.settings.${s} looks like a secret and ends up world-readable in the Nix store; use ${prefix}.credentials.${s} (a file) instead.") secretSettings;

      services = webServices ++ workerServices ++ optional app.mongodb.createLocally mongoService;

      firewallPorts = optionals (app.openFirewall && !(isLoopback app.host)) (range app.port lastPort);

      tmpfiles = optional customDataDir "d ${app.dataDir} 0750 ${app.user} ${app.group} - -";

      target = nameValuePair name {
        description = "${name}: vibetuner app, its instances and workers";
        wantedBy = [ "multi-user.target" ];
      };
    };

  derived = lib.mapAttrs appConfig apps;
  all = attrValues derived;

  # Two apps whose web ports overlap.
  overlaps = concatLists (lib.imap0
    (i: a: map (b: "${a.name} and ${b.name}") (filter
      (b: a.app.port <= b.lastPort && b.app.port <= a.lastPort)
      (lib.drop (i + 1) all)))
    all);
in
{
  options.services.vibetuner = mkOption {
    default = { };
    description = "A vibetuner app (`enable`, `package`, ...) and more apps on the same host (`apps.<name>`).";
    type = types.submodule [
      (appModule true)
      {
        options.apps = mkOption {
          type = types.attrsOf (types.submodule (appModule false));
          default = { };
          example = literalExpression ''
            {
              shop = { package = inputs.shop.packages.''${system}.default; port = 8100; credentials = { ... }; };
              blog = { package = inputs.blog.packages.''${system}.default; port = 8200; credentials = { ... }; };
            }
          '';
          description = ''
            Apps to run on this host, each with its own user, state directory, ports, units
            (`<name>-web-<i>`, `<name>-worker-<i>`, `<name>.target`) and Redis server. Same
            options as `services.vibetuner` itself, `enable` on by default.
          '';
        };
      }
    ];
  };

  config = mkIf (apps != { }) {
    assertions = concatMap (d: d.assertions) all ++ [
      {
        assertion = !(top.enable && top.apps ? vibetuner);
        message = "services.vibetuner.enable and services.vibetuner.apps.vibetuner both define the app `vibetuner`; use one of them.";
      }
      {
        assertion = overlaps == [ ];
        message = "services.vibetuner: the web ports of ${lib.concatStringsSep ", " overlaps} overlap; give each app its own port range.";
      }
    ];

    warnings = concatMap (d: d.warnings) all;

    systemd.targets = builtins.listToAttrs (map (d: d.target) all);

    systemd.services = builtins.listToAttrs (concatMap (d: d.services) all);

    systemd.tmpfiles.rules = concatMap (d: d.tmpfiles) all;

    networking.firewall.allowedTCPPorts = concatMap (d: d.firewallPorts) all;

    services.redis.servers = lib.mapAttrs (_: _: { enable = true; })
      (filterAttrs (_: app: app.redis.createLocally) apps);

    users.users = mapAttrs'
      (name: app: nameValuePair app.user {
        isSystemUser = true;
        inherit (app) group;
        home = "/var/lib/${name}";
        description = "vibetuner app ${name}";
      })
      (filterAttrs (name: app: app.user == name) apps);

    users.groups = mapAttrs' (_: app: nameValuePair app.group { })
      (filterAttrs (name: app: app.group == name) apps);
  };
}
