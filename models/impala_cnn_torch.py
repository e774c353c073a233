"""IMPALA CNN of the Procgen paper (Cobbe et al. 2019) as an RLlib old-stack TorchModelV2.

Layer for layer the same network as models/impala_cnn_tf.py: same parameter count, same flatten
order (height, width, channel) and the same "same"-padding max-pool windows, so weights copied
across frameworks give the same outputs.
"""

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before Ray's model package loads TF)

# isort: split
import torch
from ray.rllib.models.torch.torch_modelv2 import TorchModelV2
from torch import nn
from torch.nn import functional as F

from utils.model_options import impala_options


def conv3x3(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv0 = conv3x3(channels, channels)
        self.conv1 = conv3x3(channels, channels)

    def forward(self, x):
        # Not in place on x: the skip connection still needs it. No backward pass reads a conv's
        # output, so relu and the skip add overwrite those in place and save a tensor each.
        out = F.relu_(self.conv0(F.relu(x)))
        return self.conv1(out).add_(x)


class ConvSequence(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.res0 = ResidualBlock(out_channels)
        self.res1 = ResidualBlock(out_channels)

    def forward(self, x):
        x = max_pool_same(self.conv(x))
        return self.res1(self.res0(x))


def max_pool_same(x):
    """3x3 stride-2 max pool with exactly TensorFlow's "same" padding windows.

    On an even side TF pads one cell only at the end; torch's padding=1 pads both ends and would
    shift every window by one pixel. ceil_mode without padding gives TF's windows there at no
    cost (slicing or F.pad to get them copies the tensor, ~35% slower); on an odd side TF pads
    one cell at each end, which padding=1 reproduces.
    """
    h, w = x.shape[-2:]
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=(h % 2, w % 2), ceil_mode=True)


def pooled_size(size):
    return (size + 1) // 2


class ImpalaCNN(TorchModelV2, nn.Module):
    """obs uint8 (N, H, W, C) -> logits (N, num_outputs); value_function() -> (N,)."""

    # bf16: opt-in mixed precision (it changes numerics); see forward() and the README.
    DEFAULT_CONFIG = {"depths": [16, 32, 32], "dense_size": 256, "bf16": False}

    def __init__(self, obs_space, action_space, num_outputs, model_config, name, **kwargs):
        TorchModelV2.__init__(self, obs_space, action_space, num_outputs, model_config, name)
        nn.Module.__init__(self)
        options = impala_options(type(self), model_config, kwargs)
        height, width, channels = obs_space.shape
        sequences = []
        for depth in options["depths"]:
            sequences.append(ConvSequence(channels, depth))
            channels, height, width = depth, pooled_size(height), pooled_size(width)
        self.conv_sequences = nn.Sequential(*sequences)
        self.hidden = nn.Linear(height * width * channels, options["dense_size"])
        self.policy_head = nn.Linear(options["dense_size"], num_outputs)
        self.value_head = nn.Linear(options["dense_size"], 1)
        self._init_weights()
        self._bf16 = options["bf16"]
        self._features = None
        self.use_channels_last(True)

    def _init_weights(self):
        # The Procgen baselines' initialisation, and the TF twin's: Glorot-uniform trunk, orthogonal
        # heads with a small policy gain so the first policy is near uniform, zero biases.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.policy_head.weight, gain=0.01)
        nn.init.orthogonal_(self.value_head.weight, gain=1.0)

    def use_channels_last(self, enabled=True):
        """Run the convolutions in channels_last (NHWC) memory: about 2x faster on CPU.

        Outputs mean the same either way; only the memory layout differs.
        """
        self._memory_format = torch.channels_last if enabled else torch.contiguous_format
        self.conv_sequences.to(memory_format=self._memory_format)
        return self

    def forward(self, input_dict, state, seq_lens):
        # NHWC obs permuted to NCHW is already channels_last in memory, so the format conversion
        # is free; dividing a uint8 tensor yields float32 in the same pass.
        x = (input_dict["obs"].permute(0, 3, 1, 2) / 255.0).contiguous(memory_format=self._memory_format)
        # bf16: the trunk (convolutions and the hidden layer) computes in bfloat16 with float32
        # weights; the heads, their outputs and the gradients stay float32.
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16):
            x = self.conv_sequences(x)
            # Flatten in (H, W, C) order like TF's Flatten: a free view in channels_last memory.
            x = F.relu(x.permute(0, 2, 3, 1).flatten(1))
            features = F.relu_(self.hidden(x))
        self._features = features.float()
        return self.policy_head(self._features), state

    def value_function(self):
        assert self._features is not None, "must call forward() first"
        return self.value_head(self._features).squeeze(1)
