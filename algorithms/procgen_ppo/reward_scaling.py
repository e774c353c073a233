"""Reward scaling by the running standard deviation of the discounted return.

What OpenAI baselines' `VecNormalize(venv, ob=False)` does for the Procgen paper's PPO
(openai/train-procgen `train_procgen/train.py`; baselines `common/vec_env/vec_normalize.py`):
per env copy, `ret = ret * gamma + reward` (reset to 0 when an episode ends); a running
variance of `ret` over every step seen; each reward is divided by `sqrt(var + epsilon)` and
clipped to `[-clip, clip]`. Defaults are baselines': gamma 0.99 (VecNormalize's own default,
not PPO's 0.999), clip 10, epsilon 1e-8, initial count 1e-4.

Only the rewards the learner trains on are scaled; the returns RLlib reports (episode_reward_mean)
are the game's own, since RLlib's metrics come from the env, not from the train batch.

One difference from baselines, by construction: RLlib hands a policy one episode's fragment at a
time, so the statistics are updated with a fragment's returns at once (up to
rollout_fragment_length values) before its rewards are scaled, where baselines updates with one
value per env copy per step. The estimate converges to the same variance.
"""

import numpy as np


class ReturnScaler:
    """Running scale of the discounted return, per env runner (as baselines keeps one per process).

    `scale(key, rewards, episode_ends)`: rewards of one episode fragment, shape (T,), in order;
    `key` identifies the episode so the running return carries over to its next fragment.
    Returns float32 rewards of shape (T,).
    """

    def __init__(self, gamma=0.99, clip=10.0, epsilon=1e-8):
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.mean = 0.0
        self.var = 1.0
        self.count = 1e-4
        self._open_returns = {}

    def scale(self, key, rewards, episode_ends):
        rewards = np.asarray(rewards, dtype=np.float64)
        ret = self._open_returns.pop(key, 0.0)
        returns = np.empty_like(rewards)
        for i, reward in enumerate(rewards):
            ret = ret * self.gamma + reward
            returns[i] = ret
        if not episode_ends:
            self._open_returns[key] = ret
        self.update(returns)
        scaled = rewards / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def update(self, values):
        """Merge a batch of values into the running mean and variance (Chan et al.'s parallel update)."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        batch_mean, batch_var, batch_count = values.mean(), values.var(), values.size
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def get_state(self):
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def set_state(self, state):
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), float(state["count"])


def merge_states(states):
    """One running mean/variance over the values behind several `ReturnScaler.get_state()`s (env runners').

    Each state keeps its own 1e-4 prior count; merging adds them up, which is negligible."""
    merged = ReturnScaler()
    merged.set_state(states[0])
    for state in states[1:]:
        other = ReturnScaler()
        other.set_state(state)
        delta = other.mean - merged.mean
        total = merged.count + other.count
        m2 = merged.var * merged.count + other.var * other.count + delta**2 * merged.count * other.count / total
        merged.mean += delta * other.count / total
        merged.var = m2 / total
        merged.count = total
    return merged.get_state()
