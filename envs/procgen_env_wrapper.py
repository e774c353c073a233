"""Procgen for RLlib's old API stack: one game (`ProcgenEnvWrapper`, a gymnasium.Env) or N games stepped
together in one procgen call (`ProcgenVectorEnv`, an RLlib VectorEnv).

Procgen resets a game by itself when its episode ends: the observation it returns for the last step is
already the first one of the next episode. Both forms pass that observation on as the final one (with
terminated=True) and hand the very same observation out again from the next reset, without stepping.

Observations go through a list of stages before they leave the env: the configured preprocessor (see
preprocessors/custom_preprocessor.py), then any stage a caller adds (envs/framestack.py adds a frame stack).
Each stage works on the whole batch in one numpy call, so the vector form costs little over raw procgen.
"""

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)

# isort: split
import logging
import numbers

import gymnasium as gym
import numpy as np
from procgen import ProcgenGym3Env
from procgen.env import EXPLORATION_LEVEL_SEEDS
from ray.rllib.env.vector_env import VectorEnv
from ray.util import log_once

from envs.games import DISTRIBUTION_MODES, get_game
from utils.errors import UserError, unknown_name

logger = logging.getLogger(__name__)

DEFAULT_OPTIONS = {
    "env_name": "coinrun",
    "num_levels": 0,
    "start_level": 0,
    "paint_vel_info": False,
    "use_generated_assets": False,
    "center_agent": True,
    "use_sequential_levels": False,
    "distribution_mode": "easy",
    "use_backgrounds": True,
    "restrict_themes": False,
    "use_monochrome_assets": False,
    "rand_seed": None,  # None: procgen draws one from the OS
}

# procgen passes ints to C as int32.
_INT32_LIMIT = 2**31

# Procgen implements these modes for a few games only, and any other game aborts the whole process from
# C++ (fassert), killing a Ray worker without a Python traceback, so they are refused up front.
MODE_GAMES = {
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": tuple(sorted(EXPLORATION_LEVEL_SEEDS)),
}

OBSERVATION_SPACE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACTION_SPACE = gym.spaces.Discrete(15)

# Seed offset between the sub-envs RLlib makes with `num_envs_per_env_runner` > 1 on one worker; large so
# that rand_seed + worker_index never collides with another vector index.
_VECTOR_INDEX_STRIDE = 100_003


# ---------------------------------------------------------------------------------------------------
# Config checking. Each checker takes (value, name) and returns the normalized value or raises UserError.


def bool_option(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    # YAML turns `True,` or `"true"` into a string; bool("false") would be True, so strings are refused.
    hint = " (a YAML boolean, not a string)" if isinstance(value, str) else ""
    raise UserError(f"{name} must be true or false{hint}, got {value!r}.")


def int_option(minimum):
    """Checker for an int in [minimum, 2**31): bools are refused although Python counts them as ints."""

    def check(value, name):
        is_int = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        if is_int and minimum <= value < _INT32_LIMIT:
            return int(value)  # procgen's option converter only takes Python ints, not numpy ones
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}.")

    return check


def _seed_option(value, name):
    return None if value is None else int_option(0)(value, name)


def _game_option(value, name):
    if not isinstance(value, str):
        raise UserError(f"{name} must be a game name, got {value!r}.")
    return get_game(value, name).name


def _mode_option(value, name):
    if value not in DISTRIBUTION_MODES:
        raise unknown_name("distribution_mode", value, DISTRIBUTION_MODES, name)
    return value


def _preprocessor_option(value, name):
    from registry import preprocessor_names

    if value is None:
        return None
    if not isinstance(value, str) or value not in preprocessor_names():
        raise unknown_name("preprocessor", value, preprocessor_names(), name)
    return value


_OPTION_CHECKS = {
    "env_name": _game_option,
    "num_levels": int_option(0),
    "start_level": int_option(0),
    "distribution_mode": _mode_option,
    "rand_seed": _seed_option,
    **{key: bool_option for key, value in DEFAULT_OPTIONS.items() if isinstance(value, bool)},
}

# Set by the toolkit when it builds the env, never by users; absent means off.
_INTERNAL_CHECKS = {
    "_num_envs": int_option(1),  # games stepped together in one procgen call (the vector form)
    "_preprocessor": _preprocessor_option,
    "_render": bool_option,  # keep full-resolution RGB frames for videos
}


def check_config(env_config, where="env_config", extra_options=None):
    """Return a new dict: DEFAULT_OPTIONS (and extra_options' defaults) merged with the user's checked values.

    extra_options: {key: (default, checker)} for env variants with more options (see envs/framestack.py).
    Raises UserError naming `where`, the key and what is allowed.
    """
    if env_config is None:
        env_config = {}
    if not hasattr(env_config, "items"):
        raise UserError(f"{where} must be a mapping of procgen options, got {env_config!r}.")
    extra_options = extra_options or {}
    checks = {**_OPTION_CHECKS, **{key: check for key, (_, check) in extra_options.items()}}
    config = {**DEFAULT_OPTIONS, **{key: default for key, (default, _) in extra_options.items()}}
    for key, value in env_config.items():
        check = checks.get(key) or _INTERNAL_CHECKS.get(key)
        if check is None:
            raise _unknown_key(key, checks, where)
        config[key] = check(value, f"{where}.{key}")
    _check_mode_fits_game(config, where)
    return config


