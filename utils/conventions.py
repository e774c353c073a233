"""One home for the project's conventions that several entry points share.

Standard library only (with `packaging` where it is installed): sagemaker's in-job entry point and
utils/check_requirements.py import it before the pinned requirements are installed.
"""

import re
from dataclasses import dataclass
from pathlib import Path

# The experiment run.sh, train.py, rollout.py and aicrowd_tools use when EXPERIMENT is not set.
DEFAULT_EXPERIMENT = "experiments/impala-baseline.yaml"
DEFAULT_OUTPUTS_DIR = "outputs"
# The SageMaker instance group whose first host runs the Ray head and the learner.
LEARNER_GROUP = "learner"


def run_dir(outputs_dir, name, game):
    """Where a training run of experiment `name` on `game` lives: OUTPUTS_DIR/NAME/GAME."""
    return Path(outputs_dir) / name / game


# --------------------------------------------------------------------------- requirement pins


@dataclass(frozen=True)
class Pin:
    name: str
    extras: str  # "[rllib]" or ""
    version: str
    marker: str = ""

    @property
    def key(self):
        return normalize(self.name)


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(\[[^\]]*\])?\s*==\s*([0-9A-Za-z.+!_\-]+)\s*(?:;\s*([^#]*?))?\s*$")


def parse_requirement(line):
    """A requirements.txt line -> Pin; None for a blank or comment line; ValueError for one that is not name==version."""
    text = line.split(" #")[0].strip()
    if not text or text.startswith("#"):
        return None
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # before anything is installed: the same grammar, for the pins this project writes
        m = _PIN.match(text)
        if not m:
            raise ValueError(text) from None
        return Pin(m.group(1), m.group(2) or "", m.group(3), m.group(4) or "")
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise ValueError(text) from None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version or req.url:
        raise ValueError(text)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return Pin(req.name, extras, specs[0].version, str(req.marker) if req.marker else "")


def read_pins(path):
    """(pins, loose): the name==version pins of a requirements file and the (line number, text) of other requirements."""
    pins, loose = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            pin = parse_requirement(line)
        except ValueError as e:
            loose.append((number, str(e)))
            continue
        if pin is not None:
            pins.append(pin)
    return pins, loose


def pinned_version(path, name):
    """The version `name` is pinned to in a requirements file (None when it is not)."""
    pins, _ = read_pins(path)
    return next((p.version for p in pins if p.key == normalize(name)), None)


def normalize(name):
    """PEP 503 name: `PyYAML`, `pyyaml` and `py_yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_release(a, b):
    """Versions equal but for a local build tag (2.9.0+cu128 is 2.9.0)."""
    return a.split("+")[0] == b.split("+")[0]
