# NixOS VM test: the app template, built with lib.mkVibetunerApp, served by services.vibetuner
# with two web instances, a worker and the local MongoDB and Redis. Needs KVM.
{ pkgs, module, app }:

pkgs.testers.runNixOSTest {
  name = "vibetuner";

  nodes.machine = { pkgs, ... }: {
    imports = [ module ];

    virtualisation.memorySize = 2048;
    environment.systemPackages = [ pkgs.curl ];

    # A test key; real hosts point the credential at a secret outside the store.
    environment.etc."vibetuner/session-key".text = "vm-test-session-key-with-more-than-32-characters";

    services.vibetuner = {
      enable = true;
      package = app;
      instances = 2;
      credentials.SESSION_KEY = "/etc/vibetuner/session-key";
    };
  };

  testScript = ''
    import json

    machine.wait_for_unit("mongodb.service")
    machine.wait_for_unit("redis-vibetuner.service")
    machine.wait_for_unit("vibetuner-web-1.service")
    machine.wait_for_unit("vibetuner-web-2.service")
    machine.wait_for_unit("vibetuner-worker-1.service")
    machine.wait_for_open_port(8000)
    machine.wait_for_open_port(8001)

    with subtest("both instances are ready"):
        machine.succeed("curl --fail --silent http://127.0.0.1:8000/health/ready")
        machine.succeed("curl --fail --silent http://127.0.0.1:8001/health/ready")

    with subtest("a note created on one instance is listed by the other"):
        status = machine.succeed(
            "curl --silent --output /dev/null --write-out '%{http_code}' "
            "-X POST -H 'Content-Type: application/json' "
            "-d '{\"title\": \"From the VM test\", \"body\": \"hello\"}' "
            "http://127.0.0.1:8000/api/notes"
        )
        assert status == "201", f"POST /api/notes answered {status}"
        notes = json.loads(machine.succeed("curl --fail --silent http://127.0.0.1:8001/api/notes"))
        assert notes["total"] >= 1, notes
        assert any(n["title"] == "From the VM test" for n in notes["items"]), notes

    with subtest("the worker enriches the note through the Redis queue"):
        machine.wait_until_succeeds(
            "curl --fail --silent http://127.0.0.1:8001/api/notes | grep -q '\"word_count\":5'",
            timeout=60,
        )

    with subtest("the app restarts cleanly and keeps its data"):
        machine.succeed("systemctl restart vibetuner.target")
        machine.wait_for_unit("vibetuner-web-1.service")
        machine.wait_for_open_port(8000)
        machine.succeed("curl --fail --silent http://127.0.0.1:8000/health/ready")
        notes = json.loads(machine.succeed("curl --fail --silent http://127.0.0.1:8000/api/notes"))
        assert any(n["title"] == "From the VM test" for n in notes["items"]), notes
        for unit in ["vibetuner-web-1", "vibetuner-web-2", "vibetuner-worker-1"]:
            restarts = machine.succeed(f"systemctl show --property=NRestarts --value {unit}.service").strip()
            assert restarts == "0", f"{unit} restarted {restarts} times after failures"
  '';
}
