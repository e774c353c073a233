"""Phasic Policy Gradient's loss terms (Cobbe et al. 2020, arXiv:2009.04416; openai/phasic-policy-gradient,
`ppo.py: compute_losses` and `ppg.py: aux_train`), in torch.

Shapes: every tensor argument is 1-D over the minibatch, shape (B,); each function returns 0-d tensors.

Policy phase (one pass of PPO over each new train batch, E_pi = E_V = 1):
  policy:  -mean(min(r A, clip(r, 1 - c, 1 + c) A)),  r = pi(a|s) / pi_old(a|s), A standardized over the batch
  value:   mean((V(s) - R)^2) on the value network, weighted by vf_loss_coeff (the paper's 0.5); no 0.5 inside
           and, by default, no clipping (with vf_clip_param set: ppo2's clip of the prediction around V_old)
Auxiliary phase (E_aux epochs over the last N_pi train batches, every N_pi iterations):
  joint:   0.5 mean((V_aux(s) - R)^2) + beta_clone KL(pi_old(.|s) || pi(.|s)),  V_aux the policy network's head
  value:   0.5 mean((V(s) - R)^2) on the value network, weighted by vf_true_weight (1 in the paper)
  pi_old is the policy at the start of the auxiliary phase; R the value targets stored with each batch.
"""


def policy_loss(ratio, advantages, clip):
    """PPO's clipped surrogate, negated for minimisation."""
    import torch

    return -torch.mean(torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip, 1 + clip)))


def value_loss(values, targets, old_values=None, clip=None):
    """Mean squared error of the value network; with `clip`, ppo2's clip of the prediction around `old_values`."""
    import torch

    error = (values - targets) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        error = torch.maximum(error, (clipped - targets) ** 2)
    return torch.mean(error)


def policy_distance(old_dist, new_dist):
    """KL(pi_old || pi) per sample, shape (B,), for RLlib action distributions: ppg.py's
    `td.kl_divergence(mb["oldpd"], pd)` (old first: RLlib's `a.kl(b)` is KL(a || b))."""
    return old_dist.kl(new_dist)


def approx_kl(logp, old_logp):
    """0.5 mean((log pi - log pi_old)^2): ppo.py's `approxkl`, the policy phase's reported `kl`."""
    import torch

    return 0.5 * torch.mean((logp - old_logp) ** 2)


def aux_loss(kl, aux_values, values, targets, beta_clone, vf_true_weight):
    """(total, parts) of one auxiliary-phase minibatch; `kl` is KL(pi_old || pi) per sample.

    parts: pol_distance (mean KL), vf_aux and vf_true (each 0.5 mean squared error), as in ppg.py's log keys.
    """
    import torch

    parts = {
        "pol_distance": torch.mean(kl),
        "vf_aux": 0.5 * torch.mean((aux_values - targets) ** 2),
        "vf_true": 0.5 * torch.mean((values - targets) ** 2),
    }
    total = parts["vf_aux"] + beta_clone * parts["pol_distance"] + vf_true_weight * parts["vf_true"]
    return total, parts
