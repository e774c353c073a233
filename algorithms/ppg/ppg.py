"""`run: PPG`: Phasic Policy Gradient (Cobbe, Hilton, Klimov, Schulman 2020, "Phasic Policy Gradient",
arXiv:2009.04416; code: openai/phasic-policy-gradient), built on RLlib's old-stack PPO and ProcgenPPO.

Separate policy and value networks (models/ppg_impala_cnn_torch.py). Training alternates two phases:
- policy phase, every iteration: one pass (E_pi = E_V = 1, `num_epochs: 1`) of PPO's clipped objective on
  the policy network and of the value loss on the value network over the new train batch, 8 minibatches;
- auxiliary phase, after every N_pi (`n_pi`, 32) policy phases: `n_aux_epochs` (E_aux, 6) passes over the
  observations and value targets of those N_pi batches, training the policy network's auxiliary value head
  while a KL term (weight `beta_clone`, 1) keeps its policy where it was, and the value network again
  (weight `vf_true_weight`, 1); its own Adam (`aux_lr`, 5e-4), minibatches of `aux_minibatch_size` samples.
Rewards are scaled as in ProcgenPPO (the paper's code uses the same formula: gamma 0.99, clip 10).
Defaults are the paper's Procgen settings (ppg's train.py): gamma 0.999, lambda 0.95, lr 5e-4, clip 0.2,
entropy 0.01, vf coefficient 0.5, no gradient clipping, no value clipping, Adam epsilon 1e-8.

Differences from the paper's code, each deliberate:
- minibatches are random samples: the policy phase's 8 of 2048 (the paper: 8 whole 256-step env rows each)
  and the auxiliary phase's of 1024 (the paper: 4 whole env segments, 1024 samples), since the paper cut by
  env rows so a recurrent policy could replay them and this policy is not recurrent;
- reward scaling keeps one running statistic per env runner, merged into the learner's at every checkpoint
  (ProcgenPPO's scheme); the paper's normalizer is one statistic all-reduced over its processes;
- both networks are this project's IMPALA CNN with its initialisation (Glorot trunk, orthogonal heads with
  gains 0.01 and 1.0); the paper's uses normalized-weight layers (trunk scale 1.4, heads 0.1), and its
  max-pool pads differently at the borders;
- advantages are standardized with RLlib's `standardized` (std floored at 1e-4; the paper adds 1e-8);
- the auxiliary buffer is not saved in checkpoints (6.4 GB at the paper's settings): after a resume, the
  next auxiliary phase replays only the batches sampled since, and a note says so. (The auxiliary phase's Adam
  and the random states of its minibatch order and of DrAC's augmentation are saved.)
The auxiliary phase's figures are in the results (`info/learner/default_policy/learner_stats/aux_*`, so in
TensorBoard and result.json), from the last auxiliary phase; `aux_phases` counts them. Torch only.
"""

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.execution.rollout_ops import standardize_fields, synchronous_parallel_sample
from ray.rllib.execution.train_ops import train_one_step
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID
from ray.rllib.utils.metrics import NUM_AGENT_STEPS_SAMPLED, NUM_ENV_STEPS_SAMPLED, SAMPLE_TIMER, SYNCH_WORKER_WEIGHTS_TIMER
from ray.rllib.utils.metrics.learner_info import LEARNER_STATS_KEY

from algorithms.procgen_ppo.procgen_ppo import ProcgenPPO, ProcgenPPOConfig

POLICY_PHASES = "ppg_policy_phases"
AUX_PHASES = "ppg_aux_phases"


