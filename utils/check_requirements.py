"""Exit 0 when every `name==version` pin in the given requirement files is installed, else 1.

run.sh uses it (`python -m utils.check_requirements FILE...`) to decide whether the current Python can run the
project or a .venv is needed. Standard library only (utils.conventions reads the pins): it runs before
anything is installed.
"""

import sys
from importlib import metadata

from utils.conventions import read_pins, same_release


def missing(paths):
    out = []
    for path in paths:
        for pin in read_pins(path)[0]:
            try:
                have = metadata.version(pin.name)
            except metadata.PackageNotFoundError:
                out.append(f"{pin.name}=={pin.version} (not installed)")
                continue
            if not same_release(have, pin.version):
                out.append(f"{pin.name}=={pin.version} (found {have})")
    return out


if __name__ == "__main__":
    problems = missing(sys.argv[1:])
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
