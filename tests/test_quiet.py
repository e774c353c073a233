"""utils.quiet: known start-up noise is dropped from stderr, everything else passes, nothing is lost.

Each test runs a real child Python that calls quiet.install(); the time limits are ceilings against hangs only.
"""

import os
import select
import subprocess
import sys
import textwrap
import time

from tests.conftest import ROOT
from utils import quiet

HANG_S = 120

# Lines copied from this project's runs (train.py, torch and tf, one env runner).
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUDA = "I0000 00:00:1796050566.753193    3276 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."
CUINIT = ("E0000 00:00:1796050673.740507    3661 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)")
GYM = "Gym has been unmaintained since 2022 and does not support NumPy 2.0 amongst other critical functionality."
FORWARDED_GYM = f"\x1b[36m(RolloutWorker pid=3449)\x1b[0m {GYM}"
FORWARDED_ABSL = f"\x1b[36m(pid=3449)\x1b[0m {ABSL}"
# Ray's form of a line that several workers printed: its first copy is forwarded as above, then this.
DEDUPLICATED_ABSL = f"\x1b[36m(pid=3450)\x1b[0m {ABSL}\x1b[32m [repeated 2x across cluster] (Ray deduplicates logs by default.)\x1b[39m"
RAY_GPUTIL = "2026-11-30 14:56:56,777\tWARNING util.py:62 -- Install gputil for GPU system monitoring."
RAY_SLICES = ("2026-12-01 01:44:28,728\tWARNING sgd.py:55 -- DeprecationWarning: `_get_slice_indices` has been deprecated. "
              "This will raise an error in the future!")
RAY_POLICY_NAME = ("2026-12-01 01:44:38,808\tWARNING policy.py:143 -- Can not figure out a durable policy name for <class "
                   "'algorithms.ppg.policy.torch_policy_class.<locals>.PPGTorchPolicy'>. You are probably trying to "
                   "checkpoint a custom policy.")
NOISE = [ABSL, CUDA, CUINIT, GYM, FORWARDED_GYM, FORWARDED_ABSL, DEDUPLICATED_ABSL, RAY_GPUTIL, RAY_SLICES, RAY_POLICY_NAME]

# What must pass: our lines, a traceback, a Ray warning that is not in the list, a cuInit error of a real GPU.
REAL_ERR = [
    "error: experiments/impala-baseline.yaml: config.lr must be a number, not 'abc'.",
    "Traceback (most recent call last):",
    "2026-11-30 14:56:59,380\tWARNING algorithm.py:1 -- Something the user should read.",
    "\x1b[36m(RolloutWorker pid=3449)\x1b[0m ValueError: observation out of bounds",
    "E0000 00:00:1.5    1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: CUDA_ERROR_NO_DEVICE (100)",
]
REAL_OUT = ["training_iteration: 1, timesteps_total: 1024", "checkpoint: /tmp/x/checkpoint_000001", GYM]


def child(body, verbose=False, **kwargs):
    """Popen a Python that installs the filter and runs `body`, from the project root."""
    code = f"import os, sys, time\nfrom utils import quiet\nquiet.install(verbose={verbose})\n" + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENV}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, **kwargs)


