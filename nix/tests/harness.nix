# Evaluates NixOS configurations that use nix/modules/vibetuner.nix with nixpkgs' `lib` alone:
# stub declarations of the NixOS options the module and the example hosts set, and the few
# `pkgs` attributes they use. Shared by module-eval.nix (checks) and units.nix (unit files).
{ lib }:

let
  inherit (lib) mkOption types;

  fakeDrv = name: extra: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  } // extra;

  pkgs = {
    mongodb-ce = fakeDrv "mongodb-ce-8.0.0" { };
    writeText = name: _text: "/nix/store/00000000000000000000000000000000-${name}";
  };

  app = fakeDrv "app-0.1.0" {
    pname = "app";
    version = "0.1.0";
    meta.mainProgram = "app";
  };

  freeform = types.submodule { freeformType = types.attrsOf types.anything; };
  anything = mkOption { type = freeform; default = { }; };

  stubs = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      systemd.services = mkOption { type = types.attrsOf freeform; default = { }; };
      systemd.targets = mkOption { type = types.attrsOf freeform; default = { }; };
      systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
      users.users = mkOption { type = types.attrsOf freeform; default = { }; };
      users.groups = mkOption { type = types.attrsOf freeform; default = { }; };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
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
      # Set by the example hosts; not read by the module.
      services.caddy = anything;
      environment = anything;
      nixpkgs = anything;
      boot = anything;
      system = anything;
    };
  };
in
{
  inherit app pkgs fakeDrv;

  # The configuration of a host made of `modules`.
  eval = modules: (lib.evalModules {
    modules = [
      stubs
      ../modules/vibetuner.nix
      { _module.args.pkgs = pkgs; }
    ] ++ lib.toList modules;
  }).config;
}
