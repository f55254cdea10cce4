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
