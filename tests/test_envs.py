"""The procgen envs: both forms for every game, auto-reset, seeding, frame stacking, preprocessors,
config errors, and RLlib's old-stack BaseEnv driving the vector env.

Behaviour is checked against raw procgen played in lockstep with the same seed and actions: equal
observations and rewards at every step prove that the wrappers neither skip nor add procgen steps.
"""

import utils  # noqa: F401  (TF_USE_LEGACY_KERAS, before TF or Ray load)

# isort: split
# Before Ray: RLlib's first import of TF turns eager mode off for the whole test session.
import tensorflow  # noqa: F401

# isort: split
import gymnasium as gym
import numpy as np
import pytest
from procgen import ProcgenGym3Env
from ray.rllib.env.base_env import _DUMMY_AGENT_ID, convert_to_base_env
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.vector_env import VectorEnv, VectorEnvWrapper

import registry
from envs import framestack
from envs import procgen_env_wrapper as wrapper
from envs.games import GAMES
from preprocessors import PREPROCESSORS
from preprocessors.custom_preprocessor import GrayscalePreprocessor, MyPreprocessor
from utils.errors import UserError

RGB_SPACE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACTIONS = gym.spaces.Discrete(15)


def random_actions(num, steps, seed=0):
    return np.random.default_rng(seed).integers(0, 15, size=(steps, num))


def raw_procgen(num, env_name, rand_seed, **options):
    return ProcgenGym3Env(num=num, env_name=env_name, distribution_mode="easy", rand_seed=rand_seed, **options)


def raw_step(raw, actions):
    raw.act(np.asarray(actions, dtype=np.int32))
    rewards, ob, first = raw.observe()
    return ob["rgb"], rewards, first


def batch(obs_list):
    return np.stack(obs_list)


# --------------------------------------------------------------------------- every game, both forms


@pytest.mark.parametrize("game", sorted(GAMES))
def test_single_env_plays_every_game(game):
    env = wrapper.create({"env_name": game})
    assert isinstance(env, wrapper.ProcgenEnvWrapper)
    assert env.observation_space == RGB_SPACE and env.action_space == ACTIONS
    obs, info = env.reset()
    assert env.observation_space.contains(obs) and info == {}
    for action in random_actions(1, 10)[:, 0]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert type(reward) is float and type(terminated) is bool and truncated is False and info == {}
    env.close()


@pytest.mark.parametrize("game", sorted(GAMES))
def test_vector_env_plays_every_game(game):
    env = wrapper.create({"env_name": game, "_num_envs": 3})
    assert isinstance(env, wrapper.ProcgenVectorEnv) and isinstance(env, VectorEnv)
    assert env.num_envs == 3 and env.observation_space == RGB_SPACE and env.action_space == ACTIONS
    obs, infos = env.vector_reset()
    assert batch(obs).shape == (3, 64, 64, 3) and batch(obs).dtype == np.uint8 and infos == [{}] * 3
    for actions in random_actions(3, 10):
        obs, rewards, terminateds, truncateds, infos = env.vector_step(list(actions))
        assert batch(obs).shape == (3, 64, 64, 3) and batch(obs).dtype == np.uint8
        assert all(type(r) is float for r in rewards) and all(type(t) is bool for t in terminateds)
        assert truncateds == [False] * 3 and infos == [{}] * 3
    env.close()


# --------------------------------------------------------------------------- auto-reset


def test_vector_env_matches_raw_procgen_through_episode_ends():
    """maze ends every episode by step 500 at the latest: all games end at least once."""
    num = 6
    env = wrapper.ProcgenVectorEnv({"env_name": "maze", "rand_seed": 11}, num_envs=num)
    raw = raw_procgen(num, "maze", 11)
    obs, _ = env.vector_reset()
    assert np.array_equal(batch(obs), raw.observe()[1]["rgb"])
    returns, lengths, finished = np.zeros(num), np.zeros(num, int), []
    for actions in random_actions(num, 510, seed=1):
        obs, rewards, terminateds, _, _ = env.vector_step(list(actions))
        raw_obs, raw_rewards, raw_first = raw_step(raw, actions)
        # reset_at() below must not step procgen, or this lockstep comparison would break.
        assert np.array_equal(batch(obs), raw_obs)
        assert rewards == raw_rewards.tolist() and terminateds == raw_first.tolist()
        returns += rewards
        lengths += 1
        for i in np.flatnonzero(terminateds):
            first_obs, info = env.reset_at(int(i))
            assert np.array_equal(first_obs, obs[i]) and info == {}
            finished.append((returns[i], lengths[i]))
            returns[i], lengths[i] = 0, 0
    assert len(finished) >= num
    assert {ret for ret, _ in finished} <= {0.0, 10.0}  # maze pays 10 for the goal, nothing on timeout
    assert max(length for _, length in finished) == GAMES["maze"].timeout


