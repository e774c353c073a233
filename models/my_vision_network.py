"""The starter kit's example custom model: a plain conv net as an RLlib old-stack TFModelV2.

Layers come from custom_model_config["conv_filters"], a list of [out_channels, kernel, stride]
(kernel and stride: an int or [height, width]). Every conv but the last keeps "same" padding; the
last is "valid", so the defaults reduce a 64x64 frame to 1x1x256 like a dense layer. Whatever is
left is flattened and feeds the policy and value heads.
"""

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)

# isort: split
from ray.rllib.utils.framework import try_import_tf

from models.impala_cnn_tf import KerasPolicyValueModel, dense
from utils.errors import UserError
from utils.model_options import is_count, model_options

tf1, tf, tfv = try_import_tf()


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def is_size(value):
    return is_count(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_count, value)))


def is_filter(entry):
    return isinstance(entry, (list, tuple)) and len(entry) == 3 and is_count(entry[0]) and all(map(is_size, entry[1:]))


def check_filters(filters, image_size):
    """UserError unless `filters` is a non-empty list of [out_channels, kernel, stride] whose last,
    unpadded conv still fits the image the earlier ones leave."""
    where = "custom_model_config.conv_filters of MyVisionNetwork"
    if not filters or not all(map(is_filter, filters)):
        raise UserError(f"{where} must be a non-empty list of [out_channels, kernel, stride] of positive ints, got {filters!r}.")
    size = list(image_size)
    for _, _, stride in filters[:-1]:
        size = [-(-s // st) for s, st in zip(size, pair(stride), strict=True)]  # "same": ceil(size / stride)
    kernel = pair(filters[-1][1])
    if any(k > s for k, s in zip(kernel, size, strict=True)):
        raise UserError(
            f"{where}: the last conv's kernel {list(kernel)} is larger than the {size[0]}x{size[1]} "
            "image the earlier convs leave; use a smaller kernel or smaller strides."
        )


class MyVisionNetwork(KerasPolicyValueModel):
    """obs uint8 (N, H, W, C) -> logits (N, num_outputs); value_function() -> (N,)."""

    DEFAULT_CONFIG = {"conv_filters": [[16, 8, 4], [32, 4, 2], [256, 8, 1]]}

    def __init__(self, obs_space, action_space, num_outputs, model_config, name, **kwargs):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        filters = model_options(type(self), model_config, kwargs)["conv_filters"]
        check_filters(filters, obs_space.shape[:2])
        obs = tf.keras.layers.Input(shape=obs_space.shape, dtype=tf.float32, name="observations")
        x = tf.keras.layers.Rescaling(1.0 / 255.0)(obs)
        for i, (out_channels, kernel, stride) in enumerate(filters):
            padding = "valid" if i == len(filters) - 1 else "same"
            x = tf.keras.layers.Conv2D(
                out_channels,
                pair(kernel),
                pair(stride),
                padding=padding,
                activation="relu",
                kernel_initializer="glorot_uniform",
                name=f"conv{i}",
            )(x)
        x = tf.keras.layers.Flatten()(x)
        logits = dense(num_outputs, "pi", gain=0.01)(x)
        value = dense(1, "vf", gain=1.0)(x)
        self.base_model = tf.keras.Model(obs, [logits, value])
        self._value = None
