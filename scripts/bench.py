"""Throughput of this machine against its limits, measured in one run (`./run.sh --bench`).

    python scripts/bench.py [--quick] [--repeats 3] [--out DIR] [--frameworks tf torch] [--games coinrun bigfish]
    python scripts/bench.py --sweep [...]    settings variants of the baseline instead (scripts/bench_sweep.py)

Figures (each the median of --repeats measurements, with min and max):
  procgen_raw       raw procgen, 64 games per call, random actions (the env's ceiling)
  vector_env        this project's vector env, same games and actions, as a ratio to raw
  rllib_sampling    RLlib sampling with the IMPALA CNN policy (inference only), as a ratio to raw
  compute_ceiling   the baseline PPO's arithmetic alone, per framework: a rollout forward pass over the
                    train batch + epochs x minibatches of forward/backward/Adam, no env, no Ray
  full_training     impala-baseline(-torch).yaml fitted to this machine, as a ratio to its framework's ceiling;
                    with torch also experiments/ppg.yaml (PPG) as a ratio to the torch baseline, measured with
                    n_pi 1 so every timed iteration pays its auxiliary phase over its own batch: the auxiliary
                    phase's cost grows with the batches it replays, so this is PPG's long-run rate at any n_pi

Each measurement runs in its own process (TF's eager mode and Ray's state must not leak between them).
Writes bench.json and bench.md under OUT (default $OUTPUTS_DIR/bench), with the machine's CPU, cores,
GPU and package versions. --quick shrinks every size to seconds (used by the tests); its figures mean nothing.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402, F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)
from scripts.bench_common import (  # noqa: E402
    EXPERIMENTS,
    gpu_count,
    machine,
    quick_overrides,
    run_child,
    sizes,
    summarize,
)
from utils.cli import ArgumentParser  # noqa: E402

# --------------------------------------------------------------------------- measurements (child side)


def measure_env(args):
    import numpy as np

    from scripts.bench_env import raw_rate, vector_rate

    s = sizes(args.quick)
    actions = np.random.default_rng(0).integers(0, 15, size=(s["steps"], s["num_envs"])).astype(np.int32)
    fn = raw_rate if args.what == "procgen_raw" else vector_rate
    return fn(args.game, actions, 0)


def measure_ceiling(args):
    """steps/s of PPO's arithmetic alone: rollout inference on the batch, then the SGD epochs."""
    import numpy as np

    s = sizes(args.quick)
    obs = np.random.default_rng(0).integers(0, 256, (s["train_batch"], 64, 64, 3), dtype=np.uint8)
    step = _tf_ceiling(obs, s) if args.framework == "tf" else _torch_ceiling(obs, s)
    step()  # warm-up: tracing, allocator, oneDNN caches
    start = time.perf_counter()
    step()
    return s["train_batch"] / (time.perf_counter() - start)


def _model_args(s):
    import gymnasium as gym
    import numpy as np

    space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    return space, gym.spaces.Discrete(15), 15, {"custom_model_config": s["model"]}, "bench"


def _torch_ceiling(obs, s):
    import torch

    from models.impala_cnn_torch import ImpalaCNN

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ImpalaCNN(*_model_args(s)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    data = torch.from_numpy(obs).to(device)
    n, mb, envs = len(obs), s["minibatch"], s["num_envs"]

    def step():
        with torch.no_grad():
            for i in range(0, n, envs):
                model({"obs": data[i:i + envs]}, [], None)
        for _ in range(s["epochs"]):
            for idx in torch.randperm(n, device=device).split(mb):
                logits, _ = model({"obs": data[idx]}, [], None)
                loss = torch.logsumexp(logits, 1).mean() + model.value_function().pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def _tf_ceiling(obs, s):
    import tensorflow as tf

    from models.impala_cnn_tf import ImpalaCNN

    model = ImpalaCNN(*_model_args(s))
    variables = model.trainable_variables()
    opt = tf.keras.optimizers.Adam(5e-4)
    n, mb, envs = len(obs), s["minibatch"], s["num_envs"]

    @tf.function
    def act(batch):
        return model({"obs": batch}, [], None)[0]

    @tf.function
    def train(batch):
        with tf.GradientTape() as tape:
            logits, _ = model({"obs": batch}, [], None)
            loss = tf.reduce_mean(tf.reduce_logsumexp(logits, 1)) + tf.reduce_mean(tf.square(model.value_function()))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 0.5)
        opt.apply_gradients(zip(grads, variables, strict=True))

    data = tf.constant(obs)

    def step():
        for i in range(0, n, envs):
            act(data[i:i + envs])
        for _ in range(s["epochs"]):
            perm = tf.random.shuffle(tf.range(n))
            for i in range(0, n, mb):
                train(tf.gather(data, perm[i:i + mb]))
        variables[0].numpy()

    return step


