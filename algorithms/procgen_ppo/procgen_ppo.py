"""`run: ProcgenPPO`: the Procgen paper's PPO (Cobbe et al. 2020, openai/train-procgen on OpenAI
baselines ppo2), built on RLlib's old-stack PPO.

What differs from RLlib's `PPO` (which stays available as `run: PPO`), each as in train-procgen:
- value clipping ppo2-style: `vf_clip_param` clips the value *prediction* around the one made when
  sampling (`losses.value_loss_*`), with baselines' 0.5 factor; RLlib's PPO clamps the squared
  error at `vf_clip_param` instead, so the same 0.2 means something else there;
- rewards scaled by the running std of the discounted return (`reward_scaling`, baselines'
  VecNormalize(ob=False): gamma 0.99, clip 10); reported returns stay the game's own;
- advantages normalized per minibatch (RLlib: once per train batch);
- Adam epsilon 1e-5 (`adam_epsilon`; RLlib: 1e-8);
- gradients clipped by their global norm (`grad_clip`, ppo2's max_grad_norm 0.5) in both frameworks: RLlib
  2.60's TF PPO policy applies no `grad_clip` at all (its torch policy clips by the global norm);
- the `kl` statistic is KL(sampling policy || updated one) even without a KL penalty (ppo2's approxkl;
  RLlib reports 0 then);
- minibatches drawn from the train batch reshuffled every epoch, as ppo2 does: RLlib's default multi-GPU
  path cuts the batch into the same contiguous slices (whole env trajectories) in every epoch, so
  ProcgenPPO takes RLlib's `simple_optimizer` path (`minibatches()` shuffles each epoch);
- the reward-scaling statistics of the env runners are merged into the learner's policy before every
  checkpoint, so a resumed run starts from them (RLlib sends the learner's policy state to every runner
  on restore).
Optional, off by default: DrAC data augmentation (`augmentation`, `drac_coeff`; `augmentation.py`, torch).
Defaults are train-procgen's hyperparameters (`train_procgen/train.py`): gamma 0.999, lambda
0.95, lr 5e-4, 3 epochs, 8 minibatches of 2048 from 64 envs x 256 steps, entropy 0.01, clip 0.2,
vf coefficient 0.5, gradient norm 0.5, no KL penalty. Frameworks: torch and tf (static graph).
"""

from ray.rllib.algorithms.ppo import PPO, PPOConfig


class ProcgenPPOConfig(PPOConfig):
    """PPOConfig with train-procgen's defaults and four extra keys (see module docstring)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or ProcgenPPO)
        self.gamma = 0.999
        self.lambda_ = 0.95
        self.lr = 5e-4
        self.num_epochs = 3
        self.minibatch_size = 2048
        self.train_batch_size = 16384
        self.entropy_coeff = 0.01
        self.clip_param = 0.2
        self.vf_clip_param = 0.2
        self.vf_loss_coeff = 0.5
        self.grad_clip = 0.5
        self.kl_coeff = 0.0
        self.use_kl_loss = False
        # ppo2 reshuffles the whole batch every epoch; RLlib's other path reuses the same contiguous slices.
        self.simple_optimizer = True
        # Reward scaling by the running std of the discounted return (baselines VecNormalize, ob=False).
        self.reward_scaling = True
        # Discount of the return whose std scales rewards: VecNormalize's default 0.99, not PPO's gamma.
        self.reward_scaling_gamma = 0.99
        # Scaled rewards are clipped to [-reward_clip, reward_clip] (VecNormalize's cliprew).
        self.reward_clip = 10.0
        # Adam's epsilon (baselines ppo2: 1e-5; torch and TF default: 1e-8).
        self.adam_epsilon = 1e-5
        # DrAC (augmentation.py): an augmentation name from AUGMENTATIONS, or None for none (torch only).
        self.augmentation = None
        # DrAC's regularizer weight alpha_r (Raileanu et al. 2020: 0.1).
        self.drac_coeff = 0.1

    def validate(self):
        # Before RLlib's own checks: for tf2 those switch TF to eager mode, which fails once a graph exists.
        if self.framework_str not in ("torch", "tf"):
            self._value_error(
                f"ProcgenPPO supports framework torch or tf, not {self.framework_str!r}: set framework: torch or tf"
            )
        super().validate()
        if not self.vf_clip_param or self.vf_clip_param <= 0:
            self._value_error(
                f"vf_clip_param must be > 0 for ProcgenPPO (ppo2's value clip range, 0.2 in the paper), "
                f"got {self.vf_clip_param!r}; use a large value such as 1.0e9 to switch clipping off"
            )
        self._validate_common()

    def _validate_common(self):
        """The checks ProcgenPPO shares with PPG (algorithms/ppg), which builds on it."""
        name = self.algo_class.__name__ if self.algo_class else "ProcgenPPO"
        if self.model.get("use_lstm") or self.model.get("use_attention"):
            self._value_error(f"{name} has no recurrent loss: remove model.use_lstm/use_attention or use run: PPO")
        if self.reward_scaling and not (0.0 <= self.reward_scaling_gamma <= 1.0 and self.reward_clip > 0):
            self._value_error(
                f"reward_scaling_gamma must be in [0, 1] and reward_clip > 0, got "
                f"{self.reward_scaling_gamma!r} and {self.reward_clip!r}"
            )
        if not self.adam_epsilon > 0:
            self._value_error(f"adam_epsilon must be > 0, got {self.adam_epsilon!r}")
        self._validate_augmentation()

    def _validate_augmentation(self):
        from algorithms.procgen_ppo.augmentation import AUGMENTATIONS

        if self.augmentation is None:
            return
        if self.augmentation not in AUGMENTATIONS:
            self._value_error(
                f"augmentation must be one of {', '.join(AUGMENTATIONS)} (or null for none), not {self.augmentation!r}"
            )
        if self.framework_str != "torch":
            self._value_error(f"augmentation {self.augmentation!r} needs framework: torch (DrAC runs in the torch loss)")
        if not self.drac_coeff >= 0:
            self._value_error(f"drac_coeff must be >= 0 (DrAC's alpha_r, 0.1 in the paper), got {self.drac_coeff!r}")


class ProcgenPPO(PPO):
    """RLlib's PPO algorithm running ProcgenPPO's policies."""

    @classmethod
    def get_default_config(cls):
        return ProcgenPPOConfig()

    @classmethod
    def get_default_policy_class(cls, config):
        from algorithms.procgen_ppo import policies

        return policies.torch_policy_class() if config["framework"] == "torch" else policies.tf_policy_class()

    def setup(self, config):
        # RLlib's PPO warns once when the mean reward exceeds vf_clip_param, advice that is about its
        # own squared-error clamp; here vf_clip_param clips the prediction, so the warning misleads.
        # Taking its log_once slot silences exactly that warning.
        from ray.util.debug import log_once

        log_once("ppo_warned_vf_clip")
        super().setup(config)

    def __getstate__(self):
        # save_checkpoint reads the learner's policy state from here: give it the runners' statistics first.
        self._gather_return_scalers()
        return super().__getstate__()

    def _gather_return_scalers(self):
        from algorithms.procgen_ppo.reward_scaling import merge_states

        scaler = getattr(self.get_policy(), "return_scaler", None)
        if scaler is None or not self.env_runner_group or self.env_runner_group.num_remote_env_runners() == 0:
            return
        states = self.env_runner_group.foreach_env_runner(
            lambda runner: runner.get_policy().return_scaler.get_state(), local_env_runner=False
        )
        if states:
            scaler.set_state(merge_states(states))
