"""Run by tests/test_procgen_ppo.py in its own process (Ray and TF's graph mode must not leak into pytest).

    python tests/procgen_ppo_check.py FRAMEWORK OUT_DIR RUNNERS

Trains ProcgenPPO for one tiny iteration on bigfish with RUNNERS env runners (0: the learner samples),
saves a checkpoint, restores it into a new algorithm and prints one JSON line of facts for the test.
"""

import json
import sys

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

import numpy as np  # noqa: E402

import utils  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF/Ray)

# Far below the gradients' natural global norm, so that clipping surely acts.
GRAD_CLIP = 1e-4
# Far below the ratios' movement in one iteration (KL about 2e-7 already), so that the surrogate surely clips.
CLIP_PARAM = 1e-9


def main(framework, out_dir, runners):
    import ray

    import registry
    from utils.config import build_algorithm_config, load_experiment

    overrides = [
        "run=ProcgenPPO", f"framework={framework}", f"model.custom_model=impala_cnn_{framework}",
        "vf_clip_param=0.2", "train_batch_size=1024", "minibatch_size=256", "num_epochs=1",
        "min_sample_timesteps_per_iteration=0", "num_envs_per_env_runner=4", "rollout_fragment_length=256",
        "model.custom_model_config.depths=[4,4,4]", "model.custom_model_config.dense_size=16",
        "env_config.env_name=bigfish", "env_config.num_levels=0", f"num_env_runners={runners}",
        # A large step size, so that the policy moves measurably within the iteration although GRAD_CLIP keeps each
        # gradient near Adam's epsilon (KL about 2e-7 on TF, 1e-5 on torch; 5e-4 left TF's within float32 noise).
        f"grad_clip={GRAD_CLIP}", "lr=0.01",
        # Each ratio that moves at all leaves [1 - clip, 1 + clip]: the reported clip fraction must then be above 0.
        f"clip_param={CLIP_PARAM}",
    ]
    exp = load_experiment("experiments/learning-check.yaml", overrides, cpus=int(runners) + 1, gpus=0)
    ray.init(num_cpus=int(runners) + 1, include_dashboard=False, log_to_driver=False)
    registry.register_all()
    algo = build_algorithm_config(exp).build_algo()
    result = algo.train()
    policy = algo.get_policy()
    samplers = runner_scalers(algo) or [policy.return_scaler.get_state()]
    stats = result["info"]["learner"]["default_policy"]["learner_stats"]
    checkpoint = algo.save(out_dir).checkpoint.path
    scaler = policy.return_scaler.get_state()
    algo.stop()
    restored = build_algorithm_config(exp).build_algo()
    restored.restore(checkpoint)
    facts = {
        "policy_class": type(policy).__name__,
        "episode_returns": [float(r) for r in result["env_runners"]["hist_stats"]["episode_reward"]],
        "sampler_scalers": samplers,
        "scaler": scaler,
        "restored_scaler": restored.get_policy().return_scaler.get_state(),
        "restored_runner_scalers": runner_scalers(restored),
        "simple_optimizer": restored.config.simple_optimizer,
        "vf_loss": float(stats["vf_loss"]),
        "optimizer_epsilon": optimizer_epsilon(policy, framework),
        "grad_clip": GRAD_CLIP,
        "grad_gnorm_stat": float(stats["grad_gnorm"]),
        "kl": float(stats["kl"]),
        "clip_fraction": float(stats["clip_fraction"]),
    }
    # Last: sampling once more moves the runners' reward-scaling statistics compared above.
    grads = applied_gradients(restored, restored.get_policy())
    facts["applied_grad_global_norm"] = float(np.sqrt(sum(float(np.sum(np.square(g))) for g in grads)))
    restored.stop()
    print("FACTS " + json.dumps(facts, default=float))


def applied_gradients(algo, policy):
    """The gradients the policy would apply for one freshly sampled batch (after its clipping), as numpy arrays."""
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
    from ray.rllib.policy.sample_batch import MultiAgentBatch

    batch = synchronous_parallel_sample(worker_set=algo.env_runner_group, max_env_steps=256)
    if isinstance(batch, MultiAgentBatch):
        batch = batch.policy_batches["default_policy"]
    grads, _ = policy.compute_gradients(batch)
    return [np.asarray(g) for g in grads if g is not None]


def runner_scalers(algo):
    """The return scalers' states of the remote env runners (empty with 0 runners)."""
    return algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.get_policy().return_scaler.get_state(), local_env_runner=False)


def optimizer_epsilon(policy, framework):
    if framework == "torch":
        return policy._optimizers[0].defaults["eps"]
    return float(policy._optimizer._epsilon)


if __name__ == "__main__":
    main(*sys.argv[1:])
