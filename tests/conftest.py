"""Shared test setup: Ray and outputs go to temporary directories, never /tmp/ray or ~/ray_results."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import utils  # noqa: F401, I001  (sets TF_USE_LEGACY_KERAS before TF/Ray load)

import pytest  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
# Unix socket paths are limited to 107 bytes, so Ray's temp dir must stay short.
RAY_TMP = tempfile.mkdtemp(prefix="rt", dir="/tmp")
os.environ["RAY_TMPDIR"] = RAY_TMP
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_script(*args, cwd=ROOT, env=None, timeout=600, check=False):
    """Run one of the project's scripts as a user would, returning the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def write_yaml(tmp_path):
    """Write YAML text to a temp file and return its path."""

    def write(text, name="exp.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
