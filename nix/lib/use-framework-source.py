"""Points a vibetuner app at the framework source Nix builds it with.

Usage: use-framework-source.py FRAMEWORK_CRATE REPOSITORY   (in the app's folder)

Cargo.toml: every `vibetuner` dependency ([dependencies], [dev-dependencies], ...), whether a git
dependency on REPOSITORY, a path or a version, inline (`vibetuner = { ... }`) or a table
(`[dependencies.vibetuner]`, as crane's dummy sources may write it), becomes
`{ path = FRAMEWORK_CRATE }` with its other keys (`features`, ...) kept. Cargo.lock: the
framework's git source line is dropped, as cargo records a path dependency. Fails when
[dependencies] has no `vibetuner`.
"""

import json
import re
import sys
import tomllib

crate, repository = sys.argv[1], sys.argv[2]
SOURCE_KEYS = {"git", "tag", "branch", "rev", "path", "version", "registry"}

with open("Cargo.toml", "rb") as f:
    manifest = tomllib.load(f)


def fields(dependency):
    """`key = value` items of the dependency pointing at the framework source."""
    if isinstance(dependency, str):
        dependency = {}
    keys = {k: v for k, v in dependency.items() if k not in SOURCE_KEYS}
    # JSON strings, booleans and lists of strings are TOML too.
    return ["path = %s" % json.dumps(crate)] + [
        "%s = %s" % (k, json.dumps(v)) for k, v in keys.items()
    ]


def inline(dependency):
    return "{ %s }" % ", ".join(fields(dependency))


def section_deps(section):
    if section in ("dependencies", "dev-dependencies", "build-dependencies"):
        return manifest.get(section, {})
    match = re.fullmatch(r"target\.(.+)\.(dependencies|dev-dependencies|build-dependencies)", section)
    if match:
        target = match.group(1).strip("'\"")
        return manifest.get("target", {}).get(target, {}).get(match.group(2), {})
    return None


if "vibetuner" not in manifest.get("dependencies", {}):
    sys.exit("Cargo.toml has no `vibetuner` entry in [dependencies]")

with open("Cargo.toml") as f:
    lines = f.read().split("\n")

out, section, skipping = [], "", False
for line in lines:
    header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$", line)
    if header:
        section = header.group(1).replace(" ", "")
        skipping = False
        table = re.fullmatch(r"(.*)\.vibetuner", section)
        deps = section_deps(table.group(1)) if table else None
        if deps is not None and "vibetuner" in deps:
            out.append(line)
            out.extend(fields(deps["vibetuner"]))
            skipping = True
            continue
    elif skipping:
        if line.strip():
            continue
    elif re.match(r"\s*vibetuner\s*=", line):
        deps = section_deps(section)
        if deps is not None and "vibetuner" in deps:
            out.append("vibetuner = %s" % inline(deps["vibetuner"]))
            continue
    out.append(line)

with open("Cargo.toml", "w") as f:
    f.write("\n".join(out))

with open("Cargo.lock") as f:
    lock = f.read().split("\n")
with open("Cargo.lock", "w") as f:
    f.write("\n".join(l for l in lock if not l.startswith('source = "git+' + repository)))
