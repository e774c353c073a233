#!/usr/bin/env python
"""Train an RLlib agent on a Procgen game from an experiment YAML.

    python train.py -f experiments/impala-baseline.yaml [KEY=VALUE ...] [--fresh]

KEY is a dotted path into the experiment (stop.timesteps_total=100000) or its config
(env_config.env_name=bigfish, lr=0.001); VALUE is typed as in YAML. Options and overrides may come
in any order. Running the same command again resumes from the newest checkpoint in the run directory.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import utils  # noqa: F401  (must precede TF/Ray imports)
from utils.cli import ArgumentParser
from utils.conventions import DEFAULT_EXPERIMENT, DEFAULT_OUTPUTS_DIR
from utils.errors import UserError
from utils.signals import SignalGuard, block_signals


def parse_args(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--experiment-file", default=os.environ.get("EXPERIMENT", DEFAULT_EXPERIMENT),
                   help="experiment YAML (default: $EXPERIMENT or %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides by dotted path")
    p.add_argument("--outputs-dir", default=os.environ.get("OUTPUTS_DIR", DEFAULT_OUTPUTS_DIR),
                   help="where run directories go (default: $OUTPUTS_DIR or %(default)s)")
    p.add_argument("--run-dir", help="run directory (default: OUTPUTS_DIR/EXPERIMENT_NAME/GAME)")
    p.add_argument("--log-dir", help="where result.json and TensorBoard events go (default: the run directory)")
    p.add_argument("--fresh", action="store_true",
                   help="start from scratch: move an existing run directory aside (to RUN_DIR.old-TIME) first")
    p.add_argument("--num-cpus", type=int, help="CPUs to use (default: this machine's)")
    p.add_argument("--num-gpus", type=int, help="GPUs to use (default: this machine's)")
    p.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"), help="join an existing Ray cluster")
    p.add_argument("--progress-bar", choices=("auto", "on", "off"), default="auto",
                   help="tqdm bar on stderr (auto: when stderr is a terminal)")
    p.add_argument("--verbose", action="store_true",
                   help="show everything TensorFlow, Ray and gym print (by default their known start-up noise is hidden)")
    return p.parse_args(argv)


def machine_resources(args):
    cpus = args.num_cpus or len(os.sched_getaffinity(0))
    if args.num_gpus is not None:
        return cpus, args.num_gpus
    try:
        import torch

        return cpus, torch.cuda.device_count()
    except ImportError:
        return cpus, 0


def machine_memory():
    """This machine's memory in bytes as Ray counts it (a container's cgroup limit where there is one)."""
    from ray._private.utils import get_system_memory

    return get_system_memory()


def prepare_run_dir(args, exp):
    run_dir = Path(args.run_dir) if args.run_dir else exp.run_dir(args.outputs_dir)
    if args.fresh and run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), aside)
        print(f"fresh: moved {run_dir} to {aside}")
    check_resumable(run_dir, exp)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def check_resumable(run_dir, exp):
    """UserError when the run dir's checkpoints were written by another algorithm or framework: RLlib restores
    some of those without a word (an APPO checkpoint resumed as IMPALA), training something else than asked."""
    import yaml

    from utils.checkpoints import newest_checkpoint

    saved = run_dir / "config.yaml"
    if not saved.is_file() or newest_checkpoint(run_dir) is None:
        return
    (_, spec), = yaml.safe_load(saved.read_text()).items()
    was = {"run": spec.get("run"), "framework": (spec.get("config") or {}).get("framework")}
    now = {"run": exp.run, "framework": exp.config.get("framework")}
    changed = [f"{key}: {was[key]} then, {now[key]} now" for key in was if was[key] and was[key] != now[key]]
    if changed:
        raise UserError(f"{run_dir} holds checkpoints of another experiment ({'; '.join(changed)}; see its config.yaml): "
                        "resuming them would train something else than asked. Start fresh with --fresh (the old run "
                        "is kept aside) or choose another --run-dir.")


def save_resolved(run_dir, exp, argv):
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(exp.to_yaml_dict(), sort_keys=False))
    (run_dir / "overrides.yaml").write_text(yaml.safe_dump({"overrides": exp.overrides, "notes": exp.notes}, sort_keys=False))
    (run_dir / "command.txt").write_text(" ".join([sys.executable, "train.py", *argv]) + "\n")


def print_plan(exp, run_dir, cpus, gpus):
    import yaml

    print(f"experiment: {exp.path} ({exp.name})")
    print("precedence: RLlib defaults < experiment YAML < command-line overrides")
    for item in exp.overrides:
        print(f"override: {item}")
    for note in exp.notes:
        print(f"note: {note}")
    print(f"resources: {cpus} CPUs, {gpus} GPUs")
    print(f"run_dir: {run_dir}")
    print("resolved config:")
    print("  " + yaml.safe_dump(exp.to_yaml_dict(), sort_keys=False).replace("\n", "\n  ").rstrip())


def build_algorithm(exp, algo_config):
    import tempfile

    import ray.tune.trainable.trainable as trainable

    from registry import register_experiment

    # Outside Tune, every Algorithm makes an empty dir in ~/ray_results; this project logs to its run dir instead.
    trainable.DEFAULT_STORAGE_PATH = tempfile.gettempdir()
    register_experiment(exp)
    return algo_config.build_algo()


def restore_newest(algo, run_dir):
    from utils.checkpoints import newest_checkpoint

    newest = newest_checkpoint(run_dir)
    if newest is None:
        return None
    # RLlib's load_checkpoint hands the loaded state to self.__setstate__: read the trainable totals on the way
    # (RLlib ignores the key) instead of loading the state file a second time.
    totals = {}
    algo.__setstate__ = lambda state: (totals.update(state.get(TRAINABLE_TOTALS) or {}),
                                       type(algo).__setstate__(algo, state))
    try:
        algo.restore(str(newest))
    except Exception as e:  # noqa: BLE001  (RLlib raises many kinds; all mean "does not fit")
        raise UserError(
            f"Could not resume from {newest}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "The experiment changed (model, framework, algorithm?) since that checkpoint was written. "
            "Start fresh with --fresh (the old run is kept aside) or choose another --run-dir."
        ) from None
    finally:
        del algo.__setstate__
    if totals:  # none in a checkpoint written before they were saved: left as RLlib restores them (0)
        algo._time_total, algo._episodes_total = totals["time_total_s"], totals["episodes_total"]
    return newest


# Tune's Trainable keeps time_total_s and episodes_total outside RLlib's algorithm state, and Algorithm.restore(path)
# starts them again from 0: a resumed run's time_total_s (and a stop.time_total_s budget) would count only the
# time since the last restart. train.py puts them into the state it checkpoints, under this key (RLlib's
# __setstate__ ignores keys it does not know), and restore_newest sets them back.
TRAINABLE_TOTALS = "procgen_trainable_totals"


def trainable_totals(algo):
    return {"time_total_s": float(algo._time_total), "episodes_total": algo._episodes_total}


def save_checkpoint(algo, run_dir, keep):
    from utils.checkpoints import checkpoint_path, prune, write_atomically

    path = write_atomically(checkpoint_path(algo.iteration, run_dir), lambda partial: algo.save(str(partial)))
    prune(run_dir, keep)
    print(f"checkpoint: {path}", flush=True)
    return path


class Run:
    """What a signal handler needs to save the newest state; the training loop fills it in under guard.lock.

    The snapshot is RLlib's Algorithm state (`__getstate__`: weights, optimizer state, counters) copied at the
    end of each completed iteration, so it can be written while the main thread is in the middle of the next
    one: the live weights are then half-way through an SGD pass and must not be saved.
    """

    def __init__(self):
        self.run_dir = None
        self.keep = None
        self.algo = None
        self.snapshot = None  # (training_iteration, state) of the last completed iteration
        self.saved = None  # (training_iteration, path) of the newest checkpoint on disk
        self.last = {}  # progress figures of the last completed iteration
        self.logger = None
        self.bar = None
        self.finished = None  # the stop reason, once the loop has ended

    def take_snapshot(self):
        import copy

        # type(...).__getstate__: the class's method, whatever save() below did to the instance.
        state = copy.deepcopy(type(self.algo).__getstate__(self.algo))
        state[TRAINABLE_TOTALS] = trainable_totals(self.algo)
        self.snapshot = (self.algo.iteration, state)

    def save(self):
        """Checkpoint the newest completed iteration (from the snapshot); its path, or None when there is none."""
        if self.snapshot is None:
            return self.saved[1] if self.saved else None
        iteration, state = self.snapshot
        if self.saved and self.saved[0] == iteration:
            return self.saved[1]
        # Algorithm.save_checkpoint writes what __getstate__ returns: hand it the snapshot instead of the live,
        # possibly mid-update state. It pops the policy states out of what it gets, so it gets a copy.
        self.algo.__getstate__ = lambda: {**state, "worker": dict(state["worker"])} if "worker" in state else dict(state)
        try:
            path = save_checkpoint(self.algo, self.run_dir, self.keep)
        finally:
            del self.algo.__getstate__
        self.saved = (iteration, path)
        return path


# How long the signal handler waits for the main thread to finish a checkpoint or log write it is in.
LOCK_WAIT_S = 20
LOGGER_CLOSE_S = 5
RAY_SHUTDOWN_S = 5


def on_signal(signum, guard, run):
    """Runs on the signal guard's thread: save the newest completed iteration, then flush the logs; exit code."""
    from utils.signals import kill_descendants, run_bounded, signal_name

    name = signal_name(signum)
    if not guard.acquire_lock(LOCK_WAIT_S):
        print(f"warning: a checkpoint or log write did not finish within {LOCK_WAIT_S} s; saving the last "
              "completed iteration without waiting for it", flush=True)
    if run.algo is None:
        newest = f"; the newest checkpoint stays {run.saved[1]}" if run.saved else ""
        print(f"interrupted: {name} received before training started; nothing to save{newest}", flush=True)
    elif run.finished:
        print(f"interrupted: {name} received while shutting down; training had finished ({run.finished})", flush=True)
    elif run.snapshot is None:
        where = f"since {run.saved[1]}" if run.saved else "yet"
        print(f"interrupted: {name} received before a training iteration finished {where}; nothing new to save", flush=True)
    else:
        print(f"interrupted: {name} received, saving a checkpoint", flush=True)
        checkpoint = run.save()
        write_summary(run.run_dir, run.last, f"interrupted_{name}", checkpoint)
    if run.bar is not None:
        run_bounded(run.bar.close, 1)
    if run.logger is not None and not run_bounded(run.logger.close, LOGGER_CLOSE_S):
        print(f"warning: the TensorBoard writer did not close within {LOGGER_CLOSE_S} s; result.json is complete", flush=True)
    if "ray" in sys.modules:
        import ray

        # Ray's shutdown can wait a minute when some of its processes are gone already (Ctrl-C reaches the
        # whole process group); its processes die with this one anyway (fate sharing).
        run_bounded(ray.shutdown, RAY_SHUTDOWN_S)
    kill_descendants()  # what Ray's shutdown left behind in the time it had
    return 128 + signum