def test_single_env_final_obs_is_next_reset_obs():
    env = wrapper.create({"env_name": "leaper", "rand_seed": 5})
    raw = raw_procgen(1, "leaper", 5)
    obs, _ = env.reset()
    assert np.array_equal(obs, raw.observe()[1]["rgb"][0])
    episode_return, returns = 0.0, []
    for action in random_actions(1, 300, seed=2)[:, 0]:
        obs, reward, terminated, _, _ = env.step(action)
        raw_obs, raw_rewards, raw_first = raw_step(raw, [action])
        assert np.array_equal(obs, raw_obs[0]) and reward == raw_rewards[0] and terminated == raw_first[0]
        episode_return += reward
        if terminated:
            reset_obs, _ = env.reset()
            assert np.array_equal(reset_obs, obs)
            returns.append(episode_return)
            episode_return = 0.0
    assert len(returns) >= 2 and set(returns) <= {0.0, 10.0}


def test_reset_mid_episode_starts_a_new_episode():
    # One level only: a rebuilt env must show the level's first frame again (leaper's cars move every step).
    env = wrapper.create({"env_name": "leaper", "num_levels": 1, "start_level": 42})
    first, _ = env.reset()
    for action in random_actions(1, 5)[:, 0]:
        obs, *_ = env.step(action)
    assert not np.array_equal(obs, first)
    again, _ = env.reset()
    assert np.array_equal(again, first)


def test_vector_env_resets_mid_episode():
    env = wrapper.create({"env_name": "leaper", "num_levels": 1, "start_level": 42, "_num_envs": 2})
    first = batch(env.vector_reset()[0])
    obs, *_ = env.vector_step([1, 1])
    # One game of a batch cannot be restarted alone: reset_at keeps it going (with a warning).
    assert np.array_equal(env.reset_at(0)[0], obs[0])
    assert np.array_equal(batch(env.vector_reset()[0]), first)  # the whole batch can: procgen is rebuilt
    env.vector_step([1, 1])
    env.restart_at(1)
    assert np.array_equal(batch(env.vector_reset()[0]), first)


def test_one_level_repeats_on_every_episode():
    env = wrapper.create({"env_name": "leaper", "num_levels": 1, "start_level": 42, "_num_envs": 4})
    obs, _ = env.vector_reset()
    first = obs[0]
    assert all(np.array_equal(o, first) for o in obs)
    starts = 0
    for actions in random_actions(4, 200):
        obs, _, terminateds, _, _ = env.vector_step(list(actions))
        for i in np.flatnonzero(terminateds):
            assert np.array_equal(env.reset_at(int(i))[0], first)
            starts += 1
    assert starts >= 4
    other = wrapper.create({"env_name": "leaper", "num_levels": 1, "start_level": 43})
    assert not np.array_equal(other.reset()[0], first)


def test_returned_observations_are_never_rewritten():
    """RLlib keeps the per-game views it was given; later steps must not write into them."""
    for env in (
        wrapper.create({"env_name": "leaper", "_num_envs": 3, "rand_seed": 1}),
        framestack.create({"env_name": "leaper", "_num_envs": 3, "rand_seed": 1, "_preprocessor": "grayscale"}),
    ):
        obs, _ = env.vector_reset()
        kept = [(o, o.copy()) for o in obs]
        for actions in random_actions(3, 60):
            obs, *_ = env.vector_step(list(actions))
            kept += [(o, o.copy()) for o in obs]
        assert all(np.array_equal(view, copy) for view, copy in kept)


# --------------------------------------------------------------------------- seeding


def first_batch(config, worker_index=1):
    env = wrapper.create(EnvContext(config, worker_index=worker_index))
    return batch(env.vector_reset()[0])


def test_same_rand_seed_same_levels_and_workers_differ():
    config = {"env_name": "coinrun", "rand_seed": 7, "_num_envs": 4}
    assert np.array_equal(first_batch(config), first_batch(config))
    assert not np.array_equal(first_batch(config, worker_index=1), first_batch(config, worker_index=2))
    single = {"env_name": "coinrun", "rand_seed": 7}
    assert np.array_equal(wrapper.create(single).reset()[0], wrapper.create(single).reset()[0])


