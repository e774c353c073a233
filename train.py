#!/usr/bin/env python
"""Train an RLlib agent on a Procgen game from an experiment YAML.

    python train.py -f experiments/impala-baseline.yaml [KEY=VALUE ...] [--fresh]

KEY is a dotted path into the experiment (stop.timesteps_total=100000) or its config
(env_config.env_name=bigfish, lr=0.001); VALUE is typed as in YAML. Running the same command
again resumes from the newest checkpoint in the run directory.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import utils  # noqa: F401  (must precede TF/Ray imports)
from utils.errors import UserError

DEFAULT_EXPERIMENT = "experiments/impala-baseline.yaml"


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: save a checkpoint and exit."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def as_interrupted(error, guard):
    """The Interrupted behind `error` when a signal is pending, else re-raise `error`.

    The handler raises wherever the main thread is, and what reaches us is not always Interrupted:
    inside C code (Ray's CoreWorker.wait) CPython turns it into SystemError, and RLlib's learner re-raises
    any exception from the backward pass as ValueError. Once a signal is pending, any exception is its
    consequence.
    """
    if isinstance(error, Interrupted):
        return error
    if guard.pending is not None:
        return Interrupted(guard.pending)
    raise error


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--experiment-file", default=os.environ.get("EXPERIMENT", DEFAULT_EXPERIMENT),
                   help="experiment YAML (default: $EXPERIMENT or %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides by dotted path")
    p.add_argument("--outputs-dir", default=os.environ.get("OUTPUTS_DIR", "outputs"),
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


def prepare_run_dir(args, exp):
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.outputs_dir) / exp.name / exp.env_name
    if args.fresh and run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), aside)
        print(f"fresh: moved {run_dir} to {aside}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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

    from registry import register_all

    # Outside Tune, every Algorithm makes an empty dir in ~/ray_results; this project logs to its run dir instead.
    trainable.DEFAULT_STORAGE_PATH = tempfile.gettempdir()
    model = exp.config.get("model", {}).get("custom_model")
    register_all(models=[model] if model else [])
    return algo_config.build_algo()


def restore_newest(algo, run_dir):
    from utils.checkpoints import newest_checkpoint

    newest = newest_checkpoint(run_dir)
    if newest is None:
        return None
    try:
        algo.restore(str(newest))
    except Exception as e:  # noqa: BLE001  (RLlib raises many kinds; all mean "does not fit")
        raise UserError(
            f"Could not resume from {newest}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "The experiment changed (model, framework, algorithm?) since that checkpoint was written. "
            "Start fresh with --fresh (the old run is kept aside) or choose another --run-dir."
        ) from None
    return newest


def save_checkpoint(algo, run_dir, keep):
    from utils.checkpoints import checkpoint_path, prune

    path = checkpoint_path(algo.iteration, run_dir)
    algo.save(str(path))
    prune(run_dir, keep)
    print(f"checkpoint: {path}", flush=True)
    return path


class SignalGuard:
    """Turns the first SIGINT/SIGTERM into Interrupted, except while a checkpoint is written."""

    def __init__(self):
        self.pending = None
        self.critical = False
        self.install()

    def install(self):
        """(Re)take SIGINT/SIGTERM: ray.init installs its own SIGTERM handler over ours."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.pending is not None and not self.critical:
            signal.signal(signum, signal.SIG_DFL)  # a second signal exits at once
        self.pending = signum
        if not self.critical:
            raise Interrupted(signum)

    def check(self):
        if self.pending is not None:
            raise Interrupted(self.pending)


def train(exp, algo_config, run_dir, progress_mode, guard, log_dir=None):
    from utils.progress import Progress, metrics, stop_reason
    from utils.results import ResultLogger

    algo = build_algorithm(exp, algo_config)
    resumed = restore_newest(algo, run_dir)
    last = {"training_iteration": algo.iteration, "timesteps_total": algo._counters.get("num_env_steps_sampled", 0)}
    if resumed:
        print(f"resumed: {resumed} (training_iteration {last['training_iteration']}, timesteps_total {last['timesteps_total']})")
    if stop_reason(exp.stop, last) and resumed:
        print(f"done: {stop_reason(exp.stop, last)} already reached by {resumed}")
        return finish(algo, run_dir, last, "already_done", resumed)
    bar = Progress(exp.stop, last, enabled={"auto": None, "on": True, "off": False}[progress_mode])
    freq, keep = exp.spec["checkpoint_freq"], exp.spec["keep_checkpoints_num"]
    checkpoint = None
    logger = ResultLogger(log_dir or run_dir)
    try:
        while True:
            result = algo.train()
            last = metrics(result)
            bar.update(last)
            logger.log(result, last)
            reason = stop_reason(exp.stop, last)
            if freq and algo.iteration % freq == 0 and not reason:
                checkpoint = _guarded_save(guard, algo, run_dir, keep)
            guard.check()
            if reason:
                break
    except Exception as caught:  # noqa: BLE001  (see as_interrupted)
        e = as_interrupted(caught, guard)
        bar.close()
        logger.close()
        print(f"interrupted: {e} received, saving a checkpoint", flush=True)
        guard.critical = True
        checkpoint = save_checkpoint(algo, run_dir, keep)
        write_summary(run_dir, last, f"interrupted_{e}", checkpoint)
        hard_exit(128 + e.signum)
    bar.close()
    logger.close()
    if exp.spec["checkpoint_at_end"]:
        checkpoint = _guarded_save(guard, algo, run_dir, keep)
    print(f"done: stopped by {reason}")
    return finish(algo, run_dir, last, reason, checkpoint)


def _guarded_save(guard, algo, run_dir, keep):
    guard.critical = True
    try:
        return save_checkpoint(algo, run_dir, keep)
    finally:
        guard.critical = False


def write_summary(run_dir, last, reason, checkpoint):
    summary = {"stopped_by": reason, "checkpoint": str(checkpoint) if checkpoint else None, **last}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")


def hard_exit(code, grace_s=10):
    """Exit once the checkpoint is on disk, giving Ray at most `grace_s` to stop its processes.

    Ray's shutdown can wait a minute or more when some of its processes are already gone (a Ctrl-C reaches
    the whole process group), so it runs on a thread that the exit does not wait for beyond the grace.
    """
    import threading

    import ray

    stopper = threading.Thread(target=ray.shutdown, daemon=True)
    stopper.start()
    stopper.join(grace_s)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def finish(algo, run_dir, last, reason, checkpoint):
    write_summary(run_dir, last, reason, checkpoint)
    try:
        algo.stop()
    except Exception:  # noqa: BLE001  (workers may already be gone after a signal)
        pass
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    guard = SignalGuard()
    try:
        from utils.config import build_algorithm_config, load_experiment

        cpus, gpus = machine_resources(args)
        exp = load_experiment(args.experiment_file, args.overrides, cpus=cpus, gpus=gpus)
        algo_config = build_algorithm_config(exp)  # RLlib's own checks, before anything is written
        run_dir = prepare_run_dir(args, exp)
        print_plan(exp, run_dir, cpus, gpus)
        save_resolved(run_dir, exp, argv)
        start_ray(args, cpus, gpus)
        guard.install()
        log_dir = Path(args.log_dir) if args.log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        return train(exp, algo_config, run_dir, args.progress_bar, guard, log_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as caught:  # noqa: BLE001  (see as_interrupted)
        e = as_interrupted(caught, guard)
        print(f"interrupted: {e} received before training started; nothing to save", file=sys.stderr)
        hard_exit(128 + e.signum)


def start_ray(args, cpus, gpus):
    import logging

    import ray

    if args.ray_address:
        ray.init(address=args.ray_address, logging_level=logging.WARNING)
        return
    # Ray's own processes inherit this mask: a SIGTERM sent to the whole process group (systemd, timeout, a
    # batch scheduler) then reaches only train.py, which saves a checkpoint, instead of killing Ray under it.
    # Ray blocks SIGINT in them itself, for the same reason. They still die with train.py (fate sharing).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level=logging.WARNING)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


if __name__ == "__main__":
    sys.exit(main())