# An iteration that sampled nothing is retried; after this many in a row training stops with the fix.
MAX_EMPTY_ITERATIONS = 5


def empty_iteration(result, timeout, count):
    """A warning for an iteration whose env runners returned no samples; UserError after too many in a row.

    timeout: the built AlgorithmConfig's sample_timeout_s (seconds), the value RLlib waited for."""
    fix = (f"raise sample_timeout_s (now {timeout} s) or lower rollout_fragment_length x num_envs_per_env_runner, "
           "or give the env runners more CPUs")
    if count >= MAX_EMPTY_ITERATIONS:
        raise UserError(f"{count} training iterations in a row sampled no env steps. Fix: {fix}.")
    print(f"warning: training iteration {result.get('training_iteration')} sampled no env steps (the env runners did "
          f"not return within sample_timeout_s); not logged, retrying ({count} of {MAX_EMPTY_ITERATIONS}). Fix: {fix}.",
          flush=True)


def train(exp, algo_config, run, progress_mode, guard, log_dir=None):
    from utils.progress import Progress, metrics, stop_reason
    from utils.results import ResultLogger

    algo = build_algorithm(exp, algo_config)
    guard.install()  # building the algorithm may have replaced the handlers
    resumed = restore_newest(algo, run.run_dir)
    last = {"training_iteration": algo.iteration, "timesteps_total": algo._counters.get("num_env_steps_sampled", 0),
            "time_total_s": float(algo._time_total)}
    with guard.lock:
        run.algo, run.last = algo, last
        run.saved = (algo.iteration, resumed) if resumed else None
    if resumed:
        print(f"resumed: {resumed} (training_iteration {last['training_iteration']}, timesteps_total {last['timesteps_total']}, "
              f"time_total_s {last['time_total_s']:.1f})")
    if stop_reason(exp.stop, last) and resumed:
        print(f"done: {stop_reason(exp.stop, last)} already reached by {resumed}")
        return finish(run, "already_done", resumed)
    freq = exp.spec["checkpoint_freq"]
    with guard.lock:
        run.bar = Progress(exp.stop, last, enabled={"auto": None, "on": True, "off": False}[progress_mode])
        run.logger = ResultLogger(log_dir or run.run_dir)
    empty = 0
    while True:
        guard.park_if_pending()
        result = algo.train()
        if not result.get("num_env_steps_sampled_this_iter", 1):
            empty += 1
            empty_iteration(result, algo.config.sample_timeout_s, empty)
            continue
        empty = 0
        last = metrics(result)
        reason = stop_reason(exp.stop, last)
        with guard.lock:
            run.last = last
            run.take_snapshot()
            run.bar.update(last)
            run.logger.log(result, last)
            if freq and algo.iteration % freq == 0 and not reason:
                run.save()
        if reason:
            break
    guard.park_if_pending()
    with guard.lock:
        run.bar.close()
        run.logger.close()
        checkpoint = run.save() if exp.spec["checkpoint_at_end"] else (run.saved[1] if run.saved else None)
        run.finished = reason
    print(f"done: stopped by {reason}")
    return finish(run, reason, checkpoint)


