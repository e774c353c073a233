"""Observation preprocessors, applied by the env wrapper to every batch of observations.

RLlib 2.60 raises on `model.custom_preprocessor`, so the name a config gives there is looked up in
preprocessors.PREPROCESSORS and the env applies the class itself (envs/procgen_env_wrapper.py), once per
step on the whole batch of games. The interface:

    cls(observation_space)          # the env's original space, Box(0, 255, (64, 64, 3), uint8)
    .observation_space              # the space of what transform() returns, for one game
    .transform(obs_batch)           # [N, 64, 64, 3] uint8 -> [N, *observation_space.shape]

transform() must return a new array (or its input unchanged): the env hands views of it to RLlib, which
keeps them, so never write into an array you returned before.
"""

import gymnasium as gym
import numpy as np


class MyPreprocessor:
    """Template for your own preprocessor: it passes observations through unchanged.

    To write one, copy this class, set `observation_space` to what `transform` returns and register it in
    preprocessors/__init__.py, e.g. `"crop": "preprocessors.custom_preprocessor:CropPreprocessor"`; then
    select it with `model: {custom_preprocessor: crop}` in the experiment file. A crop to the centre:

        class CropPreprocessor:
            def __init__(self, observation_space):
                self.observation_space = gym.spaces.Box(0, 255, (48, 48, 3), np.uint8)

            def transform(self, obs_batch):
                return obs_batch[:, 8:56, 8:56, :]

    Work on the whole batch with numpy (no Python loop over games): this runs on every env step.
    """

    def __init__(self, observation_space):
        self.original_space = observation_space
        self.observation_space = observation_space

    def transform(self, obs_batch):
        return obs_batch


class GrayscalePreprocessor:
    """RGB -> uint8 luminance with one channel: [N, H, W, 3] -> [N, H, W, 1]."""

    # ITU-R BT.601 luma weights in 8-bit fixed point (they sum to 256): integer maths on uint16 is
    # exact enough for uint8 output and faster than a float conversion of the whole batch.
    _WEIGHTS = (77, 150, 29)

    def __init__(self, observation_space):
        self.original_space = observation_space
        height, width = observation_space.shape[:2]
        self.observation_space = gym.spaces.Box(0, 255, (height, width, 1), np.uint8)

    def transform(self, obs_batch):
        rgb = obs_batch.astype(np.uint16)
        red, green, blue = self._WEIGHTS
        luma = rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue
        return ((luma + 128) >> 8).astype(np.uint8)[..., None]
