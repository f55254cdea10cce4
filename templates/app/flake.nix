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

      # vibetuner's nixpkgs: the vibetuner CLI added, MongoDB's unfree mongodb-ce allowed.
      forAllSystems = f: lib.genAttrs
        [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ]
        (system: f vibetuner.legacyPackages.${system});

      motd = ''
        vibetuner app development shell
          npm install && npm run build    CSS and JS bundles (npm run watch while you work)
          cargo run -- serve              the app on http://127.0.0.1:8000
          cargo run -- check              settings and templates
          cargo nextest run               tests
          nix build                       the self-contained package (result/bin/)
          nix flake check                 build and check it the way CI does
          vibetuner crypto generate-key   a SESSION_KEY for production
        Tools: cargo, rustc, clippy, rustfmt, rust-analyzer, cargo-nextest, tailwindcss, esbuild,
        bun, node, mongod, mongosh, redis-server, vibetuner
      '';
    in
    {
      packages = forAllSystems (pkgs: {
        default = vibetuner.lib.mkVibetunerApp {
          inherit pkgs;
          src = ./.;
        };
      });

      devShells = forAllSystems (pkgs: {
        default = vibetuner.lib.mkDevShell { inherit pkgs motd; };
      });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      });

      # A host running the app: two instances behind Caddy, a worker, MongoDB and Redis.
      # Adapt it (hardware, domain, secrets) or copy the services.vibetuner block into your own
      # configuration; `nixos-rebuild switch --flake .#example` deploys it.
      nixosConfigurations.example = nixpkgs.lib.nixosSystem {
        modules = [
          vibetuner.nixosModules.default
          ({ pkgs, ... }: {
            nixpkgs.hostPlatform = "x86_64-linux";
            nixpkgs.config.allowUnfreePredicate = pkg: lib.getName pkg == "mongodb-ce";
            # Replace with the host's hardware configuration.
            boot.isContainer = true;
            system.stateVersion = "25.11";

            services.vibetuner = {
              enable = true;
              package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
              instances = 2;
              # A file outside the Nix store (agenix, sops-nix, or written by hand).
              credentials.SESSION_KEY = "/run/secrets/app-session-key";
            };

            services.caddy = {
              enable = true;
              virtualHosts."app.example.com".extraConfig = ''
                reverse_proxy 127.0.0.1:8000 127.0.0.1:8001
              '';
            };
            networking.firewall.allowedTCPPorts = [ 80 443 ];
          })
        ];
      };
    };
}
