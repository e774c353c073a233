"""Signal stress test: tiny trainings under CPU load, each stopped by a signal at a chosen moment.

    .venv/bin/python scripts/stress_signals.py [--trials 30] [--signal term|int-group|both] [--load N]
                                               [--framework tf|torch] [--seed 0] [--json FILE]

Each trial starts `train.py` (procgen-starter-example.yaml at a tiny size, a checkpoint every iteration)
in a new process group while --load busy processes (default: one per core) keep the machine loaded, then
sends the signal at one of five moments, taken in turn: start-up (a random time before the first
iteration ends), sampling and learning (a fraction of an iteration after a checkpoint line), logging
(the moment a progress line appears) and checkpointing (a fraction of a second after it). `term` sends
SIGTERM to train.py alone (as SageMaker Spot and `docker stop` do); `int-group` sends SIGINT to the whole
process group (Ctrl-C in a terminal).

For each trial it prints a `key: value` line and, at the end, a table: exit code, seconds from signal to
exit, seconds until the last of Ray's processes in its group is gone, the newest completed iteration when the signal was sent, the checkpoint's iteration, whether the
same command resumed from it (a second train.py run with one more iteration's budget) and the timesteps
it resumed at. A trial passes when train.py exits 128+signal within 30 s, leaves no process of its
group behind (Ray's die with it, given GROUP_GONE_S), and, if an iteration had completed, the checkpoint holds the newest one and resumes.
The target is every trial passing. `--trials 3` at `--load 2` is what tests/test_signals.py runs.
"""

import argparse
import json
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import ArgumentParser  # noqa: E402

EXPERIMENT = ROOT / "experiments" / "procgen-starter-example.yaml"
PHASES = ("start-up", "sampling", "learning", "logging", "checkpointing")
TARGET_EXIT_S = 30
# Against hangs only: a trial still alive this long after its signal is reported as a hang and killed.
HANG_S = 300
# How long Ray's processes may outlive train.py before they count as left behind.
GROUP_GONE_S = 60


def tiny_overrides(framework, batch=1024):
    model = f"impala_cnn_{framework}"
    return [f"framework={framework}", f"model.custom_model={model}", f"train_batch_size={batch}", "minibatch_size=256",
            "num_epochs=2", "num_envs_per_env_runner=8", "rollout_fragment_length=128", "checkpoint_freq=1",
            "keep_checkpoints_num=2", "stop.timesteps_total=1000000"]


def busy():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        pass


