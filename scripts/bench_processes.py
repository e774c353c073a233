"""Which process uses the cores during each RLlib phase of one training iteration of the fitted baseline.

    .venv/bin/python scripts/bench_processes.py [--framework tf|torch] [--set KEY=VALUE ...] [--interval 0.5] [--quick]

Builds impala-baseline(-torch).yaml fitted to this machine (as `./run.sh --bench` does), trains one
warm-up iteration, then times one more while reading every process's CPU time each --interval seconds.
Prints `key: value` lines: the seconds of the sample and learn phases and, for each phase, the cores
used by the learner process, the env runners, Ray's own processes and everything else on the machine,
plus the CPU time the hypervisor took (steal). A phase that is slow while the learner has all cores
to itself points at the machine, not the settings. --quick shrinks the sizes (for the tests).
"""

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import utils  # noqa: E402, F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)

# isort: split
import psutil  # noqa: E402

from scripts import bench  # noqa: E402
from utils.cli import ArgumentParser  # noqa: E402
from utils.errors import UserError  # noqa: E402

GROUPS = ("learner", "env_runners", "ray", "other", "steal")


def group(proc, learner_pid):
    if proc.pid == learner_pid:
        return "learner"
    cmd = " ".join(proc.info["cmdline"] or [])
    if "RolloutWorker" in cmd or "EnvRunner" in cmd:
        return "env_runners"
    return "ray" if "ray" in cmd else "other"


def cpu_by_process(learner_pid):
    """Cumulative CPU seconds of each live process, keyed by (pid, create time), with its group; plus steal."""
    found = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times", "create_time"]):
        times = proc.info["cpu_times"]
        if times is not None:
            found[(proc.pid, proc.info["create_time"])] = (group(proc, learner_pid), times.user + times.system)
    return found, getattr(psutil.cpu_times(), "steal", 0.0)


def watch(samples, done, learner_pid, interval):
    while not done.is_set():
        samples.append((time.perf_counter(), cpu_by_process(learner_pid)))
        done.wait(interval)
    samples.append((time.perf_counter(), cpu_by_process(learner_pid)))


def cores(samples, start, end):
    """Mean cores each group used between start and end (the nearest samples inside the window).

    Summed per process over the processes alive at both ends: on a busy machine other processes start and
    exit meanwhile, and a sum of whoever is alive would fall when one exits (issue 10 saw -2.72 cores).
    """
    inside = [s for s in samples if start <= s[0] <= end] or [min(samples, key=lambda s: abs(s[0] - start))]
    (t0, (first, steal0)), (t1, (last, steal1)) = inside[0], inside[-1]
    seconds = t1 - t0
    used = dict.fromkeys(GROUPS, 0.0)
    for key, (name, cpu) in last.items():
        if key in first:
            used[name] += max(0.0, cpu - first[key][1])
    used["steal"] = steal1 - steal0
    return {name: value / seconds if seconds > 0 else 0.0 for name, value in used.items()}


def parse_args(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", default="tf", choices=["tf", "torch"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="experiment override, as train.py takes them")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between CPU readings")
    p.add_argument("--quick", action="store_true", help="toy sizes (seconds); for testing the script itself")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error(f"--interval must be > 0 seconds, got {args.interval}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        algo = bench._build(args)
    except UserError as e:  # a --set typo: the message names the key and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    pid = psutil.Process().pid
    algo.train()  # warm-up: graph tracing, first weights sync
    samples, done = [], threading.Event()
    watcher = threading.Thread(target=watch, args=(samples, done, pid, args.interval), daemon=True)
    watcher.start()
    start = time.perf_counter()
    _, phases = bench.train_with_phases(algo)
    done.set()
    watcher.join()
    algo.stop()
    # RLlib's PPO samples, then learns: the phases follow each other from the start of train().
    windows = {"sample": (start, start + phases["sample"]),
               "learn": (start + phases["sample"], start + phases["sample"] + phases["learn"])}
    print(f"env_runners: {algo.config.num_env_runners}")
    for phase, (begin, end) in windows.items():
        print(f"phase_{phase}_s: {phases[phase]:.2f}")
        for name, used in cores(samples, begin, end).items():
            print(f"cores_{phase}_{name}: {used:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
