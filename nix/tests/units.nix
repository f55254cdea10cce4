# Every systemd unit nix/modules/vibetuner.nix defines for the VM test's host (one app with its
# own MongoDB, a second app) and a two-app host, rendered to unit files as NixOS writes them (a
# list becomes one line per item), so that `systemd-analyze security --offline=true` can rate
# them. `scripts/nix-check.sh --units DIR` writes them to DIR.
#
#   nix-instantiate --eval --strict --json --arg lib 'import <nixpkgs.lib>/lib' nix/tests/units.nix
{ lib }:

let
  harness = import ./harness.nix { inherit lib; };
  inherit (harness) app eval;

  hosts = [
    (eval (import ./vm-host.nix { inherit app; }))
    (eval {
      services.vibetuner.apps = {
        shop = { package = app; port = 8100; credentials.SESSION_KEY = "/run/secrets/shop-key"; credentials.SMTP_URL = "/run/secrets/shop-smtp"; };
        blog = { package = app; port = 8200; host = "0.0.0.0"; redis.createLocally = false; settings.REDIS_URL = "redis://cache.internal:6379"; credentials.SESSION_KEY = "/run/secrets/blog-key"; credentials.SMTP_URL = "/run/secrets/blog-smtp"; };
      };
    })
  ];

  value = v:
    if lib.isBool v then lib.boolToString v
    else toString v;

  lines = key: v:
    if lib.isList v then map (item: "${key}=${value item}") v
    else [ "${key}=${value v}" ];

  section = name: attrs:
    let body = lib.concatLists (lib.mapAttrsToList lines (lib.filterAttrs (_: v: v != [ ] && v != null) attrs));
    in lib.optionalString (body != [ ]) "[${name}]\n${lib.concatStringsSep "\n" body}\n";

  render = unit: lib.concatStringsSep "\n" (lib.filter (s: s != "") [
    (section "Unit" {
      Description = unit.description or null;
      After = unit.after or [ ];
      Wants = unit.wants or [ ];
      Requires = unit.requires or [ ];
      PartOf = unit.partOf or [ ];
    })
    (section "Service" (unit.serviceConfig // {
      # As nixos/lib/systemd-lib.nix writes them.
      Environment = lib.mapAttrsToList (k: v: builtins.toJSON "${k}=${v}") (unit.environment or { });
    }))
    (section "Install" { WantedBy = unit.wantedBy or [ ]; })
  ]);
in
lib.foldl' (acc: host: acc // lib.mapAttrs' (name: unit: lib.nameValuePair "${name}.service" (render unit)) host.systemd.services) { } hosts
