"""ProcgenPPO's policies: RLlib's old-stack PPO policies with the Procgen paper's loss, reward
scaling and Adam epsilon (see `losses.py`, `reward_scaling.py`). Torch and static-graph TF."""

import numpy as np
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.policy.sample_batch import SampleBatch

from algorithms.procgen_ppo import augmentation, losses
from algorithms.procgen_ppo.reward_scaling import ReturnScaler

SCALER_STATE = "procgen_ppo_return_scaler"
AUGMENTATION_RNG_STATE = "augmentation_rng"


class ReturnScalingMixin:
    """Scales each episode fragment's rewards before GAE; keeps the scaler in the policy state.

    Put it before RLlib's policy class in the bases: its methods wrap that class's ones."""

    def _init_return_scaler(self, config):
        self.return_scaler = None
        if config["reward_scaling"]:
            self.return_scaler = ReturnScaler(gamma=config["reward_scaling_gamma"], clip=config["reward_clip"])

    def postprocess_trajectory(self, sample_batch, other_agent_batches=None, episode=None):
        sample_batch = self._scale_rewards(sample_batch)
        return super().postprocess_trajectory(sample_batch, other_agent_batches, episode)

    def get_state(self):
        return self._with_scaler_state(super().get_state())

    def set_state(self, state):
        super().set_state(self._restore_scaler_state(dict(state)))

    def _scale_rewards(self, sample_batch):
        # The dummy batch RLlib postprocesses while building the loss arrives before the scaler exists.
        scaler = getattr(self, "return_scaler", None)
        if scaler is None or sample_batch.count == 0:
            return sample_batch
        ends = bool(sample_batch[SampleBatch.TERMINATEDS][-1] or sample_batch[SampleBatch.TRUNCATEDS][-1])
        key = (sample_batch[SampleBatch.EPS_ID][0], sample_batch[SampleBatch.AGENT_INDEX][0])
        sample_batch[SampleBatch.REWARDS] = scaler.scale(key, sample_batch[SampleBatch.REWARDS], ends)
        return sample_batch

    def _with_scaler_state(self, state):
        if getattr(self, "return_scaler", None) is not None:
            state[SCALER_STATE] = self.return_scaler.get_state()
        return state

    def _restore_scaler_state(self, state):
        scaler_state = state.pop(SCALER_STATE, None)
        if scaler_state is not None and getattr(self, "return_scaler", None) is not None:
            self.return_scaler.set_state(scaler_state)
        return state


class AugmentationStateMixin:
    """Keeps DrAC's torch.Generator (`augmentation_generator`) in the policy state, so that after a resume the
    augmentation draws go on where they were. Put it before RLlib's policy class in the bases."""

    def get_state(self):
        state = super().get_state()
        state[AUGMENTATION_RNG_STATE] = self.augmentation_generator.get_state().numpy()
        return state

    def set_state(self, state):
        import torch

        state = dict(state)
        rng = state.pop(AUGMENTATION_RNG_STATE, None)
        super().set_state(state)
        if rng is not None:
            self.augmentation_generator.set_state(torch.from_numpy(np.array(rng, dtype=np.uint8)))


def torch_policy_class():
    import torch
    from ray.rllib.algorithms.ppo.ppo_torch_policy import PPOTorchPolicy
    from ray.rllib.utils.torch_utils import explained_variance

    class ProcgenPPOTorchPolicy(AugmentationStateMixin, ReturnScalingMixin, PPOTorchPolicy):
        def __init__(self, observation_space, action_space, config):
            # Before RLlib's init, which runs the loss once on a dummy batch.
            self.augmentation_generator = torch.Generator().manual_seed(config.get("seed") or 0)
            super().__init__(observation_space, action_space, config)
            self._init_return_scaler(self.config)

        def optimizer(self):
            return torch.optim.Adam(self.model.parameters(), lr=self.config["lr"], eps=self.config["adam_epsilon"])

        def loss(self, model, dist_class, train_batch):
            logits, _ = model(train_batch)
            dist = dist_class(logits, model)
            advantages = losses.normalize_advantages_torch(train_batch[Postprocessing.ADVANTAGES])
            ratio = torch.exp(dist.logp(train_batch[SampleBatch.ACTIONS]) - train_batch[SampleBatch.ACTION_LOGP])
            clip = self.config["clip_param"]
            surrogate = torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
            policy_loss = -torch.mean(surrogate)
            entropy = torch.mean(dist.entropy())
            values = model.value_function()
            targets = train_batch[Postprocessing.VALUE_TARGETS]
            vf_loss = losses.value_loss_torch(values, train_batch[SampleBatch.VF_PREDS], targets, self.config["vf_clip_param"])
            total = policy_loss + self.config["vf_loss_coeff"] * vf_loss - self.entropy_coeff * entropy
            # KL(sampling policy || current one), reported even without the KL penalty (ppo2 logs its approxkl).
            kl = torch.mean(dist_class(train_batch[SampleBatch.ACTION_DIST_INPUTS], model).kl(dist))
            if self.config["use_kl_loss"]:
                total = total + self.kl_coeff * kl
            drac = torch.tensor(0.0, device=total.device)
            if self.config.get("augmentation"):
                drac = self._drac_regularizer(model, dist_class, train_batch, dist, values)
                total = total + self.config["drac_coeff"] * drac
            stats = model.tower_stats
            stats["drac_regularizer"] = drac
            stats["total_loss"], stats["mean_policy_loss"], stats["mean_vf_loss"] = total, policy_loss, vf_loss
            stats["vf_explained_var"] = explained_variance(targets, values)
            stats["mean_entropy"], stats["mean_kl_loss"] = entropy, kl
            stats["clip_fraction"] = losses.clip_fraction_torch(ratio.detach(), clip)
            return total

        def _drac_regularizer(self, model, dist_class, train_batch, dist, values):
            # A second forward pass: call it after reading value_function() of the first, which it replaces.
            obs = augmentation.augment(self.config["augmentation"], train_batch[SampleBatch.OBS],
                                       self.augmentation_generator)
            aug_logits, _ = model({SampleBatch.OBS: obs, "is_training": True})
            return augmentation.drac_regularizer(dist, dist_class(aug_logits, model), values, model.value_function())

        def stats_fn(self, train_batch):
            stats = super().stats_fn(train_batch)
            stats["clip_fraction"] = float(torch.mean(torch.stack(self.get_tower_stats("clip_fraction"))))
            if self.config.get("augmentation"):
                stats["drac_regularizer"] = float(torch.mean(torch.stack(self.get_tower_stats("drac_regularizer"))).detach())
            return stats

    return ProcgenPPOTorchPolicy


