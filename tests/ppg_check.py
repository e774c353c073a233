"""Run by tests/test_ppg.py in its own process (Ray must not leak into pytest).

    python tests/ppg_check.py OUT_DIR RUNNERS

Trains PPG (experiments/ppg.yaml at toy sizes, n_pi 2, DrAC's crop) for 3 iterations on bigfish with RUNNERS env runners:
the auxiliary phase runs after iteration 2. Saves a checkpoint after iteration 3, restores it into a new
algorithm, trains one more iteration (the 4th: an auxiliary phase over the one batch sampled since the
resume), rolls out one action, and prints one JSON line of facts for the test.
"""

import json
import sys

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

import utils  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF/Ray)


def main(out_dir, runners):
    import numpy as np
    import ray
    import torch

    import registry
    from utils.config import build_algorithm_config, load_experiment

    overrides = [
        "train_batch_size=512", "minibatch_size=256", "min_sample_timesteps_per_iteration=0",
        "num_envs_per_env_runner=4", "rollout_fragment_length=128", "n_pi=2", "n_aux_epochs=2",
        "aux_minibatch_size=256", "model.custom_model_config.depths=[4,4,4]", "model.custom_model_config.dense_size=16",
        "augmentation=crop", "env_config.env_name=bigfish", f"num_env_runners={runners}", "num_gpus=0", "stop.timesteps_total=2048",
    ]
    exp = load_experiment("experiments/ppg.yaml", overrides, cpus=int(runners) + 1, gpus=0)
    ray.init(num_cpus=int(runners) + 1, include_dashboard=False, log_to_driver=False)
    registry.register_all()
    algo = build_algorithm_config(exp).build_algo()
    policy = algo.get_policy()
    results = [stats_of(algo.train()) for _ in range(2)]
    learner = policy.get_weights()
    (runner,) = algo.env_runner_group.foreach_env_runner(lambda r: r.get_policy().get_weights(), local_env_runner=False)
    weights_match = all(np.array_equal(learner[k], runner[k]) for k in learner)
    results.append(stats_of(algo.train()))
    checkpoint = algo.save(out_dir).checkpoint.path
    aux_state = policy.aux_optimizer.state_dict()["state"]
    rngs_at_save = (policy.aux_rng.bit_generator.state, policy.augmentation_generator.get_state().tolist())
    counters = dict(algo._counters)
    algo.restore(checkpoint)  # into the live algorithm, whose buffer holds the 3rd batch
    buffer_after_live_restore = algo.get_policy().aux_buffer.size
    algo.stop()

    restored = build_algorithm_config(exp).build_algo()
    restored.restore(checkpoint)
    restored_policy = restored.get_policy()
    restored_aux_steps = [float(s["step"]) for s in restored_policy.aux_optimizer.state_dict()["state"].values()]
    restored_counters = {k: restored._counters[k] for k in ("ppg_policy_phases", "ppg_aux_phases")}
    rngs_restored = (restored_policy.aux_rng.bit_generator.state, restored_policy.augmentation_generator.get_state().tolist())
    seed = algo.config.seed or 0
    seeded = (np.random.default_rng(seed).bit_generator.state, torch.Generator().manual_seed(seed).get_state().tolist())
    results.append(stats_of(restored.train()))
    obs = np.zeros(restored_policy.observation_space.shape, dtype=np.uint8)
    action = restored.compute_single_action(obs, explore=False)
    facts = {
        "policy_class": type(policy).__name__,
        "model_class": type(policy.model).__name__,
        "results": results,
        "aux_optimizer_steps": [float(s["step"]) for s in aux_state.values()],
        "restored_aux_optimizer_steps": restored_aux_steps,
        "counters": {k: counters[k] for k in ("ppg_policy_phases", "ppg_aux_phases")},
        "restored_counters": restored_counters,
        # The auxiliary minibatch order and DrAC's draws resume where they were (both moved since the seed).
        "rngs_resumed": rngs_restored == rngs_at_save,
        "rngs_moved_since_seed": rngs_at_save[0] != seeded[0] and rngs_at_save[1] != seeded[1],
        "buffer_dtype": str(restored_policy.aux_buffer.obs.dtype) if restored_policy.aux_buffer.obs is not None else None,
        "action": int(action),
        "action_space_n": int(restored_policy.action_space.n),
    }
    restored.stop()
    facts.update(runner_weights_match_after_aux_phase=weights_match, buffer_after_live_restore=buffer_after_live_restore,
                 scheduled_lr=scheduled_lr(overrides))
    print("FACTS " + json.dumps(facts, default=float))


def scheduled_lr(overrides):
    """cur_lr of 3 iterations of 512 steps with no env runner and an lr_schedule from 5e-4 to 1e-4 at 1024 steps."""
    from utils.config import build_algorithm_config, load_experiment

    extra = ["num_env_runners=0", "lr_schedule=[[0, 5.0e-4], [1024, 1.0e-4]]", "n_pi=8", "augmentation=null"]
    exp = load_experiment("experiments/ppg.yaml", overrides + extra, cpus=1, gpus=0)
    algo = build_algorithm_config(exp).build_algo()
    rates = [float(algo.train()["info"]["learner"]["default_policy"]["learner_stats"]["cur_lr"]) for _ in range(3)]
    algo.stop()
    return rates


def stats_of(result):
    stats = result["info"]["learner"]["default_policy"]["learner_stats"]
    return {"iteration": result["training_iteration"], "timesteps": result["timesteps_total"],
            **{k: float(v) for k, v in stats.items() if k.startswith("aux") or k in ("vf_loss", "policy_loss", "drac_regularizer")}}


if __name__ == "__main__":
    main(*sys.argv[1:])
