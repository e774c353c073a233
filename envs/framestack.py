"""Procgen with the last k frames stacked on the channel axis (registered as `stacked_procgen_env`).

Same options as envs/procgen_env_wrapper.py plus `frame_stack` (k, default 4). Observations are
Box(0, 255, (64, 64, 3k), uint8), oldest frame first; with a preprocessor the stack holds its output
(grayscale: 64x64xk). At an episode start the stack is filled with that episode's first frame, so no
frame of the previous episode leaks into the next one.
"""

import functools

import gymnasium as gym
import numpy as np

from envs import procgen_env_wrapper as wrapper

FRAME_STACK_OPTION = {"frame_stack": (4, wrapper.int_option(1))}


def check_config(env_config, where="env_config"):
    """The wrapper's check_config with the `frame_stack` option added."""
    return wrapper.check_config(env_config, where, extra_options=FRAME_STACK_OPTION)


class FrameStack:
    """Observation stage: every game's last k observations, concatenated on the channel axis."""

    def __init__(self, k, observation_space):
        self.k = k
        self._channels = observation_space.shape[-1]
        low, high = (np.concatenate([bound] * k, axis=-1) for bound in (observation_space.low, observation_space.high))
        self.observation_space = gym.spaces.Box(low, high, dtype=observation_space.dtype)
        self._stack = None

    def __call__(self, obs, first):
        if self._stack is None or len(self._stack) != len(obs):
            stack = self._filled(obs)
        else:
            # A new array each step: the previous one was handed out and may still be held by RLlib.
            stack = np.concatenate([self._stack[..., self._channels :], obs], axis=-1)
            starts = np.flatnonzero(first)
            if starts.size:
                stack[starts] = self._filled(obs[starts])
        self._stack = stack
        return stack

    def _filled(self, obs):
        return np.concatenate([obs] * self.k, axis=-1)


def create(env_context):
    """Env creator for RLlib: like the wrapper's create(), with the frame stack added."""
    config = check_config(env_context)
    stack = functools.partial(FrameStack, config.pop("frame_stack"))
    return wrapper.build(config, *wrapper.context_indices(env_context), stage_factories=[stack])
