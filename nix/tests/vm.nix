# NixOS VM test: the app template, built with lib.mkVibetunerApp, served by services.vibetuner
# with two web instances, a worker and its own MongoDB and Redis, plus a second app on the
# embedded store (the host is nix/tests/vm-host.nix); then the framework's MongoDB suites
# (`tests`: nix/package.nix's mongodbTests) against that mongod. Needs KVM.
{ pkgs, module, app, tests }:

pkgs.testers.runNixOSTest {
  name = "vibetuner";

  nodes.machine = { pkgs, ... }: {
    imports = [ module (import ./vm-host.nix { inherit app; }) ];

    virtualisation.memorySize = 2048;
    environment.systemPackages = [ pkgs.curl ];
  };

  testScript = ''
    import json

    machine.wait_for_unit("vibetuner-mongodb.service")
    machine.wait_for_unit("redis-vibetuner.service")
    machine.wait_for_unit("vibetuner-web-1.service")
    machine.wait_for_unit("vibetuner-web-2.service")
    machine.wait_for_unit("vibetuner-worker-1.service")
    machine.wait_for_open_port(8000)
    machine.wait_for_open_port(8001)

    with subtest("the second app runs on its own port, user and store"):
        machine.wait_for_unit("second-web-1.service")
        machine.wait_for_open_port(8100)
        machine.succeed("curl --fail --silent http://127.0.0.1:8100/health/ready")
        machine.succeed("test -d /var/lib/second && stat -c %U /var/lib/second | grep -qx second")

    with subtest("MongoDB listens on no TCP port, and its socket is the app's alone"):
        machine.fail("ss -ltn | grep -q 27017")
        machine.succeed("stat -c %U:%a /run/vibetuner-mongodb | grep -qx vibetuner:700")

    with subtest("no secret in the environment of a process"):
        pid = machine.succeed("systemctl show --property=MainPID --value vibetuner-web-1.service").strip()
        machine.fail(f"tr '\\0' '\\n' < /proc/{pid}/environ | grep -q SESSION_KEY")

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

    with subtest("the framework's MongoDB suites pass against mongod"):
        # As the app's user, the only one that may open the sockets; the fixtures where the
        # binaries were built.
        workspace = machine.succeed("cat ${tests}/workspace").strip()
        machine.succeed(f"mkdir -p $(dirname {workspace}) && ln -sfn ${tests.src} {workspace}")
        machine.succeed(
            "runuser -u vibetuner -- env HOME=/tmp "
            "TEST_MONGODB_URL=mongodb://%2Frun%2Fvibetuner-mongodb%2Fmongodb.sock "
            "TEST_REDIS_URL=redis+unix:///run/redis-vibetuner/redis.sock "
            "${tests}/bin/integration --test-threads=1 mongo >&2",
            timeout=1800,
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
