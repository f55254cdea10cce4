# An example NixOS host running this app with services.vibetuner: two web instances behind
# Caddy, a worker and the app's own Redis, data in the embedded store under /var/lib/vibetuner.
# `nixosConfigurations.example` in flake.nix uses it; adapt it (hardware, domain, secrets) or
# copy the services.vibetuner block into your own configuration.
{ package }:

{
  nixpkgs.hostPlatform = "x86_64-linux";
  # Replace with the host's hardware configuration.
  boot.isContainer = true;
  system.stateVersion = "25.11";

  services.vibetuner = {
    enable = true;
    inherit package;
    instances = 2;
    # Files outside the Nix store (agenix, sops-nix, or written by hand), read by the app from
    # its systemd credentials: make the key with `vibetuner crypto generate-key`; the mail URL
    # looks like smtps://user:password@smtp.example.com:465.
    credentials = {
      SESSION_KEY = "/run/secrets/app-session-key";
      SMTP_URL = "/run/secrets/app-smtp-url";
    };
    settings.BASE_URL = "https://app.example.com";
    # For MongoDB instead of the embedded store (unfree: allow mongodb-ce in nixpkgs.config):
    # mongodb.createLocally = true;
  };

  services.caddy = {
    enable = true;
    virtualHosts."app.example.com".extraConfig = ''
      reverse_proxy 127.0.0.1:8000 127.0.0.1:8001
    '';
  };
  networking.firewall.allowedTCPPorts = [ 80 443 ];
}
