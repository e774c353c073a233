"""The resolved experiment's accessors: the experiment's config over RLlib's defaults for its algorithm.

`utils.config.Experiment` takes these. Once the experiment is validated (or `attach_defaults` has run), every
question the rest of the code asks ("how many env runners?", "which framework?") is answered here, from the
YAML and the overrides where they set the key and from RLlib's own default where they do not: never from a
default guessed at the call site.
"""

from pathlib import Path

from utils import resources
from utils.conventions import run_dir

# The experiment's top-level keys the 2020 grader read besides Tune's (utilities/validate_config.py).
GRADER_KEYS = ("disable_evaluation_worker",)


def attach_defaults(exp, algo_cls=None):
    """Give `exp` RLlib's default config for its algorithm (needs Ray, not TF or torch); returns exp."""
    if algo_cls is None:
        from registry import algorithm_class

        algo_cls = algorithm_class(exp.run, where=exp.path)
    exp.defaults = algo_cls.get_default_config().to_dict()
    return exp


class ResolvedSettings:
    """Named accessors over config + RLlib defaults. The class using it has `config`, `spec`, `defaults`."""

    def setting(self, key):
        """The config's value for `key`, else RLlib's default for this algorithm."""
        if key in self.config:
            return self.config[key]
        if self.defaults is None:
            raise RuntimeError(f"{key}: the experiment has no RLlib defaults yet; validate it (utils.config.validate) "
                               "or call utils.resolved.attach_defaults first")
        return self.defaults.get(key)

    @property
    def runners(self):
        """num_env_runners (0: the learner samples itself)."""
        return self.setting("num_env_runners")

    @property
    def envs_per_runner(self):
        """num_envs_per_env_runner: parallel env copies (games) each runner steps."""
        return self.setting("num_envs_per_env_runner")

    @property
    def train_batch(self):
        return self.setting("train_batch_size")

    @property
    def fragment_length(self):
        """rollout_fragment_length, with "auto" resolved as RLlib does."""
        return resources.fragment_length(self.setting("rollout_fragment_length"), self.train_batch, self.runners,
                                         self.envs_per_runner)

    @property
    def driver_cpus(self):
        return self.setting("num_cpus_for_main_process")

    @property
    def gpus(self):
        """num_gpus: the learner's GPU share."""
        return self.setting("num_gpus")

    @property
    def gpus_per_runner(self):
        return self.setting("num_gpus_per_env_runner")

    @property
    def framework(self):
        return self.setting("framework")

    @property
    def game(self):
        """The procgen game (env_config.env_name)."""
        return (self.config.get("env_config") or {}).get("env_name", "coinrun")

    @property
    def evaluation_worker(self):
        """Whether AIcrowd's grader adds its evaluation runner (not when disable_evaluation_worker: true)."""
        return not self.spec.get("disable_evaluation_worker", False)

    def demand(self):
        """What this experiment asks Ray for (utils.resources.Demand)."""
        return resources.demand(self.setting, given=self.config)

    def run_dir(self, outputs_dir):
        return run_dir(Path(outputs_dir), self.name, self.game)

    def apply(self, fit):
        """Apply a utils.resources.Fit: its overrides into the config, its notes to the experiment's notes."""
        self.config.update(fit.overrides)
        self.notes.extend(fit.notes)
        return fit