def test_worker_index_shifts_rand_seed():
    config = wrapper.check_config({"rand_seed": 7})
    assert wrapper.seeded_config(config, worker_index=3)["rand_seed"] == 10
    assert wrapper.seeded_config(wrapper.check_config({}), worker_index=3)["rand_seed"] is None
    assert wrapper.seeded_config(config, worker_index=3, vector_index=1)["rand_seed"] not in (7, 8, 9, 10, 11)
    # rand_seed + worker_index == what raw procgen gets
    raw = raw_procgen(2, "coinrun", 10)
    worker_3 = first_batch({"env_name": "coinrun", "rand_seed": 7, "_num_envs": 2}, worker_index=3)
    assert np.array_equal(worker_3, raw.observe()[1]["rgb"])


def test_reset_with_seed_replays_that_seed():
    env = wrapper.create({"env_name": "coinrun", "_num_envs": 2})
    env.vector_step([0, 0])
    obs, _ = env.vector_reset(seeds=[123, None])
    assert np.array_equal(batch(obs), raw_procgen(2, "coinrun", 123).observe()[1]["rgb"])
    single = wrapper.create({"env_name": "coinrun"})
    assert np.array_equal(single.reset(seed=123)[0], raw_procgen(1, "coinrun", 123).observe()[1]["rgb"][0])


# --------------------------------------------------------------------------- frame stack


def check_stack(stacked, previous, plain, started, k):
    """One game's stack: filled with its first frame at an episode start, else shifted by one frame."""
    c = plain.shape[-1]
    if started:
        assert np.array_equal(stacked, np.concatenate([plain] * k, axis=-1))
    else:
        assert np.array_equal(stacked[..., -c:], plain) and np.array_equal(stacked[..., :-c], previous[..., c:])


def test_frame_stack_single_env():
    env = framestack.create({"env_name": "leaper", "rand_seed": 4})
    plain = wrapper.create({"env_name": "leaper", "rand_seed": 4})
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 12), np.uint8)
    stacked, _ = env.reset()
    check_stack(stacked, None, plain.reset()[0], True, 4)
    ends = 0
    for action in random_actions(1, 150, seed=3)[:, 0]:
        previous = stacked
        stacked, reward, terminated, _, _ = env.step(action)
        obs, plain_reward, plain_terminated, _, _ = plain.step(action)
        assert (reward, terminated) == (plain_reward, plain_terminated)
        check_stack(stacked, previous, obs, terminated, 4)
        if terminated:
            assert np.array_equal(env.reset()[0], stacked)
            plain.reset()
            ends += 1
    assert ends >= 1


@pytest.mark.parametrize("preprocessor, channels", [(None, 3), ("grayscale", 1)])
def test_frame_stack_vector_env(preprocessor, channels):
    k, num = 3, 4
    config = {"env_name": "leaper", "rand_seed": 9, "_num_envs": num, "_preprocessor": preprocessor}
    env = framestack.create({**config, "frame_stack": k})
    plain = wrapper.create(config)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, channels * k), np.uint8)
    stacked, plain_obs = batch(env.vector_reset()[0]), batch(plain.vector_reset()[0])
    assert stacked.shape == (num, 64, 64, channels * k)
    for i in range(num):
        check_stack(stacked[i], None, plain_obs[i], True, k)
    ends = 0
    for actions in random_actions(num, 100, seed=4):
        previous = stacked
        obs, _, terminateds, _, _ = env.vector_step(list(actions))
        stacked, plain_obs = batch(obs), batch(plain.vector_step(list(actions))[0])
        for i in range(num):
            check_stack(stacked[i], previous[i], plain_obs[i], terminateds[i], k)
            if terminateds[i]:
                assert np.array_equal(env.reset_at(i)[0], stacked[i])
                ends += 1
    assert ends >= 1


def test_frame_stack_default_and_config():
    assert framestack.check_config({})["frame_stack"] == 4
    assert framestack.check_config({"frame_stack": 2, "env_name": "maze"})["frame_stack"] == 2
    with pytest.raises(UserError, match="frame_stack"):
        wrapper.check_config({"frame_stack": 2})  # only the stacked env knows it


# --------------------------------------------------------------------------- preprocessors


def random_frames(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_grayscale_preprocessor():
    pre = GrayscalePreprocessor(RGB_SPACE)
    assert pre.observation_space == gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)
    frames = random_frames()
    gray = pre.transform(frames)
    assert gray.shape == (5, 64, 64, 1) and gray.dtype == np.uint8
    exact = frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[..., 0] - exact).max() <= 1.0
    assert pre.transform(np.full((1, 64, 64, 3), 255, np.uint8)).min() == 255


