"""The custom models: shapes, parameter counts, options, gradients, TF/torch equivalence, RLlib wiring."""

import utils  # noqa: F401  (TF_USE_LEGACY_KERAS, before TF or Ray load)

# isort: split
import tensorflow as tf  # before Ray: importing RLlib first turns eager mode off

# isort: split
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import registry
from models import MODELS
from models.impala_cnn_tf import ImpalaCNN as ImpalaTF
from models.impala_cnn_torch import ImpalaCNN as ImpalaTorch
from models.my_vision_network import MyVisionNetwork
from models.ppg_impala_cnn_torch import PPGImpalaCNN
from tests.conftest import ROOT
from utils.errors import UserError

# Another test module may have imported RLlib before TF, which turns eager mode off for the whole
# session; switch it back on the way RLlib's own tf2 policies do.
if not tf.executing_eagerly():
    tf.compat.v1.enable_eager_execution()

NUM_ACTIONS = 15
OBS_SPACE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACTION_SPACE = gym.spaces.Discrete(NUM_ACTIONS)
DEFAULT_IMPALA_PARAMS = 626_256  # 97,600 conv + 524,544 dense + 3,855 policy + 257 value
SMALL_IMPALA = {"depths": [8, 16], "dense_size": 64}
MODEL_CLASSES = {"impala_cnn_tf": ImpalaTF, "impala_cnn_torch": ImpalaTorch, "my_vision_network": MyVisionNetwork,
                 "ppg_impala_cnn_torch": PPGImpalaCNN}


def build(cls, options=None, obs_space=OBS_SPACE):
    return cls(obs_space, ACTION_SPACE, NUM_ACTIONS, {"custom_model_config": options or {}}, "model")


def random_obs(n=4, shape=(64, 64, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def is_torch(model):
    return isinstance(model, torch.nn.Module)


def run(model, obs):
    """(logits, value) as numpy for a uint8 numpy batch."""
    obs = torch.from_numpy(obs) if is_torch(model) else tf.constant(obs)
    logits, _ = model({"obs": obs}, [], None)
    value = model.value_function()
    if is_torch(model):
        return logits.detach().numpy(), value.detach().numpy()
    return logits.numpy(), value.numpy()


def param_count(model):
    if is_torch(model):
        return sum(p.numel() for p in model.parameters())
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables())


def test_eager_mode_is_on():
    # Every TF test below runs eagerly; if an import order change turned it off they would fail obscurely.
    assert tf.executing_eagerly()


@pytest.mark.parametrize("setting, enabled", [(None, True), ("0", False)])
def test_tf_runs_onednn_kernels_unless_turned_off(setting, enabled):
    # TF turns oneDNN on by itself only on AVX-512-class CPUs; on AVX2-only ones its Eigen kernels trained the
    # IMPALA CNN 2-2.5x slower (README, Benchmark). utils turns it on everywhere; the user's TF_ENABLE_ONEDNN_OPTS wins.
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = "import utils, tensorflow; from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.split()[-1] == str(enabled)


@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
def test_output_shapes(name):
    logits, value = run(build(MODEL_CLASSES[name]), random_obs(n=5))
    assert logits.shape == (5, NUM_ACTIONS)
    assert value.shape == (5,)
    assert np.isfinite(logits).all() and np.isfinite(value).all()


@pytest.mark.parametrize("cls", [ImpalaTF, ImpalaTorch])
def test_impala_parameter_count_at_defaults(cls):
    assert param_count(build(cls)) == DEFAULT_IMPALA_PARAMS


def test_ppg_model_is_two_impala_cnns():
    # The value network's own policy head has 1 output (257 parameters) where the policy network's has 15 (3,855).
    assert param_count(build(PPGImpalaCNN)) == 2 * DEFAULT_IMPALA_PARAMS - 3_855 + 257


@pytest.mark.parametrize("options", [SMALL_IMPALA, {"depths": [16, 32, 32, 32], "dense_size": 128}, {"depths": [4]}])
def test_impala_parameter_counts_match_across_frameworks(options):
    assert param_count(build(ImpalaTF, options)) == param_count(build(ImpalaTorch, options))


@pytest.mark.parametrize("cls", [ImpalaTF, ImpalaTorch])
def test_impala_handles_other_image_sizes_and_channels(cls):
    # Frame stacking adds channels; odd sides exercise the other max-pool padding case.
    obs_space = gym.spaces.Box(0, 255, (45, 64, 6), np.uint8)
    logits, value = run(build(cls, obs_space=obs_space), random_obs(n=2, shape=(45, 64, 6)))
    assert logits.shape == (2, NUM_ACTIONS) and value.shape == (2,)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (ImpalaTF, {"depths": [8, 16]}),
        (ImpalaTF, {"dense_size": 64}),
        (ImpalaTorch, {"depths": [8, 16]}),
        (ImpalaTorch, {"dense_size": 64}),
        (MyVisionNetwork, {"conv_filters": [[8, 4, 4], [16, 16, 1]]}),
    ],
)
def test_custom_options_change_the_network(cls, options):
    assert param_count(build(cls, options)) != param_count(build(cls))
    logits, value = run(build(cls, options), random_obs())
    assert logits.shape == (4, NUM_ACTIONS) and value.shape == (4,)


