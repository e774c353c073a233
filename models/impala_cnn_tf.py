"""IMPALA CNN of the Procgen paper (Cobbe et al. 2019) as an RLlib old-stack TFModelV2.

A Keras functional model built once in __init__, so the same code runs in RLlib's static-graph
("tf") and eager ("tf2") modes. models/impala_cnn_torch.py is its layer-for-layer twin.
"""

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)

# isort: split
from ray.rllib.models.tf.tf_modelv2 import TFModelV2
from ray.rllib.utils.framework import try_import_tf

from utils.model_options import impala_options

tf1, tf, tfv = try_import_tf()


def trunk_initializer():
    # Glorot-uniform with zero biases: the Procgen baselines' tf.layers default, kept explicit so
    # the torch twin can use the same.
    return tf.keras.initializers.GlorotUniform()


def conv3x3(x, depth, name, dtype):
    return tf.keras.layers.Conv2D(depth, 3, padding="same", kernel_initializer=trunk_initializer(), name=name, dtype=dtype)(x)


def residual_block(x, name, dtype):
    out = tf.keras.layers.ReLU(dtype=dtype)(x)
    out = conv3x3(out, x.shape[-1], f"{name}_conv0", dtype)
    out = tf.keras.layers.ReLU(dtype=dtype)(out)
    out = conv3x3(out, x.shape[-1], f"{name}_conv1", dtype)
    return tf.keras.layers.Add(dtype=dtype)([out, x])


def conv_sequence(x, depth, name, dtype):
    x = conv3x3(x, depth, f"{name}_conv", dtype)
    x = tf.keras.layers.MaxPool2D(pool_size=3, strides=2, padding="same", dtype=dtype)(x)
    x = residual_block(x, f"{name}_res0", dtype)
    return residual_block(x, f"{name}_res1", dtype)


def dense(units, name, gain=None, dtype="float32"):
    # Orthogonal heads as in the Procgen baselines: a small policy gain makes the first policy
    # near uniform.
    init = trunk_initializer() if gain is None else tf.keras.initializers.Orthogonal(gain=gain)
    return tf.keras.layers.Dense(units, kernel_initializer=init, name=name, dtype=dtype)


class Cast(tf.keras.layers.Layer):
    """Casts its input to `target`: the bf16 trunk's boundaries. Keras's mixed-precision policy casts a
    layer's variables but, in RLlib's static-graph mode (v1 layers), not its inputs."""

    def __init__(self, target, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.target = target

    def call(self, x):
        return tf.cast(x, self.target)


def build_impala_cnn(obs_shape, num_outputs, depths, dense_size, bf16=False):
    """Keras model: float obs in [0, 255], (N, H, W, C) -> [logits (N, num_outputs), value (N, 1)].

    bf16: the trunk (convolutions and the hidden layer) computes in bfloat16 with float32 weights
    (Keras's "mixed_bfloat16" policy); the heads, their outputs and the gradients stay float32.
    """
    dtype = "mixed_bfloat16" if bf16 else "float32"
    obs = tf.keras.layers.Input(shape=obs_shape, dtype=tf.float32, name="observations")
    x = tf.keras.layers.Rescaling(1.0 / 255.0)(obs)
    if bf16:
        x = Cast(tf.bfloat16)(x)
    for i, depth in enumerate(depths):
        x = conv_sequence(x, depth, f"seq{i}", dtype)
    x = tf.keras.layers.Flatten(dtype=dtype)(x)
    x = tf.keras.layers.ReLU(dtype=dtype)(x)
    x = tf.keras.layers.ReLU(dtype=dtype)(dense(dense_size, "hidden", dtype=dtype)(x))
    if bf16:
        x = Cast(tf.float32)(x)
    logits = dense(num_outputs, "pi", gain=0.01)(x)
    value = dense(1, "vf", gain=1.0)(x)
    return tf.keras.Model(obs, [logits, value])


class KerasPolicyValueModel(TFModelV2):
    """A TFModelV2 around `self.base_model`, a Keras model obs -> [logits, value]; subclasses build it."""

    def forward(self, input_dict, state, seq_lens):
        # RLlib feeds obs in the space's dtype (uint8) or as floats; the model wants float32.
        logits, self._value = self.base_model(tf.cast(input_dict["obs"], tf.float32))
        return logits, state

    def value_function(self):
        assert self._value is not None, "must call forward() first"
        return tf.reshape(self._value, [-1])


class ImpalaCNN(KerasPolicyValueModel):
    """obs uint8 (N, H, W, C) -> logits (N, num_outputs); value_function() -> (N,)."""

    # bf16: opt-in mixed precision (it changes numerics); see build_impala_cnn and the README.
    DEFAULT_CONFIG = {"depths": [16, 32, 32], "dense_size": 256, "bf16": False}

    def __init__(self, obs_space, action_space, num_outputs, model_config, name, **kwargs):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        options = impala_options(type(self), model_config, kwargs)
        self.base_model = build_impala_cnn(obs_space.shape, num_outputs, options["depths"], options["dense_size"], options["bf16"])
        self._value = None
