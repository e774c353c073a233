"""Forward+backward time of the IMPALA CNN: torch channels_last vs NCHW, and TF.

Prints 'key: value' lines (seconds are the median of --repeats timed runs after one warm-up run).
    python scripts/bench_models.py [--batch 2048] [--repeats 5]
"""

import statistics
import sys
import time
from pathlib import Path

# Run as a plain script, only scripts/ is on sys.path; the project's packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402, F401  (TF_USE_LEGACY_KERAS, before TF or Ray load)
from utils.cli import ArgumentParser  # noqa: E402

# TF, torch and the models are imported once the command line is read (main), so --help and a mistyped option
# are answered at once and without TF's start-up lines.


def spaces():
    import gymnasium as gym
    import numpy as np

    return gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(15)


def median_seconds(step, repeats):
    step()  # warm-up: allocator, oneDNN primitive caches, tf.function tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_step(obs, channels_last):
    import torch

    from models.impala_cnn_torch import ImpalaCNN

    model = ImpalaCNN(*spaces(), 15, {}, "bench").use_channels_last(channels_last)
    obs = torch.from_numpy(obs)

    def step():
        model.zero_grad(set_to_none=True)
        logits, _ = model({"obs": obs}, [], None)
        (logits.sum() + model.value_function().sum()).backward()

    return step


def tf_step(obs):
    import tensorflow as tf

    from models.impala_cnn_tf import ImpalaCNN

    model = ImpalaCNN(*spaces(), 15, {}, "bench")
    variables = model.trainable_variables()
    obs = tf.constant(obs)

    # Traced once, like RLlib's static-graph "tf" mode or "tf2" with eager_tracing.
    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            logits, _ = model({"obs": obs}, [], None)
            loss = tf.reduce_sum(logits) + tf.reduce_sum(model.value_function())
        return tape.gradient(loss, variables)

    return lambda: [g.numpy() for g in grads()]


def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import tensorflow  # noqa: F401  (before Ray, which the models import, so TF stays eager and tf.function traces)

    # isort: split
    import numpy as np
    import torch

    obs = np.random.default_rng(0).integers(0, 256, (args.batch, 64, 64, 3), dtype=np.uint8)
    print(f"batch: {args.batch}")
    print(f"torch_threads: {torch.get_num_threads()}")
    channels_last = median_seconds(torch_step(obs, True), args.repeats)
    print(f"torch_channels_last_s: {channels_last:.3f}")
    nchw = median_seconds(torch_step(obs, False), args.repeats)
    print(f"torch_nchw_s: {nchw:.3f}")
    print(f"torch_channels_last_speedup: {nchw / channels_last:.2f}")
    tf_seconds = median_seconds(tf_step(obs), args.repeats)
    print(f"tf_s: {tf_seconds:.3f}")


if __name__ == "__main__":
    main()