def test_identity_preprocessor():
    pre = MyPreprocessor(RGB_SPACE)
    frames = random_frames()
    assert pre.observation_space == RGB_SPACE and pre.transform(frames) is frames


def test_preprocessors_are_registered():
    assert registry.preprocessor_class("grayscale") is GrayscalePreprocessor
    assert registry.preprocessor_class("MyPreprocessor") is MyPreprocessor
    assert set(PREPROCESSORS) >= {"grayscale", "MyPreprocessor"}


@pytest.mark.parametrize("num_envs", [None, 3])
def test_env_applies_preprocessor(num_envs):
    config = {"env_name": "starpilot", "rand_seed": 3}
    if num_envs:
        config["_num_envs"] = num_envs
    gray_env = wrapper.create({**config, "_preprocessor": "grayscale"})
    identity_env = wrapper.create({**config, "_preprocessor": "MyPreprocessor"})
    plain = wrapper.create(config)
    assert gray_env.observation_space == gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)
    assert identity_env.observation_space == RGB_SPACE
    pre = GrayscalePreprocessor(RGB_SPACE)
    for _ in range(3):
        if num_envs:
            actions = list(random_actions(num_envs, 1)[0])
            gray, same, rgb = (batch(e.vector_step(actions)[0]) for e in (gray_env, identity_env, plain))
        else:
            gray, same, rgb = (e.step(3)[0][None] for e in (gray_env, identity_env, plain))
        assert np.array_equal(gray, pre.transform(rgb)) and np.array_equal(same, rgb)


def test_vector_env_calls_preprocessor_once_per_step(monkeypatch):
    calls = []

    class Counting(MyPreprocessor):
        def transform(self, obs_batch):
            calls.append(obs_batch.shape)
            return obs_batch

    monkeypatch.setattr(registry, "preprocessor_class", lambda name, where="": Counting)
    env = wrapper.create({"env_name": "bigfish", "_num_envs": 5, "_preprocessor": "MyPreprocessor"})
    calls.clear()
    for actions in random_actions(5, 4):
        env.vector_step(list(actions))
    assert calls == [(5, 64, 64, 3)] * 4


# --------------------------------------------------------------------------- rendering


def test_render_frames():
    env = wrapper.create({"env_name": "coinrun", "_num_envs": 2, "_render": True})
    env.vector_step([1, 2])
    frames = env.get_frames()
    assert frames.shape == (2, 512, 512, 3) and frames.dtype == np.uint8
    assert env.try_render_at(1).shape == (512, 512, 3)
    single = wrapper.create({"env_name": "coinrun", "_render": True})
    single.reset()
    assert single.render().shape == (512, 512, 3)
    low_res = wrapper.create({"env_name": "coinrun"})
    assert low_res.render().shape == (64, 64, 3)


# --------------------------------------------------------------------------- check_config


def test_check_config_merges_defaults_and_keeps_input():
    user = {"env_name": "maze", "num_levels": np.int64(200), "_num_envs": 8, "_render": False}
    config = wrapper.check_config(user)
    assert config == {
        **wrapper.DEFAULT_OPTIONS,
        "env_name": "maze",
        "num_levels": 200,
        "_num_envs": 8,
        "_render": False,
    }
    assert type(config["num_levels"]) is int and user["num_levels"] == 200 and config is not user
    assert wrapper.check_config(config) == config
    assert wrapper.check_config(None) == wrapper.DEFAULT_OPTIONS
    assert wrapper.check_config(EnvContext({"rand_seed": 3}, worker_index=2))["rand_seed"] == 3
    assert wrapper.check_config({"distribution_mode": "exploration", "env_name": "maze"})["distribution_mode"]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"num_level": 5}, ["num_level", 'Did you mean "num_levels"']),
        ({"env_name": "coinrn"}, ["coinrn", 'Did you mean "coinrun"']),
        ({"env_name": 3}, ["env_name", "3"]),
        ({"distribution_mode": "hrd"}, ["hrd", 'Did you mean "hard"']),
        ({"center_agent": "True,"}, ["center_agent", "'True,'", "not a string"]),
        ({"use_backgrounds": 1}, ["use_backgrounds", "true or false"]),
        ({"paint_vel_info": None}, ["paint_vel_info", "None"]),
        ({"num_levels": -1}, ["num_levels", ">= 0", "-1"]),
        ({"start_level": -3}, ["start_level", "-3"]),
        ({"num_levels": True}, ["num_levels", "True"]),
        ({"start_level": 1.5}, ["start_level", "1.5"]),
        ({"rand_seed": "7"}, ["rand_seed", "'7'"]),
        ({"rand_seed": 2**31}, ["rand_seed", str(2**31)]),
        ({"_num_envs": 0}, ["_num_envs", ">= 1"]),
        ({"_num_env": 4}, ["_num_env", 'Did you mean "_num_envs"']),
        ({"_preprocessor": "grayscal"}, ["grayscal", 'Did you mean "grayscale"']),
        ({"_render": "yes"}, ["_render", "'yes'"]),
        ({"_secret": 1}, ["_secret", "internal option"]),
        ({"env_name": "bigfish", "distribution_mode": "memory"}, ["memory", "bigfish", "maze"]),
        ({"env_name": "coinrun", "distribution_mode": "extreme"}, ["extreme", "coinrun", "starpilot"]),
        ({"env_name": "maze", "distribution_mode": "exploration", "num_levels": 5}, ["exploration", "num_levels"]),
    ],
)
def test_check_config_errors(config, expected):
    with pytest.raises(UserError) as error:
        wrapper.check_config(config, where="exp.env_config")
    message = str(error.value)
    assert "exp.env_config" in message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"frame_stak": 4}, ["frame_stak", 'Did you mean "frame_stack"']),
        ({"frame_stack": 0}, ["frame_stack", ">= 1"]),
        ({"frame_stack": "4"}, ["frame_stack", "'4'"]),
        ({"num_levls": 4}, ["num_levls", 'Did you mean "num_levels"']),
    ],
)
def test_framestack_check_config_errors(config, expected):
    with pytest.raises(UserError) as error:
        framestack.check_config(config, where="stacked.env_config")
    message = str(error.value)
    assert "stacked.env_config" in message and all(part in message for part in expected), message


