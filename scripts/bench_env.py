"""Env throughput: raw procgen vs ProcgenVectorEnv, random actions, measured in the same run.

    .venv/bin/python scripts/bench_env.py [--games coinrun bigfish] [--num 64] [--steps 1000] [--repeats 3] [--seed 0]

Prints one `key: value` line per figure (steps/s are game steps, i.e. batch steps x num) and the ratio
vector/raw of the medians. Both play the same levels (same rand_seed) with the same actions, so they do the
same game work and the ratio is the wrapper's overhead; raw and wrapped runs alternate so that machine noise
hits both alike.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import utils  # noqa: E402, F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)
from utils.cli import ArgumentParser  # noqa: E402

# numpy, procgen and the env wrapper are imported where they are used: the command line is read first, so
# --help and a mistyped option are answered at once and without gym's start-up lines.
WARMUP_STEPS = 50


def raw_rate(game, actions, seed):
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=actions.shape[1], env_name=game, distribution_mode="easy", rand_seed=seed)
    for row in actions[:WARMUP_STEPS]:
        env.act(row)
        env.observe()
    start = time.perf_counter()
    for row in actions:
        env.act(row)
        env.observe()
    rate = actions.size / (time.perf_counter() - start)
    env.close()
    return rate


def vector_rate(game, actions, seed):
    import numpy as np

    from envs.procgen_env_wrapper import ProcgenVectorEnv

    config = {"env_name": game, "distribution_mode": "easy", "rand_seed": seed}
    env = ProcgenVectorEnv(config, num_envs=actions.shape[1])
    # RLlib's VectorEnvWrapper hands over a list of numpy scalars, so the conversion is part of the cost.
    rows = [list(row.astype(np.int64)) for row in actions]
    env.vector_reset()
    for row in rows[:WARMUP_STEPS]:
        env.vector_step(row)
    start = time.perf_counter()
    for row in rows:
        env.vector_step(row)
    rate = actions.size / (time.perf_counter() - start)
    env.close()
    return rate


def bench(game, num, steps, repeats, seed):
    import numpy as np

    actions = np.random.default_rng(seed).integers(0, 15, size=(steps, num)).astype(np.int32)
    raw, wrapped = [], []
    for _ in range(repeats):
        raw.append(raw_rate(game, actions, seed))
        wrapped.append(vector_rate(game, actions, seed))
    raw, wrapped = statistics.median(raw), statistics.median(wrapped)
    print(f"{game}_raw_steps_per_s: {raw:.0f}")
    print(f"{game}_vector_env_steps_per_s: {wrapped:.0f}")
    print(f"{game}_ratio: {wrapped / raw:.3f}", flush=True)


def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=["coinrun", "bigfish"])
    parser.add_argument("--num", type=int, default=64, help="games per procgen call")
    parser.add_argument("--steps", type=int, default=1000, help="batch steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="procgen rand_seed and action seed")
    args = parser.parse_args(argv)
    print(f"num_envs: {args.num}")
    for game in args.games:
        bench(game, args.num, args.steps, args.repeats, args.seed)


if __name__ == "__main__":
    main()