def test_my_vision_network_parameter_count_at_defaults():
    # conv 3,088 + 8,224 + 524,544 (8x8 kernel down to 1x1x256), policy 3,855, value 257.
    assert param_count(build(MyVisionNetwork)) == 539_968


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (ImpalaTF, {"dephts": [8]}, 'Did you mean "depths"'),
        (ImpalaTorch, {"dense": 64}, 'Did you mean "dense_size"'),
        (ImpalaTorch, {"depths": [16, 0]}, "positive ints"),
        (ImpalaTF, {"dense_size": 0}, "positive int"),
        (ImpalaTorch, {"bf16": "yes"}, "bf16 in custom_model_config of ImpalaCNN must be true or false"),
        (MyVisionNetwork, {"conv_filters": [[16, 8]]}, "[out_channels, kernel, stride]"),
        (MyVisionNetwork, {"conv_filters": [[16, 8, 4], [32, 32, 1]]}, "larger than the 16x16"),
    ],
)
def test_bad_options_raise_user_error(cls, options, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        build(cls, options)


def test_options_also_arrive_as_keyword_arguments():
    # RLlib's catalog passes custom_model_config again as **kwargs.
    model = ImpalaTorch(OBS_SPACE, ACTION_SPACE, NUM_ACTIONS, {}, "model", **SMALL_IMPALA)
    assert param_count(model) == param_count(build(ImpalaTorch, SMALL_IMPALA))


def random_loss_weights(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, NUM_ACTIONS)).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def test_gradients_reach_every_torch_parameter():
    model = build(ImpalaTorch, SMALL_IMPALA)
    w_logits, w_value = map(torch.from_numpy, random_loss_weights(4))
    logits, _ = model({"obs": torch.from_numpy(random_obs())}, [], None)
    ((logits * w_logits).sum() + (model.value_function() * w_value).sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [ImpalaTF, MyVisionNetwork])
def test_gradients_reach_every_tf_variable(cls):
    model = build(cls, SMALL_IMPALA if cls is ImpalaTF else None)
    w_logits, w_value = random_loss_weights(4)
    with tf.GradientTape() as tape:
        logits, _ = model({"obs": tf.constant(random_obs())}, [], None)
        loss = tf.reduce_sum(logits * w_logits) + tf.reduce_sum(model.value_function() * w_value)
    variables = model.trainable_variables()
    for var, grad in zip(variables, tape.gradient(loss, variables), strict=True):
        assert grad is not None and np.abs(grad.numpy()).sum() > 0, var.name


def copy_tf_weights_to_torch(tf_model, torch_model):
    """Both list their weights in the same layer order; only the layouts differ."""
    with torch.no_grad():
        for var, param in zip(tf_model.trainable_variables(), torch_model.parameters(), strict=True):
            value = var.numpy()
            if value.ndim == 4:  # conv kernel HWIO -> OIHW
                value = value.transpose(3, 2, 0, 1)
            elif value.ndim == 2:  # dense (in, out) -> (out, in)
                value = value.T
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