def _unknown_key(key, checks, where):
    if str(key).startswith("_"):
        return unknown_name("internal option", key, _INTERNAL_CHECKS, where)
    return unknown_name("option", key, checks, where)


def _check_mode_fits_game(config, where):
    mode, game = config["distribution_mode"], config["env_name"]
    games = MODE_GAMES.get(mode)
    if games is not None and game not in games:
        raise UserError(
            f'{where}.distribution_mode "{mode}" does not exist for {game}; procgen has it only for '
            f"{', '.join(games)}. Use easy or hard."
        )
    if mode == "exploration" and (config["num_levels"], config["start_level"]) != (0, 0):
        raise UserError(
            f"{where}: distribution_mode exploration plays one fixed level, so it sets num_levels and "
            "start_level itself; remove them."
        )


# ---------------------------------------------------------------------------------------------------
# Building procgen and the observation stages.


def _procgen_kwargs(config, rand_seed):
    kwargs = {key: config[key] for key in DEFAULT_OPTIONS}
    kwargs["rand_seed"] = rand_seed
    if config["distribution_mode"] == "exploration":
        # procgen sets both itself for this mode and asserts that they were not passed.
        del kwargs["num_levels"], kwargs["start_level"]
    if config.get("_render"):
        kwargs["render_mode"] = "rgb_array"  # procgen then adds the 512x512 frame to info["rgb"]
    return kwargs


class _PreprocessorStage:
    """Adapts a preprocessor (transform(batch)) to the stage call (obs, first)."""

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor
        self.observation_space = preprocessor.observation_space

    def __call__(self, obs, first):
        return self.preprocessor.transform(obs)


def _build_stages(config, stage_factories):
    """Stages in order (preprocessor first) and the observation space they produce."""
    factories = list(stage_factories)
    if config.get("_preprocessor"):
        from registry import preprocessor_class  # late: registry imports the env registry package

        cls = preprocessor_class(config["_preprocessor"])
        factories.insert(0, lambda space: _PreprocessorStage(cls(space)))
    stages, space = [], OBSERVATION_SPACE
    for factory in factories:
        stages.append(factory(space))
        space = stages[-1].observation_space
    return stages, space


def _warn_once(key, message):
    if log_once(key):
        logger.warning(message)


