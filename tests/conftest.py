"""Shared test setup: Ray and outputs go to temporary directories, never /tmp/ray or ~/ray_results."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import utils  # noqa: F401, I001  (sets TF_USE_LEGACY_KERAS before TF/Ray load)

import pytest  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
# Unix socket paths are limited to 107 bytes, so Ray's temp dir must stay short.
RAY_TMP = tempfile.mkdtemp(prefix="rt", dir="/tmp")
os.environ["RAY_TMPDIR"] = RAY_TMP
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# The slowest training a correct run may show (env steps/s; issue 10 saw 80 on a loaded 2-core machine) and
# the most its start-up may take, for hang ceilings derived from the work instead of guessed from this machine.
SLOWEST_STEPS_PER_S = 50
SLOWEST_START_S = 1800


def hang_ceiling(env_steps, runs=1):
    """Seconds a test that trains `env_steps` in `runs` processes may take before it counts as hung."""
    return runs * SLOWEST_START_S + env_steps / SLOWEST_STEPS_PER_S


def run_script(*args, cwd=ROOT, env=None, timeout=None, check=False):
    """Run one of the project's scripts as a user would, returning the CompletedProcess.

    No timeout by default: a slow or loaded machine makes a run slower, never red. pytest-timeout's
    per-test ceiling (pyproject.toml) is the guard against hangs.
    """
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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(env=None):
    """A moto server (the stand-in for AWS, which cannot be reached from here) on 127.0.0.1.

    Returns (process, endpoint URL) once it accepts connections; no deadline: pytest-timeout's ceiling is the
    guard against a server that never comes up. Stop it with stop_moto(process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            assert proc.poll() is None, f"moto server exited with {proc.returncode}"
            time.sleep(0.2)


def stop_moto(proc):
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
