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

      # nixpkgs with the CLI (overlay) and MongoDB's unfree (SSPL) community edition allowed.
      pkgsFor = system: import nixpkgs {
        inherit system;
        overlays = [ self.overlays.default ];
        config.allowUnfreePredicate = pkg: lib.getName pkg == "mongodb-ce";
      };

      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));

      workspace = pkgs: import ./nix/package.nix {
        inherit lib;
        craneLib = crane.mkLib pkgs;
      };

      motd = ''
        vibetuner development shell
          cargo build / cargo run -p vibetuner-cli -- new DIR   build, generate an app
          cargo nextest run --workspace                         all tests (scripts/test.sh)
          cargo clippy --workspace --all-targets                lints
          nix flake check                                       clippy, fmt, nextest, module + VM tests
          scripts/nix-check.sh                                  offline Nix checks (parse, fmt, lock, template)
          mongod --dbpath .data/mongo / redis-server            local services (MONGODB_URL, REDIS_URL)
        Tools: cargo, rustc, clippy, rustfmt, rust-analyzer, cargo-nextest, tailwindcss, esbuild,
        bun, node, mongod, mongosh, redis-server, vibetuner
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
              `nix run github:alltuner/vibetuner-rs -- new my-app`.
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

      packages = forAllSystems (pkgs: {
        default = pkgs.vibetuner;
        inherit (pkgs) vibetuner;
        # The app template, built as a generated app builds itself (used by the VM test).
        example-app = self.lib.mkVibetunerApp {
          inherit pkgs;
          src = ./templates/app;
        };
      });

      devShells = forAllSystems (pkgs: {
        default = self.lib.mkDevShell { inherit pkgs motd; };
      });

      checks = forAllSystems (pkgs:
        let
          built = workspace pkgs;
        in
        {
          inherit (built) vibetuner clippy fmt nextest;
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) example-app;
          module-eval = pkgs.runCommand "vibetuner-module-eval"
            {
              result = import ./nix/tests/module-eval.nix { inherit lib; };
            } ''echo "$result" > $out'';
        } // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          vm = import ./nix/tests/vm.nix {
            inherit pkgs;
            module = self.nixosModules.default;
            app = self.packages.${pkgs.stdenv.hostPlatform.system}.example-app;
          };
        });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