def _experiment(args):
    from utils.config import load_experiment

    experiment = getattr(args, "experiment", None)
    overrides = (quick_overrides(args.framework, experiment) if args.quick else []) + (args.set or [])
    if experiment == "ppg":
        overrides.append("n_pi=1")  # an auxiliary phase in every timed iteration (module docstring)
    cpus = len(os.sched_getaffinity(0))
    gpus = gpu_count()
    return load_experiment(ROOT / EXPERIMENTS[experiment or args.framework], overrides, cpus=cpus, gpus=gpus), cpus, gpus


def _build(args):
    import ray

    from registry import register_all
    from utils.config import build_algorithm_config

    exp, cpus, gpus = _experiment(args)
    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    register_all(models=[exp.config["model"]["custom_model"]])
    return build_algorithm_config(exp).build_algo()


def measure_sampling(args):
    algo = _build(args)
    runner = algo.env_runner if not algo.env_runner_group.num_remote_workers() else None
    sample = runner.sample if runner else (lambda: algo.env_runner_group.foreach_env_runner(lambda w: w.sample(), local_env_runner=False))
    sample()
    start = time.perf_counter()
    batch = sample()
    steps = batch.env_steps() if runner else sum(b.env_steps() for b in batch)
    rate = steps / (time.perf_counter() - start)
    algo.stop()
    return rate


def train_with_phases(algo):
    """One algo.train(): its result and the seconds each of RLlib's phases (sample, load, learn, ...) took in it."""
    counts = {name: timer.count for name, timer in algo._timers.items()}
    result = algo.train()
    # RLlib keeps only rolling means; the last sample of each timer that ran is this iteration's.
    return result, {name: timer._samples[-1] for name, timer in algo._timers.items() if timer.count > counts.get(name, 0)}


def measure_training(args):
    """steps/s of algo.train(), plus the seconds per iteration of each of RLlib's phases."""
    algo = _build(args)
    algo.train()  # warm-up: graph tracing, first weights sync
    steps, phases, start = 0, {}, time.perf_counter()
    for _ in range(args.iterations):
        result, seconds = train_with_phases(algo)
        steps += result["num_env_steps_sampled_this_iter"]
        for name, value in seconds.items():
            phases[name] = phases.get(name, 0.0) + value
    rate = steps / (time.perf_counter() - start)
    algo.stop()
    return rate, {f"phase_{name}_s": seconds / args.iterations for name, seconds in phases.items()}


MEASURES = {"procgen_raw": measure_env, "vector_env": measure_env, "rllib_sampling": measure_sampling,
            "compute_ceiling": measure_ceiling, "full_training": measure_training}


# --------------------------------------------------------------------------- orchestration (parent side)


def repeated(args, what, **kw):
    row = summarize([run_child(args, what, **kw) for _ in range(args.repeats)], figure=what, **kw)
    label = " ".join([what, *map(str, kw.values())])
    print(f"{label.replace(' ', '_')}_steps_per_second: {row['median']:.1f} (min {row['min']:.1f}, max {row['max']:.1f})", flush=True)
    return row


def bench(args):
    rows = []
    raw = {}
    for game in args.games:
        raw[game] = repeated(args, "procgen_raw", game=game)
        vec = repeated(args, "vector_env", game=game)
        vec["reference"], vec["ratio"] = f"procgen_raw {game}", vec["median"] / raw[game]["median"]
        rows += [raw[game], vec]
    for framework in args.frameworks:
        sampling = repeated(args, "rllib_sampling", framework=framework)
        sampling["reference"] = f"procgen_raw {args.games[0]}"
        sampling["ratio"] = sampling["median"] / raw[args.games[0]]["median"]
        ceiling = repeated(args, "compute_ceiling", framework=framework)
        full = repeated(args, "full_training", framework=framework)
        full["reference"], full["ratio"] = f"compute_ceiling {framework}", full["median"] / ceiling["median"]
        rows += [sampling, ceiling, full]
        if framework == "torch":
            ppg = repeated(args, "full_training", framework="torch", experiment="ppg")
            ppg["reference"], ppg["ratio"] = "full_training torch", ppg["median"] / full["median"]
            rows.append(ppg)
    return rows


