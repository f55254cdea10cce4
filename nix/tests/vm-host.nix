# The NixOS host of the VM test (nix/tests/vm.nix), also evaluated by nix/tests/module-eval.nix:
# the template app as `services.vibetuner` (two web instances, a worker, its own Redis and
# MongoDB) and a second app on the embedded store from `services.vibetuner.apps`.
{ app }:

{
  # Test secrets; real hosts point credentials at files outside the store (agenix, sops-nix).
  environment.etc = {
    "vibetuner/session-key".text = "vm-test-session-key-with-more-than-32-characters";
    "vibetuner/smtp-url".text = "smtp://127.0.0.1:2525";
  };

  # mongodb-ce is unfree: the VM test's pkgs and the nixos-toplevel check allow it.
  services.vibetuner = {
    enable = true;
    package = app;
    instances = 2;
    mongodb.createLocally = true;
    credentials = {
      SESSION_KEY = "/etc/vibetuner/session-key";
      SMTP_URL = "/etc/vibetuner/smtp-url";
    };

    apps.second = {
      package = app;
      port = 8100;
      worker.enable = false;
      credentials = {
        SESSION_KEY = "/etc/vibetuner/session-key";
        SMTP_URL = "/etc/vibetuner/smtp-url";
      };
    };
  };
}