@pytest.mark.parametrize("options", [SMALL_IMPALA, {"depths": [16, 32, 32], "dense_size": 256}])
@pytest.mark.parametrize("shape", [(64, 64, 3), (45, 64, 6)])
def test_tf_and_torch_compute_the_same_function(options, shape):
    # Same weights must give the same outputs: layer order, flatten order and max-pool padding all agree.
    obs_space = gym.spaces.Box(0, 255, shape, np.uint8)
    tf_model, torch_model = build(ImpalaTF, options, obs_space), build(ImpalaTorch, options, obs_space)
    copy_tf_weights_to_torch(tf_model, torch_model)
    obs = random_obs(shape=shape)
    for got, want in zip(run(torch_model, obs), run(tf_model, obs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_memory_format_does_not_change_outputs(channels_last):
    model = build(ImpalaTorch, SMALL_IMPALA)
    obs = random_obs()
    reference = run(model, obs)
    for got, want in zip(run(model.use_channels_last(channels_last), obs), reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def same_weights_bf16_twin(model, cls, options):
    twin = build(cls, {**options, "bf16": True})
    if is_torch(model):
        twin.load_state_dict(model.state_dict())
    else:
        twin.base_model.set_weights(model.base_model.get_weights())
    return twin


@pytest.mark.parametrize("cls", [ImpalaTF, ImpalaTorch])
def test_bf16_trunk_approximates_float32_and_keeps_float32_outputs_and_weights(cls):
    # bf16 is an opt-in that changes numerics: outputs move by bf16's rounding (8-bit mantissa),
    # never more, while weights, outputs and gradients stay float32 for RLlib's loss and optimizer.
    model = build(cls, SMALL_IMPALA)
    twin = same_weights_bf16_twin(model, cls, SMALL_IMPALA)
    obs = random_obs(n=16)
    for got, want in zip(run(twin, obs), run(model, obs), strict=True):
        assert got.dtype == np.float32
        error = np.abs(got - want).max()
        assert 0 < error < 0.05 * np.abs(want).max(), error  # > 0: the trunk really ran in bf16
    if is_torch(twin):
        logits, _ = twin({"obs": torch.from_numpy(obs)}, [], None)
        (logits.sum() + twin.value_function().sum()).backward()
        assert {p.dtype for p in twin.parameters()} == {p.grad.dtype for p in twin.parameters()} == {torch.float32}
    else:
        with tf.GradientTape() as tape:
            logits, _ = twin({"obs": tf.constant(obs)}, [], None)
            loss = tf.reduce_sum(logits) + tf.reduce_sum(twin.value_function())
        grads = tape.gradient(loss, twin.trainable_variables())
        assert {v.dtype for v in twin.trainable_variables()} == {g.dtype for g in grads} == {tf.float32}


def test_torch_accepts_float_observations():
    # RLlib may hand over observations already cast to float32 in [0, 255].
    model = build(ImpalaTorch, SMALL_IMPALA)
    obs = random_obs()
    for got, want in zip(run(model, obs.astype(np.float32)), run(model, obs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cls", "options"), [(ImpalaTF, None), (ImpalaTF, {"bf16": True}), (MyVisionNetwork, None)])
def test_tf_models_work_in_static_graph_mode(cls, options):
    # RLlib's framework="tf" builds models inside a graph with a uint8 placeholder; Keras's v1
    # layers there handle mixed precision differently from eager mode (inputs are not cast).
    with tf.Graph().as_default() as graph:
        model = build(cls, options)
        assert model.graph is graph
        obs = tf.compat.v1.placeholder(tf.uint8, (None, 64, 64, 3))
        logits, _ = model({"obs": obs}, [], None)
        value = model.value_function()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            logits_out, value_out = session.run([logits, value], {obs: random_obs(n=3)})
    assert logits_out.shape == (3, NUM_ACTIONS) and value_out.shape == (3,)


def catalog_cases():
    """(name, framework) for every registered model; TF models in both RLlib TF modes."""
    for name, (_, framework) in sorted(MODELS.items()):
        for fw in ("tf", "tf2") if framework == "tf" else (framework,):
            yield name, fw


CATALOG_OPTIONS = {
    "impala_cnn_tf": SMALL_IMPALA,
    "impala_cnn_torch": SMALL_IMPALA,
    "my_vision_network": {"conv_filters": [[8, 4, 4], [16, 16, 1]]},
    "ppg_impala_cnn_torch": SMALL_IMPALA,
}


@pytest.fixture(scope="module")
def registered():
    registry.register_all()


@pytest.mark.parametrize(("name", "framework"), list(catalog_cases()))
def test_model_catalog_builds_each_model(registered, name, framework):
    from ray.rllib.models import ModelCatalog

    options = CATALOG_OPTIONS[name]
    model_config = {"custom_model": name, "custom_model_config": options}
    model = ModelCatalog.get_model_v2(OBS_SPACE, ACTION_SPACE, NUM_ACTIONS, model_config, framework=framework)
    assert type(model) is MODEL_CLASSES[name]
    assert param_count(model) == param_count(build(MODEL_CLASSES[name], options))
    logits, value = run(model, random_obs(n=2))
    assert logits.shape == (2, NUM_ACTIONS) and value.shape == (2,)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize(("name", "framework"), [("impala_cnn_torch", "torch"), ("impala_cnn_tf", "tf2")])
def test_old_stack_ppo_policy_builds_and_acts(registered, name, framework, bf16):
    # Policy construction runs the PPO loss on a dummy batch, so this covers forward, value_function
    # and the loss wiring; end-to-end training is tested elsewhere.
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.ppo.ppo_tf_policy import PPOTF2Policy
    from ray.rllib.algorithms.ppo.ppo_torch_policy import PPOTorchPolicy

    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework(framework)
        .training(model={"custom_model": name, "custom_model_config": {**SMALL_IMPALA, "bf16": bf16}}, train_batch_size=64)
    )
    policy_cls = PPOTorchPolicy if framework == "torch" else PPOTF2Policy
    policy = policy_cls(OBS_SPACE, ACTION_SPACE, config.to_dict())
    assert type(policy.model) is MODEL_CLASSES[name]
    actions, _, extra = policy.compute_actions(random_obs(n=3))
    assert actions.shape == (3,) and all(0 <= a < NUM_ACTIONS for a in actions)
    assert extra["vf_preds"].shape == (3,) and extra["vf_preds"].dtype == np.float32


def test_torch_model_imports_without_tensorflow():
    """A PyTorch image has no TensorFlow: the torch IMPALA CNN and its option checks (utils/model_options.py)
    must not need it."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; sys.modules['tensorflow'] = None; import utils; import models.impala_cnn_torch as m; "
            "print(m.ImpalaCNN.DEFAULT_CONFIG['depths'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[16, 32, 32]", proc.stderr[-2000:]
