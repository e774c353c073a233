"""Exit 0 when every `name==version` pin in the given requirement files is installed, else 1.

run.sh uses it to decide whether the current Python can run the project or a .venv is needed.
Standard library only: it runs before anything is installed.
"""

import re
import sys
from importlib import metadata

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def missing(paths):
    out = []
    for path in paths:
        for line in open(path):
            m = PIN.match(line)
            if not m:
                continue
            name, version = m.group(1), m.group(3)
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                out.append(f"{name}=={version} (not installed)")
                continue
            if have.split("+")[0] != version.split("+")[0]:
                out.append(f"{name}=={version} (found {have})")
    return out


if __name__ == "__main__":
    problems = missing(sys.argv[1:])
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