def tf_policy_class():
    from ray.rllib.algorithms.ppo.ppo_tf_policy import PPOTF1Policy
    from ray.rllib.utils.framework import try_import_tf

    tf1, tf, _ = try_import_tf()

    class ProcgenPPOTFPolicy(ReturnScalingMixin, PPOTF1Policy):
        def __init__(self, observation_space, action_space, config, existing_model=None, existing_inputs=None):
            super().__init__(observation_space, action_space, config, existing_model, existing_inputs)
            self._init_return_scaler(self.config)

        def optimizer(self):
            return tf1.train.AdamOptimizer(learning_rate=self.cur_lr, epsilon=self.config["adam_epsilon"])

        def compute_gradients_fn(self, optimizer, loss):
            # RLlib 2.60's TF PPO policy applies no grad_clip at all (it defines no compute_gradients_fn;
            # its torch policy clips by the global norm). ppo2 clips by the global norm (max_grad_norm 0.5).
            grads_and_vars = [(g, v) for g, v in optimizer.compute_gradients(loss) if g is not None]
            if self.config["grad_clip"] is None:
                return grads_and_vars
            clipped, _ = tf.clip_by_global_norm([g for g, _ in grads_and_vars], self.config["grad_clip"])
            return list(zip(clipped, [v for _, v in grads_and_vars]))

        def grad_stats_fn(self, train_batch, grads):
            # `grads` are the ones applied: their global norm is at most grad_clip, as RLlib's torch policies report it.
            return {"grad_gnorm": tf.linalg.global_norm(grads)}

        def loss(self, model, dist_class, train_batch):
            logits, _ = model(train_batch)
            values = model.value_function()
            dist = dist_class(logits, model)
            advantages = losses.normalize_advantages_tf(train_batch[Postprocessing.ADVANTAGES])
            ratio = tf.exp(dist.logp(train_batch[SampleBatch.ACTIONS]) - train_batch[SampleBatch.ACTION_LOGP])
            clip = self.config["clip_param"]
            surrogate = tf.minimum(advantages * ratio, advantages * tf.clip_by_value(ratio, 1 - clip, 1 + clip))
            policy_loss = -tf.reduce_mean(surrogate)
            entropy = tf.reduce_mean(dist.entropy())
            targets = train_batch[Postprocessing.VALUE_TARGETS]
            vf_loss = losses.value_loss_tf(values, train_batch[SampleBatch.VF_PREDS], targets, self.config["vf_clip_param"])
            total = policy_loss + self.config["vf_loss_coeff"] * vf_loss - self.entropy_coeff * entropy
            # KL(sampling policy || current one), reported even without the KL penalty (ppo2 logs its approxkl).
            kl = tf.reduce_mean(dist_class(train_batch[SampleBatch.ACTION_DIST_INPUTS], model).kl(dist))
            if self.config["use_kl_loss"]:
                total = total + self.kl_coeff * kl
            self._total_loss, self._mean_policy_loss, self._mean_vf_loss = total, policy_loss, vf_loss
            self._mean_entropy, self._value_fn_out = entropy, values
            self._mean_kl_loss = self._mean_kl = kl
            self._clip_fraction = losses.clip_fraction_tf(ratio, clip)
            return total

        def stats_fn(self, train_batch):
            # ppo2 logs its clipfrac beside approxkl (train-procgen's progress CSVs, loss/clipfrac).
            return {**super().stats_fn(train_batch), "clip_fraction": self._clip_fraction}

    return ProcgenPPOTFPolicy