def run_child(body, verbose=False):
    proc = child(body, verbose, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0, err
    return out, err


MIXED = f"""
noise, real_err, real_out = {NOISE!r}, {REAL_ERR!r}, {REAL_OUT!r}
for i in range(len(real_err)):
    os.write(2, (noise[i] + "\\n").encode())           # C++ style, straight to the fd
    print(real_out[i % len(real_out)], flush=True)     # our key: value lines on stdout
    print(noise[-1 - i], file=sys.stderr)              # Python style (gym's banner, Ray's loggers)
    os.write(2, (real_err[i] + "\\n").encode())
"""


def expected_out():
    return [REAL_OUT[i % len(REAL_OUT)] for i in range(len(REAL_ERR))]


def test_noise_is_dropped_and_real_lines_pass_in_order():
    out, err = run_child(MIXED)  # exits normally: the atexit drain must deliver the tail
    assert out.splitlines() == expected_out()  # stdout is not filtered, not even a gym-looking line
    assert err.splitlines() == REAL_ERR


def test_verbose_shows_everything():
    out, err = run_child(MIXED, verbose=True)
    assert out.splitlines() == expected_out()
    assert err.splitlines() == [line for i, r in enumerate(REAL_ERR) for line in (NOISE[i], NOISE[-1 - i], r)]


def test_flush_then_os_exit_loses_nothing():
    out, err = run_child(f"""
        for i in range(3000):
            os.write(2, b"line %d\\n" % i)
            os.write(2, {(CUDA + chr(10)).encode()!r})
        os.write(2, b"last, without newline")
        quiet.flush(timeout=60)
        os._exit(0)
    """)
    assert err == "".join(f"line {i}\n" for i in range(3000)) + "last, without newline"


def test_flush_without_install_and_second_install_are_harmless():
    proc = subprocess.run([sys.executable, "-c", "from utils import quiet\nprint('x', end='')\nquiet.flush()\n"
                           "quiet.install(); quiet.install(); import os; os.write(2, b'y\\n'); quiet.flush(); os._exit(0)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "x", "y\n")


def read_until(fd, needle, ceiling=HANG_S):
    """Bytes read from `fd` until `needle` is among them, end of file, or the ceiling."""
    got, end = b"", time.monotonic() + ceiling
    while (needle is None or needle not in got) and time.monotonic() < end:
        if select.select([fd], [], [], 1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: a pty whose last writer has gone
                break
            if not chunk:
                break
            got += chunk
    return got


def test_partial_lines_and_progress_pass_while_the_process_runs():
    # The child blocks on stdin after writing, so what arrives came through without an exit or a flush.
    proc = child("""
        print("progress: 1", flush=True)
        os.write(2, b"complete line\\n")
        os.write(2, b"\\r 50%|#####     | 5/10")   # a tqdm update: no newline
        sys.stdin.read()
    """, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert read_until(proc.stdout.fileno(), b"progress: 1\n") == b"progress: 1\n"
        assert read_until(proc.stderr.fileno(), b"5/10") == b"complete line\n\r 50%|#####     | 5/10"
    finally:
        proc.stdin.close()
        proc.wait(timeout=HANG_S)


def test_terminal_stays_a_terminal():
    # The progress bar is drawn only when stderr is a terminal: under a pty, install() must keep it one.
    master, slave = os.openpty()
    proc = child(f"""
        os.write(2, {(ABSL + chr(10)).encode()!r})
        print("isatty", sys.stderr.isatty(), file=sys.stderr)
    """, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    got = read_until(master, None)
    proc.wait(timeout=HANG_S)
    os.close(master)
    assert got == b"isatty True\r\n"  # the terminal itself turns \n into \r\n


def test_end_to_end_tensorflow_and_gym_start_up_is_quiet():
    body = """
        import tensorflow as tf
        import gym
        tf.constant(1.0)
        print("ready", flush=True)
    """
    # Without the filter the noise is really there (else this test would prove nothing) ...
    env = {k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENV}
    loud = subprocess.run([sys.executable, "-c", "import utils\n" + textwrap.dedent(body)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG_S)
    assert "ready" in loud.stdout
    assert sum(quiet.is_noise(line) for line in loud.stderr.splitlines()) >= 3, loud.stderr
    # ... and with it, gone.
    out, err = run_child(body)
    assert out == "ready\n"
    assert [line for line in err.splitlines() if quiet.is_noise(line)] == []
    for text in ("absl::InitializeLog", "Could not find cuda drivers", "Gym has been unmaintained", "cuInit"):
        assert text not in err


def test_only_known_noise_matches():
    for line in NOISE:
        assert quiet.is_noise(line), line
    # A user's own policy class still gets RLlib's advice.
    user_policy = RAY_POLICY_NAME.replace("algorithms.ppg.policy", "algorithms.my_algo.policy")
    for line in REAL_ERR + REAL_OUT[:2] + ["", "WARNING: something else", "  File \"train.py\", line 1", user_policy]:
        assert not quiet.is_noise(line), line


def test_tracebacks_and_crash_dumps_reach_stderr():
    # An uncaught exception prints at exit (the atexit drain passes it on); a segfault kills the filter
    # thread, so faulthandler must write its dump to the real stderr.
    for body, exit_code, text in (("raise ValueError('bad value')", 1, "ValueError: bad value"),
                                  ("import ctypes; ctypes.string_at(0)", -11, "Fatal Python error: Segmentation fault")):
        proc = child(body, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=HANG_S)
        assert proc.returncode == exit_code and text in err, err
