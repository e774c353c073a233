"""`run: RandomPolicy`: an algorithm that samples uniformly random actions and never learns.

Useful as the floor every trained agent must beat, and as a fast end-to-end check of the
env, checkpoint and rollout plumbing.
"""

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.policy import Policy
from ray.rllib.utils.metrics import NUM_AGENT_STEPS_SAMPLED, NUM_ENV_STEPS_SAMPLED


class RandomPolicy(Policy):
    """Uniform random actions from the action space; no weights."""

    def __init__(self, observation_space, action_space, config):
        super().__init__(observation_space, action_space, config)
        self._rng = np.random.default_rng(config.get("seed"))

    def compute_actions(self, obs_batch, state_batches=None, prev_action_batch=None, prev_reward_batch=None, **kwargs):
        n = len(obs_batch) if not isinstance(obs_batch, dict) else len(next(iter(obs_batch.values())))
        actions = self._rng.integers(0, self.action_space.n, size=n)
        return actions, [], {}

    def learn_on_batch(self, samples):
        return {}

    def get_weights(self):
        return {}

    def set_weights(self, weights):
        pass


class RandomAlgorithm(Algorithm):
    """Samples `train_batch_size` env steps per iteration with RandomPolicy."""

    @classmethod
    def get_default_config(cls):
        return AlgorithmConfig(algo_class=cls)

    @classmethod
    def get_default_policy_class(cls, config):
        return RandomPolicy

    def training_step(self):
        batch = synchronous_parallel_sample(
            worker_set=self.env_runner_group, max_env_steps=self.config.total_train_batch_size
        )
        self._counters[NUM_ENV_STEPS_SAMPLED] += batch.env_steps()
        self._counters[NUM_AGENT_STEPS_SAMPLED] += batch.agent_steps()
        return {}