def markdown(rows, info, args):
    out = [f"# Throughput on {info['cpu']} ({info['cores']} cores, GPU: {info['gpu']})", "",
           f"{info['date']}; median of {args.repeats} (min, max); steps are environment steps per second."
           + (" QUICK MODE: toy sizes, figures mean nothing." if args.quick else ""), "",
           "| figure | game / framework | steps/s median | min | max | reference | ratio |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        what = r.get("game") or r.get("framework") + (f", {EXPERIMENTS[r['experiment']]}" if r.get("experiment") else "")
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        out.append(f"| {r['figure']} | {what} | {r['median']:.0f} | {r['min']:.0f} | {r['max']:.0f} | {r.get('reference', '')} | {ratio} |")
    for r in rows:
        if "phases_s" in r:
            # training_iteration and training_step are the totals; sample + load + learn + synch_weights split them.
            phases = ", ".join(f"{name} {r['phases_s'][name]:.1f} s"
                               for name in ("training_iteration", "sample", "load", "learn", "aux_phase", "synch_weights")
                               if name in r["phases_s"])
            label = " ".join(filter(None, (r["figure"], r["framework"], r.get("experiment"))))
            out += ["", f"{label}, seconds per iteration by RLlib phase: {phases}"]
    onednn = {r["tf_onednn"] for r in rows if "tf_onednn" in r}
    if onednn:
        # TF enables them by itself only on AVX-512-class CPUs; utils/__init__.py turns them on everywhere.
        out += ["", "TF oneDNN kernels: " + "/".join("on" if on else "off" for on in sorted(onednn, reverse=True))]
    out += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()), ""]
    return "\n".join(out)


def parse_args(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="toy sizes (seconds); for testing the bench itself")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iterations", type=int, default=2, help="timed training iterations per measurement")
    p.add_argument("--games", nargs="+", default=["coinrun", "bigfish"])
    p.add_argument("--frameworks", nargs="+", default=["tf", "torch"], choices=["tf", "torch"])
    p.add_argument("--out", default=os.path.join(os.environ.get("OUTPUTS_DIR", "outputs"), "bench"))
    p.add_argument("--child", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    p.add_argument("--game", help=argparse.SUPPRESS)
    p.add_argument("--framework", help=argparse.SUPPRESS)
    p.add_argument("--experiment", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", help=argparse.SUPPRESS)
    p.add_argument("--sweep", action="store_true",
                   help="instead of the figures: full training of the fitted baseline against variants of its settings (scripts/bench_sweep.py)")
    p.add_argument("--variants", nargs="+", metavar="ID",
                   help="with --sweep: only these variants (ids: runners-0 or runners-1, games-x2, games-half, "
                        "tf-learner-threads-2-1, tf-learner-threads-1-1, tf-runner-threads-1-1, bf16); the fitted reference always runs")
    args = p.parse_args(argv)
    from envs.games import GAMES

    for game in args.games:
        if game not in GAMES:
            p.error(f'unknown game "{game}". Allowed: {", ".join(GAMES)}')
    if args.variants and not args.sweep:
        p.error("--variants goes with --sweep")
    if args.repeats < 1 or args.iterations < 1:
        p.error("--repeats and --iterations must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        args.what = args.child
        rate = MEASURES[args.child](args)
        rate, extra = rate if isinstance(rate, tuple) else (rate, {})
        for key, value in extra.items():
            print(f"{key}: {value:.3f}")
        if getattr(args, "framework", None) == "tf":
            # Whether TF ran its oneDNN kernels (utils turns them on; TF_ENABLE_ONEDNN_OPTS=0 turns them off).
            from tensorflow.python.util import _pywrap_util_port

            print(f"tf_onednn: {int(_pywrap_util_port.IsMklEnabled())}")
        print(f"steps_per_second: {rate:.3f}", flush=True)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        from scripts import bench_sweep

        return bench_sweep.main(args, out)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, GPU: {info['gpu']}", flush=True)
    rows = bench(args)
    (out / "bench.json").write_text(json.dumps({"machine": info, "quick": args.quick, "repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, info, args)
    (out / "bench.md").write_text(text)
    print(text)
    print(f"written: {out / 'bench.json'}, {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
