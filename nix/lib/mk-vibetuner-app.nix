# Builds a vibetuner app (a project from `vibetuner new` or `nix flake init -t vibetuner`) into a
# self-contained package: the app binary, wrapped so that it finds its templates, statics and the
# CSS/JS bundles (Tailwind standalone + daisyUI, esbuild + htmx) built without network access.
#
#   packages.default = vibetuner.lib.mkVibetunerApp { inherit pkgs; src = ./.; };
#
# The app's `vibetuner` dependency is served by the framework source of this flake (a cargo
# `[patch.crates-io]`), so the framework version is the one the app's flake.lock pins. The app
# must depend on it in the crates.io form (`vibetuner = "0.1.0"`, as the template does), not by a
# path to a local checkout.
{ crane }:

{
  # Package set to build with.
  pkgs
, # The app's project folder (holds Cargo.toml, vibetuner.toml, templates/, assets/).
  src
, # Cargo.lock to use; the app's own when it has one, else the framework's (a superset).
  cargoLock ? null
, # Extra arguments for crane (buildInputs, env, doCheck, ...), applied to every cargo step.
  craneArgs ? { }
}:

let
  inherit (pkgs) lib;
  craneLib = crane.mkLib pkgs;
  framework = import ../source.nix { inherit lib craneLib; };
  inherit (craneLib.crateNameFromCargoToml { inherit src; }) pname version;

  frameworkPatch = pkgs.writeText "vibetuner-framework-patch.toml" ''
    [patch.crates-io]
    vibetuner = { path = "${framework}/crates/vibetuner" }
  '';

  commonArgs = {
    inherit src pname version;
    cargoLock =
      if cargoLock != null then cargoLock
      else if builtins.pathExists (src + "/Cargo.lock") then src + "/Cargo.lock"
      else ../../Cargo.lock;
    strictDeps = true;
    doCheck = false;
    # No `--locked`: cargo completes the lock for the app offline, from the vendored crates.
    cargoExtraArgs = "--offline --config ${frameworkPatch}";
  } // craneArgs;

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  unwrapped = craneLib.buildPackage (commonArgs // { inherit cargoArtifacts; });

  # The npm packages assets/config.css and assets/config.js use (versions as in package.json).
  npmPackages = {
    daisyui = pkgs.fetchurl {
      url = "https://registry.npmjs.org/daisyui/-/daisyui-5.8.1.tgz";
      hash = "sha512-ptP4WHOJ6WltNnA5zwkg3GypOLhsyUM2FHuXCckWVEpWviioInFKsjnShCWYGYHsQ5P9bUCOH1tn45cKLeTUpg==";
    };
    "htmx.org" = pkgs.fetchurl {
      url = "https://registry.npmjs.org/htmx.org/-/htmx.org-4.0.1.tgz";
      hash = "sha512-oF7JgXhDW9UXCy/k1ZYFUQgzu/rm19ORWPSPNL91vPluB2PB9+MV55tyQdH/w7o2EAbTYUG5SDW1R60mdkdqGg==";
    };
  };

  # The project root the app serves from: its templates, statics and vibetuner.toml, with
  # assets/statics/{css/bundle.css,js/bundle.js} built as `npm run build` does.
  root = pkgs.stdenvNoCC.mkDerivation {
    pname = "${pname}-root";
    inherit version src;

    nativeBuildInputs = [
      pkgs.esbuild
      pkgs.tailwindcss_4
    ];

    buildPhase = ''
      runHook preBuild
      export HOME=$TMPDIR
      ${lib.concatStrings (
        lib.mapAttrsToList (name: tarball: ''
          mkdir -p node_modules/${name}
          tar -xzf ${tarball} -C node_modules/${name} --strip-components=1
        '') npmPackages
      )}
      # Tailwind scans the framework's templates for the classes they use.
      ${unwrapped}/bin/${pname} export-templates .vibetuner/templates
      tailwindcss -i assets/config.css -o assets/statics/css/bundle.css --minify
      esbuild assets/config.js --bundle --minify --format=esm --outfile=assets/statics/js/bundle.js
      runHook postBuild
    '';

    installPhase = ''
      runHook preInstall
      mkdir -p $out
      cp -r --parents vibetuner.toml templates assets/statics $out/
      runHook postInstall
    '';
  };
in
pkgs.stdenvNoCC.mkDerivation {
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

  passthru = { inherit cargoArtifacts unwrapped root; };

  meta = {
    description = "${pname}, a vibetuner web app";
    mainProgram = pname;
    platforms = lib.platforms.unix;
  };
}
