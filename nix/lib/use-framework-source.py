"""Points a vibetuner app at the framework source Nix builds it with.

Usage: use-framework-source.py FRAMEWORK_CRATE REPOSITORY   (in the app's folder)

Cargo.toml: the `vibetuner` dependency, whether a git dependency (`vibetuner = { git = ... }`),
a path (`vibetuner = { path = ... }`) or a table (`[dependencies.vibetuner]`, as crane's dummy
sources write it), becomes `{ path = FRAMEWORK_CRATE }`. Cargo.lock: the framework's git source
line is dropped, as cargo records a path dependency. Fails when there is no such dependency.
"""

import re
import sys

crate, repository = sys.argv[1], sys.argv[2]
dependency = 'path = "%s"' % crate

with open("Cargo.toml") as f:
    lines = f.read().split("\n")

out, section, done, skipping = [], None, False, False
for line in lines:
    header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+\s*$", line)
    if header:
        section = header.group(1).replace('"', "").replace(" ", "")
        skipping = False
        if section == "dependencies.vibetuner":
            out.append(line)
            out.append(dependency)
            skipping = done = True
            continue
    elif skipping:
        continue
    elif section == "dependencies" and re.match(r"\s*vibetuner\s*=", line):
        out.append("vibetuner = { %s }" % dependency)
        done = True
        continue
    out.append(line)

if not done:
    sys.exit("Cargo.toml has no `vibetuner` entry in [dependencies]")
with open("Cargo.toml", "w") as f:
    f.write("\n".join(out))

with open("Cargo.lock") as f:
    lock = f.read().split("\n")
with open("Cargo.lock", "w") as f:
    f.write("\n".join(l for l in lock if not l.startswith('source = "git+' + repository)))
