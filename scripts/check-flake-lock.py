#!/usr/bin/env python3
"""Checks that DIR/flake.lock agrees with DIR/flake.nix without fetching anything.

Usage: scripts/check-flake-lock.py DIR

flake.nix's inputs are read with `nix-instantiate` (only the `inputs` attribute is evaluated).
Checked: the root node lists exactly the flake's inputs; a `url` input points at a node whose
`original` is that url parsed, a `follows` input at the followed path; `flake = false` inputs
are marked so; every locked node has rev, narHash and lastModified; every node is reachable.
"""

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl


def fail(message):
    print(f"flake.lock check failed: {message}", file=sys.stderr)
    sys.exit(1)


def flake_inputs(directory):
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E",
         f"(import {directory.resolve()}/flake.nix).inputs or {{ }}"],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        fail(f"cannot evaluate the inputs of {directory}/flake.nix:\n{out.stderr}")
    return json.loads(out.stdout)


def parse_url(url):
    """The `original` attrset Nix writes for a flake url (github:, gitlab:, path:, git+...)."""
    url, _, query = url.partition("?")
    params = dict(parse_qsl(query))
    scheme, _, rest = url.partition(":")
    if scheme in ("github", "gitlab", "sourcehut"):
        parts = rest.split("/")
        if len(parts) < 2:
            fail(f"{url}: expected {scheme}:OWNER/REPO[/REF]")
        original = {"type": scheme, "owner": parts[0], "repo": parts[1]}
        if len(parts) > 2:
            ref = "/".join(parts[2:])
            is_rev = len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)
            original["rev" if is_rev else "ref"] = ref
    elif scheme == "path":
        original = {"type": "path", "path": rest}
    elif scheme.startswith("git+") or scheme == "git":
        original = {"type": "git", "url": scheme.removeprefix("git+") + ":" + rest}
    else:
        original = {"type": "indirect", "id": url}
    original.update(params)
    return original


def check(directory):
    lock_path = directory / "flake.lock"
    lock = json.loads(lock_path.read_text())
    if lock.get("version") != 7:
        fail(f"{lock_path}: version {lock.get('version')}, expected 7")
    nodes = lock["nodes"]
    root = nodes[lock["root"]]
    inputs = flake_inputs(directory)
    locked_inputs = root.get("inputs", {})
    if set(inputs) != set(locked_inputs):
        fail(f"flake.nix inputs {sorted(inputs)} but flake.lock root inputs {sorted(locked_inputs)}")

    for name, spec in inputs.items():
        target = locked_inputs[name]
        if "follows" in spec:
            expected = spec["follows"].split("/") if spec["follows"] else []
            if target != expected:
                fail(f"input {name} follows {spec['follows']!r} but the lock has {target!r}")
            continue
        if not isinstance(target, str) or target not in nodes:
            fail(f"input {name}: no node {target!r} in flake.lock")
        node = nodes[target]
        if "url" in spec:
            expected = parse_url(spec["url"])
            if node.get("original") != expected:
                fail(f"input {name}: url {spec['url']!r} means {expected}, lock has {node.get('original')}")
        if spec.get("flake", True) is False and node.get("flake") is not False:
            fail(f"input {name} has flake = false but its node does not")

    reachable = {lock["root"]}
    pending = [lock["root"]]
    while pending:
        node = nodes[pending.pop()]
        for target in node.get("inputs", {}).values():
            if isinstance(target, str) and target not in reachable:
                if target not in nodes:
                    fail(f"node {target!r} is referenced but missing")
                reachable.add(target)
                pending.append(target)
    if set(nodes) != reachable:
        fail(f"unreachable nodes: {sorted(set(nodes) - reachable)}")

    for key, node in nodes.items():
        if key == lock["root"]:
            continue
        locked = node.get("locked", {})
        missing = [field for field in ("narHash", "lastModified") if field not in locked]
        if locked.get("type") in ("github", "gitlab", "sourcehut", "git") and "rev" not in locked:
            missing.append("rev")
        if "original" not in node or missing:
            fail(f"node {key}: missing {', '.join(missing) or 'original'}")
        original = node["original"]
        for field in ("type", "owner", "repo"):
            if field in original and original[field] != locked.get(field):
                fail(f"node {key}: original {field} {original[field]!r} but locked {locked.get(field)!r}")
    print(f"ok: {lock_path} matches flake.nix ({', '.join(sorted(inputs))})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    check(Path(sys.argv[1]))
