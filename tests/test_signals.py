"""Signals never land in the middle of someone else's code: utils/signals.py and train.py under load.

The guard tests run a small Python child that installs a SignalGuard; the training tests run the real
train.py (real procgen, real RLlib) and scripts/stress_signals.py, which loads the machine with busy
processes while it sends the signals.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.conftest import ROOT, run_script
from tests.test_train_e2e import STARTER, progress_lines

GUARD_CHILD = textwrap.dedent("""
    import hashlib, sys, time
    sys.path.insert(0, {root!r})
    from utils.signals import SignalGuard

    def on_signal(signum):
        {on_signal}

    guard = SignalGuard(on_signal)
    print("ready", flush=True)
    {main}
""")


def guard_child(tmp_path, on_signal, main):
    code = GUARD_CHILD.format(root=str(ROOT), on_signal=on_signal, main=main)
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_ready(proc):
    assert proc.stdout.readline().strip() == "ready"


def test_guard_acts_while_the_main_thread_is_inside_c_code(tmp_path):
    # pbkdf2 with many rounds stays in C without checking for signals, as a TF session or a Ray wait does:
    # a Python-level handler would only run after it returns, and "after" would be printed.
    proc = guard_child(tmp_path, on_signal='open("handled", "w").write(str(signum)); return 128 + signum',
                       main='hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9); print("after", flush=True)')
    wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert (tmp_path / "handled").read_text() == str(int(signal.SIGTERM))
    assert "after" not in out


def test_guard_keeps_the_signal_when_a_library_replaces_the_c_handler(tmp_path):
    """Ray's core installs absl's failure handler for SIGTERM while an algorithm is built; a SIGTERM it caught
    was printed as a crash and ended in SIGABRT with nothing saved. Here a library (ctypes, in a thread of its
    own, as Ray's are) sets SIGTERM back to the C default, which kills the process: the guard still handles it."""
    main = textwrap.dedent("""
        import ctypes, threading
        libc = ctypes.CDLL(None)
        libc.signal.restype = ctypes.c_void_p
        t = threading.Thread(target=lambda: libc.signal(15, ctypes.c_void_p(0)))  # SIG_DFL
        t.start(); t.join()
        print("replaced", flush=True)
        time.sleep(10**6)
    """)
    proc = guard_child(tmp_path, on_signal='open("handled", "w").write(str(signum)); return 128 + signum', main=main)
    wait_ready(proc)
    assert proc.stdout.readline().strip() == "replaced"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert (tmp_path / "handled").read_text() == str(int(signal.SIGTERM))


def test_second_signal_exits_at_once(tmp_path):
    proc = guard_child(tmp_path, on_signal='open("first", "w").close(); time.sleep(10**6)', main="time.sleep(10**6)")
    wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    while not (tmp_path / "first").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate()
    assert proc.returncode == 128 + signal.SIGINT
    assert "interrupted: second SIGINT received, exiting now" in out


def test_handler_waits_for_the_main_threads_write(tmp_path):
    # The main thread writes a file in two halves under guard.lock; the signal comes between them.
    main = textwrap.dedent("""
        with guard.lock:
            f = open("data", "w")
            f.write("first half,")
            f.flush()
            print("writing", flush=True)
            time.sleep(3)
            f.write("second half")
            f.close()
        time.sleep(10**6)
    """)
    proc = guard_child(tmp_path, on_signal='guard.acquire_lock(60); print("saved: " + open("data").read()); return 7',
                       main=main)
    wait_ready(proc)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 7
    assert "saved: first half,second half" in out


def test_stress_signals_at_small_size_under_load(tmp_path):
    """SIGTERM while learning and Ctrl-C (SIGINT to the group) while checkpointing, with 2 busy processes."""
    rows_file = tmp_path / "rows.json"
    proc = run_script("scripts/stress_signals.py", "--trials", "1", "--signal", "both", "--load", "2",
                      "--phases", "learning", "checkpointing", "--json", rows_file)
    rows = json.loads(rows_file.read_text())
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert [(r["signal"], r["phase"]) for r in rows] == [("term", "learning"), ("int-group", "checkpointing")]
    for row in rows:
        assert row["rc"] == 128 + (signal.SIGTERM if row["signal"] == "term" else signal.SIGINT)
        assert row["checkpoint_iteration"] >= row["completed_iteration"] >= 2
        assert row["resumed"] and row["resumed_timesteps"] > row["saved_timesteps"]


def test_empty_iterations_are_retried_then_refused_with_the_fix(tmp_path):
    # A timeout no runner can meet: every iteration comes back empty, as on a badly overloaded machine.
    proc = run_script("train.py", "-f", STARTER, "--outputs-dir", tmp_path, "--progress-bar", "off", "framework=tf",
                      "model.custom_model=impala_cnn_tf", "train_batch_size=1024", "minibatch_size=256",
                      "num_envs_per_env_runner=8", "num_env_runners=1", "sample_timeout_s=0.001")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    retries = [line for line in proc.stdout.splitlines() if line.startswith("warning: training iteration ")]
    assert len(retries) == 4 and "retrying (1 of 5)" in retries[0] and "raise sample_timeout_s (now 0.001 s)" in retries[0]
    assert "error: 5 training iterations in a row sampled no env steps" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not progress_lines(proc.stdout), "an empty iteration is not logged as done"
    result = tmp_path / "procgen-starter-example" / "coinrun" / "result.json"
    assert not result.exists() or result.read_text() == ""


def test_rollout_signal_writes_no_partial_summary(tmp_path):
    from tests.test_train_e2e import TINY, train

    train(tmp_path, *TINY)
    run_dir = tmp_path / "out" / "procgen-starter-example" / "coinrun"
    cmd = [sys.executable, "rollout.py", str(run_dir), "--episodes", "500", "--json", str(tmp_path / "r.json")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("episode: "):
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "interrupted: SIGTERM received after " in out and "of 500 episodes; no summary written" in out
    assert not (tmp_path / "r.json").exists()
