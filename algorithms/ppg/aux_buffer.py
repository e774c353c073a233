"""The auxiliary phase's replay of the last N_pi policy phases: observations and value targets.

At the paper's settings it holds N_pi x train batch = 32 x 16384 = 524,288 frames: 6.4 GB as uint8
(64 x 64 x 3 bytes each), the dtype RLlib's train batch keeps Procgen's frames in (float32 would be 25.8 GB).
Memory is reserved once, for the first batch's size times `phases`, and reused after every auxiliary phase;
larger batches grow it by half at a time. The buffer is not part of checkpoints (see algorithms/ppg/ppg.py).
"""

import numpy as np


class AuxBuffer:
    """Rows appended batch by batch; `minibatches` yields random index arrays over all rows."""

    def __init__(self, phases):
        self.phases = phases
        self.obs = None
        self.targets = None
        self.size = 0
        self.batches = 0

    def add(self, obs, targets):
        """Append obs (N, ...) and value targets (N,); obs keep their dtype (uint8 for Procgen)."""
        obs, targets = np.asarray(obs), np.asarray(targets, dtype=np.float32)
        if len(obs) != len(targets):
            raise ValueError(f"obs and targets must have the same length, got {len(obs)} and {len(targets)}")
        if self.obs is None:
            self.obs = np.empty((len(obs) * self.phases, *obs.shape[1:]), dtype=obs.dtype)
            self.targets = np.empty(len(self.obs), dtype=np.float32)
        end = self.size + len(obs)
        if end > len(self.obs):
            # Geometric growth (x1.5): a run of larger batches copies the buffer O(log n) times, not once per batch.
            grown = max(end, len(self.obs) * 3 // 2)
            obs_grown = np.empty((grown, *obs.shape[1:]), dtype=self.obs.dtype)
            obs_grown[: self.size] = self.obs[: self.size]
            targets_grown = np.empty(grown, dtype=np.float32)
            targets_grown[: self.size] = self.targets[: self.size]
            self.obs, self.targets = obs_grown, targets_grown
        self.obs[self.size:end] = obs
        self.targets[self.size:end] = targets
        self.size = end
        self.batches += 1

    def minibatches(self, minibatch_size, rng):
        """One epoch: a fresh permutation of the rows (numpy Generator `rng`) cut into index arrays."""
        order = rng.permutation(self.size)
        return [order[i: i + minibatch_size] for i in range(0, self.size, minibatch_size)]

    def clear(self):
        """Forget the rows; the memory is kept for the next N_pi batches."""
        self.size = 0
        self.batches = 0
