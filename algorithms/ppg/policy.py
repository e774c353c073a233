"""PPG's torch policy: RLlib's old-stack PPO torch policy with PPG's policy-phase loss, the auxiliary phase
and ProcgenPPO's reward scaling (see `losses.py`, `aux_buffer.py`, algorithms/procgen_ppo/reward_scaling.py)."""

import json
import time

import numpy as np
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.policy.sample_batch import SampleBatch

from algorithms.ppg import losses
from algorithms.ppg.aux_buffer import AuxBuffer
from algorithms.procgen_ppo import augmentation
from algorithms.procgen_ppo.policies import AugmentationStateMixin, ReturnScalingMixin

AUX_OPTIMIZER_STATE = "ppg_aux_optimizer"
AUX_RNG_STATE = "ppg_aux_rng"


def torch_policy_class():
    import torch
    from ray.rllib.algorithms.ppo.ppo_torch_policy import PPOTorchPolicy
    from ray.rllib.utils.numpy import convert_to_numpy
    from ray.rllib.utils.torch_utils import convert_to_torch_tensor, explained_variance

    class PPGTorchPolicy(AugmentationStateMixin, ReturnScalingMixin, PPOTorchPolicy):
        def __init__(self, observation_space, action_space, config):
            # Before RLlib's init, which runs the loss once on a dummy batch.
            seed = config.get("seed") or 0
            self.augmentation_generator = torch.Generator().manual_seed(seed)
            super().__init__(observation_space, action_space, config)
            self._init_return_scaler(self.config)
            self.aux_buffer = AuxBuffer(self.config["n_pi"])
            self.aux_rng = np.random.default_rng(seed)
            # The paper's auxiliary phase has its own Adam, kept from one auxiliary phase to the next.
            self.aux_optimizer = torch.optim.Adam(
                self.model.parameters(), lr=self.config["aux_lr"], eps=self.config["adam_epsilon"])

        def optimizer(self):
            return torch.optim.Adam(self.model.parameters(), lr=self.config["lr"], eps=self.config["adam_epsilon"])

        def loss(self, model, dist_class, train_batch):
            logits, _ = model(train_batch)
            dist = dist_class(logits, model)
            values = model.value_function()
            logp = dist.logp(train_batch[SampleBatch.ACTIONS])
            ratio = torch.exp(logp - train_batch[SampleBatch.ACTION_LOGP])
            # Advantages arrive standardized over the whole train batch (PPG.training_step), as in ppg's ppo.py.
            policy_loss = losses.policy_loss(ratio, train_batch[Postprocessing.ADVANTAGES], self.config["clip_param"])
            entropy = torch.mean(dist.entropy())
            targets = train_batch[Postprocessing.VALUE_TARGETS]
            vf_loss = losses.value_loss(values, targets, train_batch[SampleBatch.VF_PREDS], self.config["vf_clip_param"])
            total = policy_loss + self.config["vf_loss_coeff"] * vf_loss - self.entropy_coeff * entropy
            drac = torch.tensor(0.0, device=total.device)
            if self.config.get("augmentation"):
                obs = augmentation.augment(self.config["augmentation"], train_batch[SampleBatch.OBS],
                                           self.augmentation_generator)
                aug_logits, _ = model({SampleBatch.OBS: obs, "is_training": True})
                drac = augmentation.drac_regularizer(dist, dist_class(aug_logits, model), values, model.value_function())
                total = total + self.config["drac_coeff"] * drac
            stats = model.tower_stats
            stats["total_loss"], stats["mean_policy_loss"], stats["mean_vf_loss"] = total, policy_loss, vf_loss
            stats["vf_explained_var"] = explained_variance(targets, values)
            # No KL penalty (PPGConfig refuses one); `kl` reports ppg's approxkl.
            stats["mean_entropy"] = entropy
            stats["mean_kl_loss"] = losses.approx_kl(logp, train_batch[SampleBatch.ACTION_LOGP]).detach()
            stats["drac_regularizer"] = drac
            return total

        def stats_fn(self, train_batch):
            stats = super().stats_fn(train_batch)
            if self.config.get("augmentation"):
                stats["drac_regularizer"] = float(torch.mean(torch.stack(self.get_tower_stats("drac_regularizer"))).detach())
            return stats

        def store_for_aux_phase(self, batch):
            """Keep a train batch's observations and value targets for the next auxiliary phase."""
            self.aux_buffer.add(batch[SampleBatch.OBS], batch[Postprocessing.VALUE_TARGETS])

        def aux_phase(self):
            """E_aux epochs of the auxiliary loss over the buffer, then empty it; returns the phase's stats.

            Stats (floats): aux_pol_distance, aux_vf_aux, aux_vf_true (means over the phase's minibatches),
            aux_samples (rows replayed), aux_batches (train batches in the buffer), aux_time_s (wall seconds).
            """
            start = time.perf_counter()
            buffer, size = self.aux_buffer, self.config["aux_minibatch_size"]
            old_logits = self._logits_of_buffer(size)
            sums, count = {}, 0
            for _ in range(self.config["n_aux_epochs"]):
                for index in buffer.minibatches(size, self.aux_rng):
                    parts = self._aux_step(index, old_logits[index])
                    for key, value in parts.items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
            stats = {f"aux_{key}": value / max(count, 1) for key, value in sums.items()}
            stats.update(aux_samples=float(buffer.size), aux_batches=float(buffer.batches),
                         aux_time_s=time.perf_counter() - start)
            buffer.clear()
            return stats

        def _obs_tensor(self, index):
            return torch.from_numpy(self.aux_buffer.obs[index]).to(self.device)

        def _logits_of_buffer(self, chunk):
            # pi_old: the policy network's logits at the start of the phase, computed once (ppg.py's presleep pass);
            # only the policy network runs when the model has one (models/ppg_impala_cnn_torch.py).
            forward = getattr(self.model, "policy_network", self.model)
            with torch.no_grad():
                return torch.cat([
                    forward({SampleBatch.OBS: self._obs_tensor(slice(i, min(i + chunk, self.aux_buffer.size)))}, [], None)[0]
                    for i in range(0, self.aux_buffer.size, chunk)
                ])

        def _aux_step(self, index, old_logits):
            targets = torch.from_numpy(self.aux_buffer.targets[index]).to(self.device)
            logits, _ = self.model({SampleBatch.OBS: self._obs_tensor(index), "is_training": True})
            kl = losses.policy_distance(self.dist_class(old_logits, self.model), self.dist_class(logits, self.model))
            total, parts = losses.aux_loss(kl, self.model.aux_value_function(), self.model.value_function(), targets,
                                           self.config["beta_clone"], self.config["vf_true_weight"])
            self.aux_optimizer.zero_grad()
            total.backward()
            self.aux_optimizer.step()
            return {key: float(value.detach()) for key, value in parts.items()}

        def get_state(self):
            state = super().get_state()
            state[AUX_OPTIMIZER_STATE] = convert_to_numpy(self.aux_optimizer.state_dict())
            # The auxiliary minibatch order goes on where it was after a resume (AugmentationStateMixin keeps DrAC's
            # draws). As JSON text: PCG64's state holds 128-bit integers, which msgpack checkpoints cannot hold.
            state[AUX_RNG_STATE] = json.dumps(self.aux_rng.bit_generator.state)
            return state

        def set_state(self, state):
            state = dict(state)
            aux = state.pop(AUX_OPTIMIZER_STATE, None)
            aux_rng = state.pop(AUX_RNG_STATE, None)
            super().set_state(state)
            if aux_rng is not None:
                self.aux_rng.bit_generator.state = json.loads(aux_rng)
            if aux is not None:
                self.aux_optimizer.load_state_dict({
                    "param_groups": aux["param_groups"],
                    "state": convert_to_torch_tensor(aux["state"], device=self.device),
                })

    return PPGTorchPolicy
