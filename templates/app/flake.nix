{
  description = "A vibetuner app: its package, development shell, checks and an example NixOS host";

  inputs = {
    # The framework: its app builder, toolchain, NixOS module and pinned nixpkgs.
    vibetuner.url = "github:alltuner/vibetuner-rs";
    nixpkgs.follows = "vibetuner/nixpkgs";
  };

  outputs = { self, vibetuner, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # vibetuner's nixpkgs: the vibetuner CLI added (built on first use, not on entering the
      # shell), MongoDB's unfree mongodb-ce allowed.
      forAllSystems = f: lib.genAttrs
        [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ]
        (system: f vibetuner.legacyPackages.${system});

      motd = ''
        vibetuner app development shell
          npm install && npm run build        CSS and JS bundles (npm run watch while you work)
          cargo run -- serve                  the app on http://127.0.0.1:8000
          cargo run -- check                  settings and templates
          cargo nextest run                   tests
          nix run .#services                  Redis and MongoDB, data in .data/ (see .env)
          nix build                           the self-contained package (result/bin/)
          nix build .#image                   its OCI image (docker load < result)
          nix flake check                     build and check it the way CI does
          nix run .#vibetuner -- crypto generate-key   a SESSION_KEY for production
        Tools: cargo, rustc, clippy, rustfmt, rust-analyzer, cargo-nextest, node, bun, mongod,
        mongosh, redis-server, process-compose
      '';
    in
    {
      packages = forAllSystems (pkgs: rec {
        default = vibetuner.lib.mkVibetunerApp {
          inherit pkgs;
          src = ./.;
        };
        inherit (default) image;
        services = vibetuner.lib.mkDevServices { inherit pkgs; };
        inherit (pkgs) vibetuner;
      });

      devShells = forAllSystems (pkgs: {
        default = vibetuner.lib.mkDevShell { inherit pkgs motd; };
      });

      checks = lib.recursiveUpdate
        (forAllSystems (pkgs: {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        }))
        {
          # The example host evaluates to a NixOS system (its derivation; nothing is built).
          x86_64-linux.example-host = vibetuner.legacyPackages.x86_64-linux.runCommand "example-host"
            {
              toplevel = builtins.unsafeDiscardOutputDependency
                self.nixosConfigurations.example.config.system.build.toplevel.drvPath;
            } ''echo "$toplevel" > $out'';
        };

      # A host running the app (nix/example-host.nix): two instances behind Caddy, a worker,
      # the app's own Redis. `nixos-rebuild switch --flake .#example` deploys it once adapted.
      nixosConfigurations.example = nixpkgs.lib.nixosSystem {
        modules = [
          vibetuner.nixosModules.default
          (import ./nix/example-host.nix {
            package = self.packages.x86_64-linux.default;
          })
        ];
      };
    };
}
