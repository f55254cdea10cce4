# Builds a vibetuner app (a project from `vibetuner new` or `nix flake init -t vibetuner`) into a
# self-contained package: the app binary, wrapped so that it finds its templates, statics and the
# CSS/JS bundles; plus an OCI image of it (`passthru.image`).
#
#   packages.default = vibetuner.lib.mkVibetunerApp { inherit pkgs; src = ./.; };
#
# Rust: the app's own Cargo.lock decides every crate version, so an app may add any crate. The
# framework comes from this flake's source (the revision the app's flake.lock pins), whatever
# form the app's Cargo.toml gives it: the git dependency on the canonical repository (as the
# template has it) or a path to a checkout (as `vibetuner new` writes from one). The crates are
# vendored by crane from the app's lock, with the framework's own lock as a fallback for crates
# a newer framework revision adds.
#
# CSS/JS: the npm packages pinned by the app's package-lock.json, each a fixed-output fetch
# (importNpmLock), run as `npm run build` runs them: the same Tailwind, daisyUI, esbuild and htmx
# as in development, over the app's templates and the framework's templates copied from the
# framework source (no app binary runs at build time, so CSS does not wait for Rust).
{ crane }:

{
  # Package set to build with.
  pkgs
, # The app's project folder (holds Cargo.toml, Cargo.lock, package.json, package-lock.json,
  # vibetuner.toml, templates/, assets/).
  src
, # Extra arguments for crane (buildInputs, env, doCheck, ...), applied to every cargo step.
  craneArgs ? { }
, # Extra attributes for the OCI image (`dockerTools.buildLayeredImage`), e.g. { tag = "v1"; }.
  imageArgs ? { }
}:

let
  inherit (pkgs) lib;
  craneLib = crane.mkLib pkgs;
  framework = import ../source.nix { inherit lib craneLib; };
  repository = (lib.importTOML ../../Cargo.toml).workspace.package.repository;
  inherit (craneLib.crateNameFromCargoToml { inherit src; }) pname version;

  # The app's lock with the framework as a local package (what it is in the build).
  appLock =
    if builtins.pathExists (src + "/Cargo.lock") then lib.importTOML (src + "/Cargo.lock")
    else throw "mkVibetunerApp: ${toString src} has no Cargo.lock; run `cargo generate-lockfile` there and commit it";
  isFramework = p: p.name == "vibetuner" && lib.hasPrefix "git+${repository}" (p.source or "");
  appLockLocal = appLock // {
    package = map (p: if isFramework p then removeAttrs p [ "source" ] else p) appLock.package;
  };

  vendorArgs = {
    cargoLockParsedList = [ appLockLocal (lib.importTOML ../../Cargo.lock) ];
  } // lib.optionalAttrs ((builtins.functionArgs craneLib.vendorMultipleCargoDeps) ? src) { inherit src; };
  cargoVendorDir = craneLib.vendorMultipleCargoDeps vendorArgs;

  commonArgs = {
    inherit src pname version cargoVendorDir;
    strictDeps = true;
    doCheck = false;
    # Point the `vibetuner` dependency at the framework source and drop the framework's git
    # commit from the lock: cargo then resolves offline from the vendored crates, keeping every
    # version the app's lock pins.
    nativeBuildInputs = [ pkgs.python3 ] ++ craneArgs.nativeBuildInputs or [ ];
    postPatch = ''
      python3 ${./use-framework-source.py} ${framework}/crates/vibetuner ${repository}
    '';
    cargoExtraArgs = "--offline";
  } // removeAttrs craneArgs [ "nativeBuildInputs" ];

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  unwrapped = craneLib.buildPackage (commonArgs // { inherit cargoArtifacts; });

  # The project root the app serves from: its templates, statics and vibetuner.toml, with
  # assets/statics/{css/bundle.css,js/bundle.js} built as `npm run build` builds them.
  root = pkgs.stdenv.mkDerivation {
    pname = "${pname}-root";
    inherit version src;

    npmDeps = pkgs.importNpmLock { npmRoot = src; };
    nativeBuildInputs = [ pkgs.nodejs pkgs.importNpmLock.npmConfigHook ];
    # Install scripts would fetch nothing here; the packages ship their platform binaries.
    npmRebuildFlags = [ "--ignore-scripts" ];

    buildPhase = ''
      runHook preBuild
      # What `cargo run -- export-templates` writes in development: the framework's templates,
      # which Tailwind scans for the classes they use (assets/config.css).
      mkdir -p .vibetuner
      cp -r ${framework}/crates/vibetuner/templates/frontend .vibetuner/templates
      chmod -R u+w .vibetuner
      node_modules/.bin/tailwindcss -i assets/config.css -o assets/statics/css/bundle.css --minify
      node_modules/.bin/esbuild assets/config.js --bundle --minify --format=esm --outfile=assets/statics/js/bundle.js
      runHook postBuild
    '';

    installPhase = ''
      runHook preInstall
      mkdir -p $out
      cp -r --parents vibetuner.toml templates assets/statics $out/
      runHook postInstall
    '';
  };

  app = pkgs.stdenvNoCC.mkDerivation {
    inherit pname version;
    dontUnpack = true;
    nativeBuildInputs = [ pkgs.makeWrapper ];

    installPhase = ''
      runHook preInstall
      mkdir -p $out/share
      ln -s ${root} $out/share/${pname}
      makeWrapper ${unwrapped}/bin/${pname} $out/bin/${pname} \
        --set-default VIBETUNER_ROOT $out/share/${pname}
      runHook postInstall
    '';

    passthru = { inherit cargoArtifacts unwrapped root image; };

    meta = {
      description = "${pname}, a vibetuner web app";
      mainProgram = pname;
      platforms = lib.platforms.unix;
    };
  };

  # An OCI image for hosts without NixOS: the app (binary, templates, statics, bundles) as a
  # non-root user, serving on 0.0.0.0:8000 in production mode, data under /data. Secrets: mount
  # them as files and set CREDENTIALS_DIRECTORY to their folder (e.g. /run/secrets), or pass
  # them as environment variables.
  image = pkgs.dockerTools.buildLayeredImage ({
    name = pname;
    tag = version;
    contents = [ pkgs.cacert ];
    fakeRootCommands = ''
      mkdir -p ./data ./tmp
      chown 1000:1000 ./data
      chmod 1777 ./tmp
    '';
    config = {
      User = "1000:1000";
      Entrypoint = [ (lib.getExe app) ];
      Cmd = [ "serve" ];
      WorkingDir = "/data";
      ExposedPorts."8000/tcp" = { };
      Volumes."/data" = { };
      Env = [
        "ENVIRONMENT=prod"
        "HOST=0.0.0.0"
        "PORT=8000"
        "DATA_DIR=/data"
        "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
      ];
    };
  } // imageArgs);
in
app