class ProcgenVectorEnv(VectorEnv):
    """N procgen games in one ProcgenGym3Env: one C call steps them all.

    Observations are returned as a list of per-game arrays that are views into one fresh batch array per
    step (nothing is written into an array after it was handed out, so RLlib may keep the views).

    stage_factories: callables space -> stage; a stage has `observation_space` and
    `__call__(obs_batch, first) -> obs_batch`, where `first` flags the games whose episode just started.
    """

    def __init__(self, env_config=None, num_envs=None, stage_factories=()):
        self.config = check_config(env_config)
        num_envs = num_envs or self.config.get("_num_envs", 1)
        self._stages, observation_space = _build_stages(self.config, stage_factories)
        super().__init__(observation_space, ACTION_SPACE, num_envs)
        self._game = None
        self._reseed(self.config["rand_seed"])

    # -- RLlib's VectorEnv API ------------------------------------------------------------------------

    def vector_reset(self, *, seeds=None, options=None):
        """All games' first observations. Stored ones when every game is at an episode start; otherwise
        (or with a seed) procgen is rebuilt, because it cannot restart a game mid-episode. Procgen has one
        seed for the whole batch, so the first seed given is used."""
        seed = next((s for s in seeds or () if s is not None), None)
        if seed is not None:
            self._reseed(seed)
        elif not self._first.all():
            self._start_games(self._next_seed())
        return list(self._obs), self._empty_infos()

    def reset_at(self, index=None, *, seed=None, options=None):
        """Game `index`'s first observation, stored when its episode ended; no procgen call."""
        index = 0 if index is None else index
        if seed is not None:
            _warn_once("procgen_reset_at_seed", "Procgen seeds a whole batch, not one game: reset_at ignores seed.")
        if not self._first[index]:
            # One game of a batch cannot be restarted; RLlib only resets games whose episode ended.
            _warn_once(
                "procgen_reset_at_mid_episode",
                "reset_at() on a procgen game in mid-episode: the game goes on from its current state.",
            )
        return self._obs[index], {}

    def restart_at(self, index=None):
        """Rebuilds procgen, which restarts every game of the batch (it cannot rebuild one)."""
        _warn_once("procgen_restart_at", "Restarting a procgen sub-env restarts all games of its batch.")
        self._start_games(self._next_seed())

    def vector_step(self, actions):
        """Step every game: (obs, rewards, terminateds, truncateds, infos), each a list of num_envs."""
        self._game.act(np.asarray(actions, dtype=np.int32))
        rewards, ob, first = self._game.observe()
        self._observe(ob["rgb"], first)
        # A game whose next observation starts an episode has just ended its previous one. Procgen ends
        # episodes at its own time limit too and does not say which, so truncateds stay False.
        return list(self._obs), rewards.tolist(), first.tolist(), [False] * self.num_envs, self._empty_infos()

    def get_sub_environments(self):
        """[self]: the games live in one procgen object, not in separate envs. Lets RLlib's
        foreach_env() reach this env and BaseEnv.stop() close it."""
        return [self]

    def try_render_at(self, index=None):
        return self.get_frames()[0 if index is None else index]

    # -- Extras ---------------------------------------------------------------------------------------

    def reset(self, *, seed=None, options=None):
        """vector_reset() under gymnasium's name, so RLlib's `seed` setting (which calls env.reset(seed=...))
        seeds procgen."""
        return self.vector_reset(seeds=[seed], options=options)

    def get_frames(self):
        """Current RGB frames [N, 512, 512, 3] with `_render` on; else the raw 64x64 RGB observations."""
        if not self.config.get("_render"):
            return self._raw
        return np.stack([info["rgb"] for info in self._game.get_info()])

    def close(self):
        if self._game is not None:
            self._game.close()
            self._game = None

    # -- Internals ------------------------------------------------------------------------------------

    def _reseed(self, seed):
        # Rebuilds after the first draw their seeds from this stream, so that with a rand_seed a rebuilt
        # env plays new levels, reproducibly; without one procgen draws its own seed each time.
        self._seeds = None if seed is None else np.random.default_rng(seed)
        self._start_games(seed)

    def _next_seed(self):
        return None if self._seeds is None else int(self._seeds.integers(_INT32_LIMIT))

    def _start_games(self, rand_seed):
        self.close()
        self._game = ProcgenGym3Env(num=self.num_envs, **_procgen_kwargs(self.config, rand_seed))
        _, ob, first = self._game.observe()
        self._observe(ob["rgb"], first)

    def _observe(self, rgb, first):
        self._raw, self._first = rgb, first
        obs = rgb
        for stage in self._stages:
            obs = stage(obs, first)
        self._obs = obs

    def _empty_infos(self):
        # Fresh dicts each step: RLlib may add keys to the info dicts it is given.
        return [{} for _ in range(self.num_envs)]


class ProcgenEnvWrapper(gym.Env):
    """One procgen game as a gymnasium.Env (a ProcgenVectorEnv of one game inside)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, env_config=None, stage_factories=()):
        self._vector = ProcgenVectorEnv(env_config, num_envs=1, stage_factories=stage_factories)
        self.config = self._vector.config
        self.observation_space = self._vector.observation_space
        self.action_space = self._vector.action_space
        self.render_mode = "rgb_array"

    def reset(self, *, seed=None, options=None):
        """The stored first observation after an episode ended; procgen is rebuilt only when called
        mid-episode or with a seed."""
        super().reset(seed=seed)
        obs, infos = self._vector.vector_reset(seeds=[seed], options=[options])
        return obs[0], infos[0]

    def step(self, action):
        obs, rewards, terminateds, truncateds, infos = self._vector.vector_step([action])
        return obs[0], rewards[0], terminateds[0], truncateds[0], infos[0]

    def render(self):
        """The current RGB frame: 512x512 with `_render` on, else the raw 64x64 observation."""
        return self._vector.try_render_at(0)

    def close(self):
        self._vector.close()


# ---------------------------------------------------------------------------------------------------
# Entry points used by the env registry.


def seeded_config(config, worker_index=0, vector_index=0):
    """config with rand_seed shifted per env runner (RLlib's worker_index) and per env, so each plays different levels."""
    seed = config["rand_seed"]
    if seed is None:
        return config
    seed = (seed + worker_index + _VECTOR_INDEX_STRIDE * vector_index) % _INT32_LIMIT
    return {**config, "rand_seed": seed}


def build(config, worker_index=0, vector_index=0, stage_factories=()):
    """The env for a checked config: ProcgenVectorEnv when `_num_envs` is set, else ProcgenEnvWrapper."""
    config = seeded_config(config, worker_index, vector_index)
    if "_num_envs" in config:
        return ProcgenVectorEnv(config, stage_factories=stage_factories)
    return ProcgenEnvWrapper(config, stage_factories=stage_factories)


def context_indices(env_context):
    """(worker_index, vector_index) of an RLlib EnvContext; (0, 0) for a plain dict."""
    return getattr(env_context, "worker_index", 0), getattr(env_context, "vector_index", 0)


def create(env_context):
    """Env creator for RLlib: env_context is an EnvContext or a plain dict of options."""
    return build(check_config(env_context), *context_indices(env_context))
