"""The Phasic Policy Gradient network for Procgen (Cobbe et al. 2020, arXiv:2009.04416; openai/phasic-policy-gradient,
`arch="dual"`): two IMPALA CNNs with separate weights, as an RLlib old-stack TorchModelV2.

- the policy network: an IMPALA CNN trunk, the policy head (logits) and an auxiliary value head, trained
  on the value targets only in the auxiliary phase (`aux_value_function()`);
- the value network: its own IMPALA CNN trunk and the value head (`value_function()`), the one GAE and
  the policy phase's value loss use.

Each trunk is `models/impala_cnn_torch.py`'s network at the paper's widths (depths 16, 32, 32, a 256-unit
hidden layer), with its initialisation; the value network's own policy head has 1 output and is never
read. `run: PPG` (algorithms/ppg) needs this model or one with the same three outputs.
"""

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before Ray's model package loads TF)

# isort: split
from ray.rllib.models.torch.torch_modelv2 import TorchModelV2
from torch import nn

from models.impala_cnn_torch import ImpalaCNN


class PPGImpalaCNN(TorchModelV2, nn.Module):
    """obs uint8 (N, H, W, C) -> logits (N, num_outputs); value_function() and aux_value_function() -> (N,).

    custom_model_config: the IMPALA CNN's options (depths, dense_size, bf16), used for both networks.
    """

    DEFAULT_CONFIG = ImpalaCNN.DEFAULT_CONFIG

    def __init__(self, obs_space, action_space, num_outputs, model_config, name, **kwargs):
        TorchModelV2.__init__(self, obs_space, action_space, num_outputs, model_config, name)
        nn.Module.__init__(self)
        self.policy_network = ImpalaCNN(obs_space, action_space, num_outputs, model_config, f"{name}_pi", **kwargs)
        self.value_network = ImpalaCNN(obs_space, action_space, 1, model_config, f"{name}_vf", **kwargs)

    def forward(self, input_dict, state, seq_lens):
        logits, _ = self.policy_network(input_dict, state, seq_lens)
        self.value_network(input_dict, state, seq_lens)
        return logits, state

    def value_function(self):
        """The value network's prediction for the last forward(), shape (N,)."""
        return self.value_network.value_function()

    def aux_value_function(self):
        """The policy network's auxiliary value head for the last forward(), shape (N,)."""
        return self.policy_network.value_function()
