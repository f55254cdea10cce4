{
  description = "vibetuner: a batteries-included Rust web framework (axum, minijinja, htmx, Tailwind, daisyUI) and project generator";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    crane.url = "github:ipetkov/crane";
  };

  outputs = { self, nixpkgs, crane }:
    let
      inherit (nixpkgs) lib;

      systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];

      # The canonical repository, written once: Cargo.toml's `repository`.
      repository = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.repository;
      flakeRef = builtins.replaceStrings [ "https://github.com/" ] [ "github:" ] repository;

      # nixpkgs with the CLI (overlay) and MongoDB's unfree (SSPL) community edition allowed.
      pkgsFor = system: import nixpkgs {
        inherit system;
        overlays = [ self.overlays.default ];
        config.allowUnfreePredicate = pkg: lib.getName pkg == "mongodb-ce";
      };

      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));

      workspace = pkgs: import ./nix/package.nix {
        inherit lib pkgs;
        craneLib = crane.mkLib pkgs;
      };

      # Evaluates (does not build) a NixOS system: the check depends on its derivation only.
      evalCheck = pkgs: name: nixos: pkgs.runCommand name
        {
          toplevel = builtins.unsafeDiscardOutputDependency nixos.config.system.build.toplevel.drvPath;
        } ''echo "$toplevel" > $out'';

      motd = ''
        vibetuner development shell
          cargo build / cargo run -p vibetuner-cli -- new DIR   build, generate an app
          cargo nextest run --workspace                         all tests (scripts/test.sh)
          cargo clippy --workspace --all-targets                lints
          nix run .#services                                    Redis and MongoDB, data in .data/
          nix flake check                                       clippy, fmt, nextest, module + VM tests
          scripts/nix-check.sh                                  offline Nix checks (parse, fmt, lock, template)
        Tools: cargo, rustc, clippy, rustfmt, rust-analyzer, cargo-nextest, node, bun, mongod,
        mongosh, redis-server, process-compose
      '';
    in
    {
      # Kept free of inputs: `nix flake init -t` evaluates this without fetching nixpkgs or crane.
      templates = {
        app = {
          path = ./templates/app;
          description = "A vibetuner web app (the same files as `vibetuner new --defaults`)";
          welcomeText = ''
            # A new vibetuner app

            - `nix develop` gives the toolchain; `cargo run -- serve` starts the app on
              http://127.0.0.1:8000 (build CSS/JS first: `npm install && npm run build`).
            - The project is named `app`. For your own names, generate it with questions instead:
              `nix run ${flakeRef} -- new my-app`.
            - `nix build` makes a self-contained package; `nixosConfigurations.example` in
              flake.nix shows a NixOS host running it with `services.vibetuner`.
          '';
        };
        default = self.templates.app;
      };

      lib = {
        # `vibetuner.lib.mkVibetunerApp { inherit pkgs; src = ./.; }`: see nix/lib/mk-vibetuner-app.nix.
        mkVibetunerApp = import ./nix/lib/mk-vibetuner-app.nix { inherit crane; };
        # `vibetuner.lib.mkDevShell { inherit pkgs; motd = "..."; }`: the shared toolchain.
        mkDevShell = import ./nix/lib/dev-shell.nix { inherit crane; };
        # `vibetuner.lib.mkDevServices { inherit pkgs; }`: Redis and MongoDB for `nix run .#services`.
        mkDevServices = import ./nix/lib/dev-services.nix;
      };

      nixosModules = {
        vibetuner = import ./nix/modules/vibetuner.nix;
        default = self.nixosModules.vibetuner;
      };

      overlays.default = final: _: {
        inherit (workspace final) vibetuner;
      };

      # nixpkgs configured as above, for generated apps (MongoDB allowed, the CLI included).
      legacyPackages = forAllSystems lib.id;

      packages = forAllSystems (pkgs: rec {
        default = pkgs.vibetuner;
        inherit (pkgs) vibetuner;
        # The app template, built as a generated app builds itself (used by the VM test).
        example-app = self.lib.mkVibetunerApp {
          inherit pkgs;
          src = ./templates/app;
        };
        # Its OCI image (`docker load < result`).
        example-app-image = example-app.image;
        # `nix run .#services`: Redis and MongoDB for development, data in .data/.
        services = self.lib.mkDevServices { inherit pkgs; };
      });

      devShells = forAllSystems (pkgs: {
        default = self.lib.mkDevShell { inherit pkgs motd; };
      });

      checks = forAllSystems (pkgs:
        let
          built = workspace pkgs;
        in
        {
          inherit (built) vibetuner clippy fmt nextest nextest-cli;
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) example-app services;
          module-eval = pkgs.runCommand "vibetuner-module-eval"
            {
              result = import ./nix/tests/module-eval.nix { inherit lib; };
            } ''echo "$result" > $out'';
        } // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          # nix/tests/units/ is what the module renders, and systemd rates its app and worker
          # units at an exposure of at most 2.0.
          units = pkgs.runCommand "vibetuner-units"
            {
              nativeBuildInputs = [ pkgs.systemd ];
              units = builtins.toJSON (import ./nix/tests/units.nix { inherit lib; });
              passAsFile = [ "units" ];
            } ''
            mkdir rendered
            ${lib.getExe pkgs.jq} -r 'keys[]' "$unitsPath" | while read -r name; do
              ${lib.getExe pkgs.jq} -r --arg n "$name" '.[$n]' "$unitsPath" > "rendered/$name"
            done
            diff -r ${./nix/tests/units} rendered
            for unit in rendered/*-web-*.service rendered/*-worker-*.service; do
              systemd-analyze security --offline=true --threshold=20 "$PWD/$unit"
            done
            touch $out
          '';
          vm = import ./nix/tests/vm.nix {
            inherit pkgs;
            tests = built.mongodbTests;
            module = self.nixosModules.default;
            app = self.packages.${pkgs.stdenv.hostPlatform.system}.example-app;
          };
          # A real NixOS system with the module (the VM test's host), evaluated to its
          # system.build.toplevel derivation.
          nixos-toplevel = evalCheck pkgs "vibetuner-nixos-toplevel" (nixpkgs.lib.nixosSystem {
            modules = [
              self.nixosModules.default
              (import ./nix/tests/vm-host.nix {
                app = self.packages.${pkgs.stdenv.hostPlatform.system}.example-app;
              })
              {
                nixpkgs.hostPlatform = pkgs.stdenv.hostPlatform.system;
                nixpkgs.config.allowUnfreePredicate = pkg: lib.getName pkg == "mongodb-ce";
                boot.isContainer = true;
                system.stateVersion = "25.11";
              }
            ];
          });
        });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