def write_summary(run_dir, last, reason, checkpoint):
    from utils.checkpoints import write_text_atomically

    summary = {"stopped_by": reason, "checkpoint": str(checkpoint) if checkpoint else None, **last}
    write_text_atomically(run_dir / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")


def finish(run, reason, checkpoint):
    run.finished = reason
    write_summary(run.run_dir, run.last, reason, checkpoint)
    try:
        run.algo.stop()
    except Exception:  # noqa: BLE001  (workers may already be gone after a signal)
        pass
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from utils import quiet

    block_signals()  # before any thread starts: every thread inherits the mask; the guard's watchdog takes them
    run = Run()
    guard = SignalGuard(lambda signum: on_signal(signum, guard, run))
    quiet.install(verbose=args.verbose)  # before TF, Ray, gym or procgen is imported
    try:
        from utils.config import build_algorithm_config, load_experiment

        cpus, gpus = machine_resources(args)
        exp = load_experiment(args.experiment_file, args.overrides, cpus=cpus, gpus=gpus, memory=machine_memory())
        algo_config = build_algorithm_config(exp)  # RLlib's own checks, before anything is written
        run_dir = prepare_run_dir(args, exp)
        run.run_dir, run.keep = run_dir, exp.spec["keep_checkpoints_num"]
        print_plan(exp, run_dir, cpus, gpus)
        save_resolved(run_dir, exp, argv)
        start_ray(args, cpus, gpus, guard)
        log_dir = Path(args.log_dir) if args.log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        return train(exp, algo_config, run, args.progress_bar, guard, log_dir)
    except UserError as e:
        guard.park_if_pending()
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        # A signal being handled ends the process from the handler's thread, once the checkpoint is written.
        guard.park_if_pending()


def start_ray(args, cpus, gpus, guard):
    import logging

    import ray

    # SIGTERM and SIGINT are blocked since main() began (utils.signals.block_signals), and Ray's own processes
    # inherit the mask: a SIGTERM sent to the whole process group (systemd, timeout, a batch scheduler) then
    # reaches only train.py, which saves a checkpoint, instead of killing Ray under it. They still die with
    # train.py (fate sharing). ray.init installs handlers of its own; the guard takes the signals back after it.
    if args.ray_address:
        ray.init(address=args.ray_address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level=logging.WARNING)
    guard.install()

if __name__ == "__main__":
    sys.exit(main())
