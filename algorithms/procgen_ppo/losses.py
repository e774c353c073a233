"""The Procgen paper's PPO loss terms (OpenAI baselines ppo2, `ppo2/model.py`), in torch and TF.

Shapes: every argument is a 1-D tensor over the minibatch, shape (B,).

- Advantages are normalized per minibatch: `(adv - mean) / (std + 1e-8)`, std over the minibatch
  with ddof 0 (numpy's), as ppo2's `train()` does.
- Value loss, ppo2-style clipping of the *prediction* around the one made when sampling:
  `v_clipped = v_old + clip(v - v_old, -c, c)`,
  `loss = 0.5 * mean(max((v - R)^2, (v_clipped - R)^2))`.
  RLlib 2.60's PPO instead clamps the squared error itself at `vf_clip_param` and has no 0.5.
- Clip fraction, ppo2's `clipfrac` (reported, not trained on): the share of the minibatch whose probability
  ratio lies outside `[1 - clip, 1 + clip]`, `mean(|ratio - 1| > clip)`, in [0, 1].
"""

ADVANTAGE_EPSILON = 1e-8


def normalize_advantages_torch(adv):
    import torch

    return (adv - adv.mean()) / (torch.sqrt(torch.mean((adv - adv.mean()) ** 2)) + ADVANTAGE_EPSILON)


def value_loss_torch(values, old_values, targets, clip):
    import torch

    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.mean(torch.maximum((values - targets) ** 2, (clipped - targets) ** 2))


def clip_fraction_torch(ratio, clip):
    import torch

    return torch.mean((torch.abs(ratio - 1.0) > clip).float())


def normalize_advantages_tf(adv):
    import tensorflow as tf

    mean, var = tf.nn.moments(adv, axes=[0])
    return (adv - mean) / (tf.sqrt(var) + ADVANTAGE_EPSILON)


def value_loss_tf(values, old_values, targets, clip):
    import tensorflow as tf

    clipped = old_values + tf.clip_by_value(values - old_values, -clip, clip)
    return 0.5 * tf.reduce_mean(tf.maximum(tf.square(values - targets), tf.square(clipped - targets)))


def clip_fraction_tf(ratio, clip):
    import tensorflow as tf

    return tf.reduce_mean(tf.cast(tf.greater(tf.abs(ratio - 1.0), clip), tf.float32))