class PPGConfig(ProcgenPPOConfig):
    """ProcgenPPOConfig with the PPG paper's Procgen defaults and its five keys (see module docstring)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPG)
        self.num_epochs = 1
        self.minibatch_size = 2048
        self.grad_clip = None
        self.vf_clip_param = None
        self.adam_epsilon = 1e-8
        self.model = {**self.model, "custom_model": "ppg_impala_cnn_torch", "vf_share_layers": False}
        self.framework_str = "torch"
        # N_pi: policy phases (train batches) between auxiliary phases.
        self.n_pi = 32
        # E_aux: passes over the buffer in each auxiliary phase.
        self.n_aux_epochs = 6
        # beta_clone: weight of KL(pi_old || pi) in the auxiliary phase.
        self.beta_clone = 1.0
        # Weight of the value network's loss in the auxiliary phase.
        self.vf_true_weight = 1.0
        # Adam learning rate of the auxiliary phase (its own optimizer).
        self.aux_lr = 5e-4
        # Samples per auxiliary-phase minibatch.
        self.aux_minibatch_size = 1024

    def validate(self):
        if self.framework_str != "torch":
            self._value_error(f"PPG needs framework: torch (its two networks and auxiliary phase are torch code), "
                              f"not {self.framework_str!r}")
        PPOConfig.validate(self)
        self._validate_common()
        if self.vf_clip_param is not None and not self.vf_clip_param > 0:
            self._value_error(f"vf_clip_param must be > 0 or null (the paper: no value clipping), got {self.vf_clip_param!r}")
        for key in ("n_pi", "aux_minibatch_size"):
            value = getattr(self, key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                self._value_error(f"{key} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.n_aux_epochs, int) and not isinstance(self.n_aux_epochs, bool) and self.n_aux_epochs >= 0):
            self._value_error(f"n_aux_epochs must be an integer >= 0 (0: no auxiliary phase, PPO with two networks), "
                              f"got {self.n_aux_epochs!r}")
        for key in ("beta_clone", "vf_true_weight", "aux_lr"):
            if not getattr(self, key) >= 0:
                self._value_error(f"{key} must be >= 0, got {getattr(self, key)!r}")
        if self.is_multi_agent:
            self._value_error("PPG trains a single policy: remove the multiagent section")
        if self.use_kl_loss or self.kl_coeff:
            self._value_error(f"PPG has no KL penalty in its policy phase (the paper's kl_penalty is 0): set kl_coeff: 0.0 "
                              f"and use_kl_loss: false, got kl_coeff {self.kl_coeff!r}, use_kl_loss {self.use_kl_loss!r}")
        if not self.simple_optimizer:
            self._value_error("PPG trains through RLlib's simple_optimizer path (minibatches reshuffled every epoch): "
                              "remove simple_optimizer: false")
        self._validate_model()

    def _validate_model(self):
        import registry

        if self.model.get("vf_share_layers"):
            self._value_error("PPG keeps its policy and value networks apart by design: set model.vf_share_layers: false "
                              "(or remove it)")

        name = self.model.get("custom_model")
        if name not in registry.model_names() or not hasattr(registry.model_class(name), "aux_value_function"):
            self._value_error(
                f"PPG needs a model with separate policy and value networks and an auxiliary value head "
                f"(aux_value_function()), not model.custom_model {name!r}: use ppg_impala_cnn_torch "
                f"(models/ppg_impala_cnn_torch.py)")


class PPG(ProcgenPPO):
    """Phasic Policy Gradient: ProcgenPPO's sampling and reward scaling, PPG's two phases."""

    @classmethod
    def get_default_config(cls):
        return PPGConfig()

    @classmethod
    def get_default_policy_class(cls, config):
        from algorithms.ppg import policy

        return policy.torch_policy_class()

    def training_step(self):
        """One policy phase; after every n_pi of them, an auxiliary phase. Then the weights go to the runners."""
        with self._timers[SAMPLE_TIMER]:
            batch = synchronous_parallel_sample(worker_set=self.env_runner_group,
                                               max_env_steps=self.config.total_train_batch_size,
                                               sample_timeout_s=self.config.sample_timeout_s)
            if not batch:
                return {}
            batch = batch.as_multi_agent()
            self._counters[NUM_AGENT_STEPS_SAMPLED] += batch.agent_steps()
            self._counters[NUM_ENV_STEPS_SAMPLED] += batch.env_steps()
            batch = standardize_fields(batch, ["advantages"])
        policy = self.get_policy()
        if self.config.n_aux_epochs > 0:
            policy.store_for_aux_phase(batch.policy_batches[DEFAULT_POLICY_ID])
        results = train_one_step(self, batch)
        self._counters[POLICY_PHASES] += 1
        if self.config.n_aux_epochs > 0 and self._counters[POLICY_PHASES] % self.config.n_pi == 0:
            with self._timers["aux_phase"]:
                self._aux_stats = policy.aux_phase()
            self._counters[AUX_PHASES] += 1
        stats = results[DEFAULT_POLICY_ID][LEARNER_STATS_KEY]
        stats.update(getattr(self, "_aux_stats", {}), aux_phases=float(self._counters[AUX_PHASES]))
        global_vars = {"timestep": self._counters[NUM_AGENT_STEPS_SAMPLED],
                       "num_grad_updates_per_policy": {DEFAULT_POLICY_ID: policy.num_grad_updates}}
        with self._timers[SYNCH_WORKER_WEIGHTS_TIMER]:
            if self.env_runner_group.num_remote_workers() > 0:
                self.env_runner_group.sync_weights(policies=[DEFAULT_POLICY_ID], global_vars=global_vars)
        # As RLlib's PPO: the learner's own schedules (lr_schedule, entropy_coeff_schedule) follow the timestep.
        self.env_runner.set_global_vars(global_vars)
        return results

    def __setstate__(self, state):
        super().__setstate__(state)
        # Batches sampled before a restore into a live algorithm belong to the abandoned timeline.
        self.get_policy().aux_buffer.clear()
        done = self._counters[POLICY_PHASES] % self.config.n_pi
        if done and self.config.n_aux_epochs > 0:
            print(f"note: PPG resumed {done} policy phase(s) after its last auxiliary phase; the auxiliary buffer "
                  f"is not in checkpoints, so the next auxiliary phase replays only the "
                  f"{self.config.n_pi - done} batch(es) sampled from now on.", flush=True)