class Lines:
    """A child's stdout lines with arrival times, read on a thread."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            item = (time.monotonic(), line.rstrip("\n"))
            self.all.append(item)
            self.queue.put(item)
        self.queue.put(None)

    def wait_for(self, predicate, deadline):
        """The first new line matching `predicate` (None at EOF or deadline)."""
        while time.monotonic() < deadline:
            try:
                item = self.queue.get(timeout=1)
            except queue.Empty:
                continue
            if item is None:
                return None
            if predicate(item[1]):
                return item
        return None


def completed_iteration(lines, before):
    """The newest training_iteration printed before time `before`, or 0."""
    done = 0
    for t, line in lines:
        if t <= before and line.startswith("training_iteration: "):
            done = int(line.split(",")[0].split(": ")[1])
    return done


def checkpoint_iteration(run_dir):
    from utils.checkpoints import newest_checkpoint

    newest = newest_checkpoint(run_dir)
    return (int(newest.name.rsplit("_", 1)[1]), newest) if newest else (0, None)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def send(proc, how):
    if how == "term":
        proc.send_signal(signal.SIGTERM)
        return signal.SIGTERM
    os.killpg(proc.pid, signal.SIGINT)
    return signal.SIGINT


def aim(lines, phase, rng, start, iter_s):
    """Wait for the moment `phase` names; False when training ended before it came."""
    far = time.monotonic() + HANG_S * 4
    if phase == "start-up":
        time.sleep(rng.uniform(0.5, max(1.0, start)))
        return True
    # Skip the first iteration so the moment falls in a steady one.
    for _ in range(2):
        if lines.wait_for(lambda s: s.startswith("training_iteration: "), far) is None:
            return False
    if phase == "logging":
        return True
    if phase == "checkpointing":
        time.sleep(rng.uniform(0.0, 0.5))
        return True
    if lines.wait_for(lambda s: s.startswith("checkpoint: "), far) is None:
        return False
    frac = rng.uniform(0.05, 0.3) if phase == "sampling" else rng.uniform(0.4, 0.9)
    time.sleep(frac * iter_s)
    return True


def trial(index, phase, how, framework, rng, workdir, estimates):
    out = Path(workdir) / f"trial{index:02d}"
    args = ["-f", str(EXPERIMENT), "--outputs-dir", str(out), "--progress-bar", "off", *tiny_overrides(framework)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    launched = time.monotonic()
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = Lines(proc.stdout)
    reached = aim(lines, phase, rng, estimates["start"], estimates["iteration"])
    sent = time.monotonic()
    signum = send(proc, how) if proc.poll() is None else None
    try:
        proc.wait(timeout=HANG_S)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    exit_s = time.monotonic() - sent
    # Ray's own processes (GCS, raylet, workers) share train.py's group and die with it (fate sharing), a
    # little after it when the signal went to train.py alone.
    while group_alive(proc.pid) and time.monotonic() - sent < exit_s + GROUP_GONE_S:
        time.sleep(0.5)
    group_gone_s = time.monotonic() - sent
    leftover = group_alive(proc.pid)
    if leftover:
        leftover = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(proc.pid)], capture_output=True,
                                  text=True).stdout.splitlines()[1:]
        os.killpg(proc.pid, signal.SIGKILL)
    text = [line for _, line in lines.all]
    progress_times = [t for t, line in lines.all if line.startswith("training_iteration: ")]
    if phase == "start-up" and progress_times:
        estimates["start"] = progress_times[0] - launched
    if len(progress_times) > 1:
        estimates["iteration"] = (progress_times[-1] - progress_times[0]) / (len(progress_times) - 1)
    newest_done = completed_iteration(lines.all, sent)
    run_dir = out / "procgen-starter-example" / "coinrun"
    saved_iter, saved = checkpoint_iteration(run_dir)
    row = {"trial": index, "phase": phase, "signal": how, "reached": reached, "rc": proc.returncode,
           "exit_s": round(exit_s, 1), "hung": hung, "group_gone_s": round(group_gone_s, 1), "leftover_processes": leftover,
           "completed_iteration": newest_done, "checkpoint_iteration": saved_iter,
           "nothing_to_save_line": any("nothing to save" in line or "nothing new to save" in line for line in text),
           "resumed": None, "resumed_timesteps": None}
    if saved is not None:
        steps = json.loads((run_dir / "summary.json").read_text()).get("timesteps_total") if (run_dir / "summary.json").is_file() else None
        resume = subprocess.Popen([sys.executable, "train.py", *args[:-1], f"stop.timesteps_total={int(steps or 0) + 1}"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        try:
            resume_out, _ = resume.communicate(timeout=HANG_S * 3)
        except subprocess.TimeoutExpired:
            os.killpg(resume.pid, signal.SIGKILL)
            resume_out = resume.communicate()[0] + "\n(resume run hung: killed)"
        resumed = [line for line in resume_out.splitlines() if line.startswith("resumed: ")]
        first = next((line for line in resume_out.splitlines() if line.startswith("training_iteration: ")), None)
        row["resumed"] = bool(resumed) and resume.returncode == 0
        if not row["resumed"]:
            row["resume_tail"] = resume_out.splitlines()[-15:]
        if first:
            row["resumed_timesteps"] = int(first.split("timesteps_total: ")[1].split(",")[0])
        row["saved_timesteps"] = steps
    expected_rc = 128 + signum if signum else None
    ok = (not hung and proc.returncode == expected_rc and exit_s <= TARGET_EXIT_S and not leftover)
    if newest_done:
        ok = ok and saved_iter >= newest_done and row["resumed"] is True
    else:
        ok = ok and (saved is not None or row["nothing_to_save_line"])
    row["ok"] = ok
    if not ok:
        row["tail"] = text[-15:]
    return row


def table(rows):
    head = ("| # | moment | signal | rc | exit s | group gone s | newest done | saved | resumed at | ok |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['trial']} | {r['phase']} | {r['signal']} | {r['rc']} | {r['exit_s']} | {r['group_gone_s']} | "
            f"{r['completed_iteration']} | "
            f"{r['checkpoint_iteration'] or '-'} | {r['resumed_timesteps'] if r['resumed'] else '-'} | "
            f"{'yes' if r['ok'] else 'NO'} |" for r in rows]
    return "\n".join([head, *body])


def parse_args(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=30, help="trials per signal (default %(default)s)")
    p.add_argument("--signal", choices=("term", "int-group", "both"), default="both")
    p.add_argument("--load", type=int, default=len(os.sched_getaffinity(0)), help="busy processes (default: cores)")
    p.add_argument("--framework", choices=("tf", "torch"), default="tf")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                   help="the moments to aim at, taken in turn (default: all five)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    if args.trials < 1 or args.load < 0:
        p.error("--trials must be >= 1 and --load >= 0.")
    return args


def main(argv=None):
    args = parse_args(argv)
    rng = random.Random(args.seed)
    hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    print(f"load: {args.load} busy processes on {len(os.sched_getaffinity(0))} cores", flush=True)
    kinds = ("term", "int-group") if args.signal == "both" else (args.signal,)
    rows = []
    estimates = {"start": 30.0, "iteration": 10.0}
    try:
        with tempfile.TemporaryDirectory(prefix="stress-signals-") as workdir:
            for _ in range(args.trials):
                for how in kinds:  # in turn, so a slow spell of the machine hits both alike
                    phase = args.phases[len(rows) % len(args.phases)]
                    row = trial(len(rows) + 1, phase, how, args.framework, rng, workdir, estimates)
                    rows.append(row)
                    if args.json:  # after every trial, so a run cut short keeps what it measured
                        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
                    print("trial: " + ", ".join(f"{k}: {v}" for k, v in row.items() if "tail" not in k), flush=True)
                    for line in row.get("tail", []) + row.get("resume_tail", []):
                        print(f"  | {line}", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
    print(table(rows))
    passed = sum(r["ok"] for r in rows)
    worst = max(r["exit_s"] for r in rows)
    print(f"passed: {passed} of {len(rows)}, slowest_exit_s: {worst}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