def test_check_config_refuses_non_mapping():
    with pytest.raises(UserError, match="env_config"):
        wrapper.check_config(["coinrun"])


# --------------------------------------------------------------------------- RLlib


def registered_creator(name):
    from ray.tune.registry import ENV_CREATOR, _global_registry

    registry.register_all(models=[])
    return _global_registry.get(ENV_CREATOR, name)


# maze ends every episode by its 500-step timeout, so each game is reset at least once in this many steps.
MAZE_STEPS = GAMES["maze"].timeout + 5


def drive_base_env(base, num, steps, seed=0):
    """Play `steps` steps the way RLlib's EnvRunnerV2 does: poll, reset the finished games, send actions."""
    ends = 0
    for actions in random_actions(num, steps, seed):
        obs, rewards, terminateds, truncateds, infos, _ = base.poll()
        assert sorted(obs) == list(range(num))
        for env_id in obs:
            if terminateds[env_id]["__all__"]:
                reset_obs, reset_infos = base.try_reset(env_id)
                assert np.array_equal(reset_obs[env_id][_DUMMY_AGENT_ID], obs[env_id][_DUMMY_AGENT_ID])
                ends += 1
        base.send_actions({i: {_DUMMY_AGENT_ID: a} for i, a in enumerate(actions)})
    return obs, ends


def test_rllib_base_env_drives_vector_env():
    env = registered_creator("procgen_env_wrapper")(
        EnvContext({"env_name": "maze", "_num_envs": 4, "rand_seed": 1}, worker_index=1)
    )
    base = convert_to_base_env(env)
    assert isinstance(base, VectorEnvWrapper) and base.observation_space == RGB_SPACE
    obs, ends = drive_base_env(base, 4, MAZE_STEPS)
    assert ends >= 1 and obs[0][_DUMMY_AGENT_ID].shape == (64, 64, 3)
    assert base.get_sub_environments() == [env]
    base.try_render(0)
    base.stop()


def test_rllib_base_env_drives_stacked_env():
    env = registered_creator("stacked_procgen_env")(
        EnvContext({"env_name": "maze", "_num_envs": 2, "frame_stack": 2, "rand_seed": 3}, worker_index=1)
    )
    base = convert_to_base_env(env)
    obs, ends = drive_base_env(base, 2, MAZE_STEPS, seed=1)
    assert ends >= 1 and obs[1][_DUMMY_AGENT_ID].shape == (64, 64, 6)


def test_rllib_vectorizes_single_env():
    creator = registered_creator("procgen_env_wrapper")
    config = {"env_name": "maze", "rand_seed": 2}
    env = creator(EnvContext(config, worker_index=1))
    base = convert_to_base_env(env, make_env=lambda i: creator(EnvContext(config, 1, vector_index=i)), num_envs=2)
    obs, ends = drive_base_env(base, 2, MAZE_STEPS, seed=2)
    assert ends >= 1 and obs[0][_DUMMY_AGENT_ID].shape == (64, 64, 3)
