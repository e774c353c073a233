"""Experiment config: load -> override -> translate old names -> validate -> fit -> build.

An experiment file keeps the Tune-style shape of the 2020 starter kit:

    NAME:
      run: PPO
      env: procgen_env_wrapper
      stop: {timesteps_total: 8000000}
      checkpoint_freq: 25
      checkpoint_at_end: true
      keep_checkpoints_num: 5
      config: {...RLlib AlgorithmConfig keys...}

Every key is used or refused. Precedence: RLlib defaults < experiment YAML < command-line overrides.
"""

import copy
import math
from dataclasses import dataclass, field

from utils.errors import UserError, closest, unknown_name
from utils.loader import load_yaml, parse_value

EXPERIMENT_KEYS = {
    "run": "algorithm name (PPO, APPO, IMPALA, RandomPolicy, ...)",
    "env": "registered env name",
    "stop": "stop conditions",
    "checkpoint_freq": "save a checkpoint every N iterations (0: never, besides the end)",
    "checkpoint_at_end": "save a checkpoint when training stops",
    "keep_checkpoints_num": "keep only the newest N checkpoints (null: keep all)",
    "config": "RLlib algorithm config",
}
STOP_KEYS = ("timesteps_total", "training_iteration", "time_total_s", "episode_reward_mean")

# 2020 starter-kit (Ray 0.8) names -> RLlib 2.60 names.
RENAMED = {
    "num_workers": "num_env_runners",
    "num_envs_per_worker": "num_envs_per_env_runner",
    "num_cpus_per_worker": "num_cpus_per_env_runner",
    "num_gpus_per_worker": "num_gpus_per_env_runner",
    "num_cpus_for_driver": "num_cpus_for_main_process",
    "num_sgd_iter": "num_epochs",
    "sgd_minibatch_size": "minibatch_size",
    "evaluation_num_workers": "evaluation_num_env_runners",
    "timesteps_per_iteration": "min_sample_timesteps_per_iteration",
    "ignore_worker_failures": "ignore_env_runner_failures",
    "recreate_failed_workers": "restart_failed_env_runners",
}
# Ray 0.8 keys that no longer exist: dropped with a note when they hold their old default, refused otherwise.
REMOVED = {
    "horizon": (None, "procgen ends its episodes itself"),
    "soft_horizon": (False, "procgen ends its episodes itself"),
    "no_done_at_end": (False, "episodes always end with done"),
    "monitor": (False, "use rollout.py --video-dir for videos"),
    "memory": (0, "Ray sizes memory itself"),
    "object_store_memory": (0, "Ray sizes memory itself"),
    "memory_per_worker": (0, "Ray sizes memory itself"),
    "object_store_memory_per_worker": (0, "Ray sizes memory itself"),
    "use_pytorch": (False, "use framework: torch"),
    "eager": (False, "use framework: tf2"),
}
FRAMEWORKS = ("tf", "tf2", "torch")
# Counts that must be >= 1 (the rest of the num_* keys must be >= 0).
POSITIVE = {"num_envs_per_env_runner", "train_batch_size", "minibatch_size", "num_epochs", "rollout_fragment_length"}
# Keys whose default is None or a class, with what a YAML value may be.
FREE_KEYS = {"callbacks": str, "seed": int, "evaluation_config": dict, "evaluation_interval": int}


@dataclass
class Experiment:
    """One resolved experiment, as it flows from the YAML file to the training loop."""

    name: str
    path: str
    spec: dict  # run, env, stop, checkpoint_*, config
    overrides: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def run(self):
        return self.spec["run"]

    @property
    def config(self):
        return self.spec["config"]

    @property
    def stop(self):
        return self.spec["stop"]

    @property
    def env_name(self):
        return self.config["env_config"].get("env_name", "coinrun")

    def to_yaml_dict(self):
        return {self.name: copy.deepcopy(self.spec)}


def load_experiment(path, overrides=(), cpus=None, gpus=None):
    """The whole pipeline: file + overrides -> a validated, machine-fitted Experiment."""
    exp = read_experiment(path)
    apply_overrides(exp, overrides)
    translate_old_names(exp)
    validate(exp)
    if cpus is not None:
        fit_resources(exp, cpus, gpus or 0)
    return exp


def read_experiment(path):
    data = load_yaml(path)
    if not isinstance(data, dict) or len(data) != 1:
        found = f"{len(data)} top-level keys ({', '.join(map(str, data))})" if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: expected one experiment (NAME: {{run: ..., config: ...}}), found {found}.")
    (name, spec), = data.items()
    if not isinstance(spec, dict):
        raise UserError(f"{path}: experiment {name} must be a mapping with run, env, stop and config; found {spec!r}.")
    spec = copy.deepcopy(spec)
    spec.setdefault("config", {})
    if spec["config"] is None:
        spec["config"] = {}
    return Experiment(name=str(name), path=str(path), spec=spec)


def apply_overrides(exp, overrides):
    """Apply "dotted.path=value" overrides; paths start at the experiment level or inside `config`."""
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UserError(f'Override "{text}" is not KEY=VALUE. Example: env_config.env_name=bigfish or stop.timesteps_total=100000.')
        parts = key.split(".")
        if parts[0] not in EXPERIMENT_KEYS:
            parts = ["config"] + parts
        node = exp.spec
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f'Override "{text}": {".".join(parts[: i + 1])} is {child!r}, not a mapping.')
            node = child
        value = parse_value(raw)
        node[parts[-1]] = value
        exp.overrides.append(f"{'.'.join(parts)}={raw}")


def translate_old_names(exp):
    """Map 2020 starter-kit key names onto RLlib 2.60's, with one note each."""
    config = exp.config
    for old, new in RENAMED.items():
        if old in config:
            if new in config:
                raise UserError(f"{exp.path}: config has both {old} (old name) and {new}. Keep only {new}.")
            config[new] = config.pop(old)
            exp.notes.append(f"config.{old} is now config.{new}")
    if config.get("use_pytorch") is True:
        config.pop("use_pytorch")
        config["framework"] = "torch"
        exp.notes.append("config.use_pytorch: true is now config.framework: torch")
    if "vf_share_layers" in config:
        config.setdefault("model", {})["vf_share_layers"] = config.pop("vf_share_layers")
        exp.notes.append("config.vf_share_layers is now config.model.vf_share_layers")
    model = config.get("model")
    if isinstance(model, dict) and "custom_options" in model:
        if "custom_model_config" in model:
            raise UserError(f"{exp.path}: config.model has both custom_options (old name) and custom_model_config. Keep one.")
        model["custom_model_config"] = model.pop("custom_options")
        exp.notes.append("config.model.custom_options is now config.model.custom_model_config")
    for old, (default, why) in REMOVED.items():
        if old not in config:
            continue
        value = config.pop(old)
        if value != default and not (default == 0 and value is None):
            raise UserError(f"{exp.path}: config.{old}: {value!r} no longer exists in RLlib ({why}). Remove the key.")
        exp.notes.append(f"config.{old} dropped: it no longer exists in RLlib ({why})")


# --------------------------------------------------------------------------- validation


def _where(exp, key):
    return f"{exp.path}: {key}"


def validate(exp):
    """Refuse every unknown key, wrong type and impossible value, naming the fix."""
    from registry import algorithm_class, env_module

    spec = exp.spec
    for key in spec:
        if key not in EXPERIMENT_KEYS:
            raise UserError(
                f'{exp.path}: unknown key "{key}" in experiment {exp.name}.{closest(key, EXPERIMENT_KEYS)} '
                f"Allowed: {', '.join(EXPERIMENT_KEYS)}."
            )
    if "run" not in spec:
        raise UserError(f"{exp.path}: experiment {exp.name} has no `run`. Add e.g. run: PPO (or RandomPolicy).")
    if not isinstance(spec["run"], str):
        raise UserError(f"{exp.path}: run must be an algorithm name such as PPO, not {spec['run']!r}.")
    algo_cls = algorithm_class(spec["run"], where=exp.path)
    config = spec["config"]
    if not isinstance(config, dict):
        raise UserError(f"{_where(exp, 'config')} must be a mapping of RLlib settings, not {config!r}.")
    if "env" in config:
        if "env" in spec and spec["env"] != config["env"]:
            raise UserError(f"{exp.path}: env is given twice ({spec['env']} and config.env: {config['env']}). Keep one.")
        spec["env"] = config.pop("env")
    if "env" not in spec:
        raise UserError(f"{exp.path}: experiment {exp.name} has no `env`. Add env: procgen_env_wrapper.")
    env_mod = env_module(spec["env"], where=exp.path)
    config["env_config"] = env_mod.check_config(config.get("env_config") or {}, where=_where(exp, "config.env_config"))
    _validate_stop(exp)
    _validate_checkpointing(exp)
    defaults = algo_cls.get_default_config().to_dict()
    _validate_mapping(exp, config, defaults, "config", skip={"env_config", "model"})
    _validate_model(exp, config, defaults["model"])
    _validate_values(exp, config)


def _validate_stop(exp):
    stop = exp.spec.setdefault("stop", {})
    if not isinstance(stop, dict) or not stop:
        raise UserError(f"{_where(exp, 'stop')} must be a mapping with at least one of {', '.join(STOP_KEYS)}.")
    for key, value in stop.items():
        if key not in STOP_KEYS:
            raise unknown_name("stop condition", key, STOP_KEYS, exp.path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{_where(exp, f'stop.{key}')} must be a number, not {value!r}.")
        if key != "episode_reward_mean" and value <= 0:
            raise UserError(f"{_where(exp, f'stop.{key}')} must be > 0, not {value}.")


def _validate_checkpointing(exp):
    spec = exp.spec
    spec.setdefault("checkpoint_freq", 0)
    spec.setdefault("checkpoint_at_end", True)
    spec.setdefault("keep_checkpoints_num", None)
    _check_type(exp, "checkpoint_freq", spec["checkpoint_freq"], 0)
    _check_type(exp, "checkpoint_at_end", spec["checkpoint_at_end"], True)
    if spec["checkpoint_freq"] < 0:
        raise UserError(f"{_where(exp, 'checkpoint_freq')} must be >= 0 (0: only at the end), not {spec['checkpoint_freq']}.")
    keep = spec["keep_checkpoints_num"]
    if keep is not None:
        _check_type(exp, "keep_checkpoints_num", keep, 1)
        if keep < 1:
            raise UserError(f"{_where(exp, 'keep_checkpoints_num')} must be >= 1 or null (keep all), not {keep}.")


def _validate_mapping(exp, given, defaults, prefix, skip=()):
    for key, value in given.items():
        path = f"{prefix}.{key}"
        if key in skip:
            continue
        if key not in defaults:
            hint = closest(key, defaults) or " See RLlib's AlgorithmConfig for the key names."
            raise UserError(f'{exp.path}: unknown key "{path}".{hint}')
        if key in FREE_KEYS:
            if value is not None and not isinstance(value, FREE_KEYS[key]):
                raise UserError(f"{_where(exp, path)} must be a {FREE_KEYS[key].__name__}, not {value!r}.")
            continue
        _check_type(exp, path, value, defaults[key])


def _check_type(exp, path, value, default):
    """The YAML value must have the type of RLlib's default (ints may stand for floats)."""
    if default is None or value is None and not isinstance(default, bool):
        return
    if path.endswith("rollout_fragment_length") and value == "auto":
        return
    expected = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int) and ("_gpus" in path or "_cpus" in path):
        # Resource shares may be fractions (num_gpus: 0.3), as in Ray.
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = float
    elif isinstance(default, int) or path.endswith("rollout_fragment_length"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = int
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, expected)
    if not ok:
        hint = ""
        if isinstance(value, str) and value.strip(" ,").lower() in ("true", "false"):
            hint = " (a stray comma or quote? write true or false)"
        raise UserError(f"{_where(exp, path)} must be {_type_name(expected)}, not {value!r}{hint}.")


def _type_name(t):
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a mapping"}.get(t, t.__name__)


def _validate_model(exp, config, model_defaults):
    from models import MODELS
    from preprocessors import PREPROCESSORS
    from registry import model_class

    model = config.setdefault("model", {})
    if not isinstance(model, dict):
        raise UserError(f"{_where(exp, 'config.model')} must be a mapping, not {model!r}.")
    _validate_mapping(exp, model, model_defaults, "config.model", skip={"custom_model_config"})
    name = model.get("custom_model")
    framework = config.get("framework", "torch")
    if framework not in FRAMEWORKS:
        raise unknown_name("framework", framework, FRAMEWORKS, _where(exp, "config.framework"))
    custom = model.get("custom_model_config") or {}
    if name is not None:
        if name not in MODELS:
            raise unknown_name("model", name, MODELS, _where(exp, "config.model.custom_model"))
        needs = MODELS[name][1]
        if needs != ("torch" if framework == "torch" else "tf"):
            twins = [m for m, (_, fw) in MODELS.items() if fw == ("torch" if framework == "torch" else "tf")]
            raise UserError(
                f"{_where(exp, 'config.model.custom_model')}: {name} is a {needs} model but framework is {framework}. "
                f"Use one of {', '.join(twins)}, or set framework to {'torch' if needs == 'torch' else 'tf'}."
            )
        allowed = getattr(model_class(name), "DEFAULT_CONFIG", {})
        if not isinstance(custom, dict):
            raise UserError(f"{_where(exp, 'config.model.custom_model_config')} must be a mapping, not {custom!r}.")
        _validate_mapping(exp, custom, allowed, "config.model.custom_model_config")
    elif custom:
        raise UserError(f"{_where(exp, 'config.model.custom_model_config')} is set but no custom_model is. Set config.model.custom_model.")
    pre = model.get("custom_preprocessor")
    if pre is not None and pre not in PREPROCESSORS:
        raise unknown_name("preprocessor", pre, PREPROCESSORS, _where(exp, "config.model.custom_preprocessor"))


def _validate_values(exp, config):
    for key, value in config.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if key in POSITIVE and value < 1:
            raise UserError(f"{_where(exp, f'config.{key}')} must be >= 1, not {value}.")
        if (key.startswith("num_") or key in ("lr", "entropy_coeff", "grad_clip")) and value < 0:
            raise UserError(f"{_where(exp, f'config.{key}')} must be >= 0, not {value}.")
    gamma = config.get("gamma")
    if gamma is not None and not 0 < gamma <= 1:
        raise UserError(f"{_where(exp, 'config.gamma')} must be in (0, 1], not {gamma}.")
    if "lr" in config and config["lr"] <= 0:
        raise UserError(f"{_where(exp, 'config.lr')} must be > 0, not {config['lr']}.")


# --------------------------------------------------------------------------- resources


def fit_resources(exp, cpus, gpus):
    """Shrink workers and GPU shares that this machine cannot give, keeping the train batch the same."""
    config = exp.config
    if exp.run == "RandomPolicy":
        config.setdefault("num_env_runners", 0)
    workers = config.get("num_env_runners", 2)
    envs = config.get("num_envs_per_env_runner", 1)
    driver_cpus = config.get("num_cpus_for_main_process", 1)
    per_worker = config.get("num_cpus_per_env_runner", 1)
    room = max(0, int((cpus - driver_cpus) // per_worker)) if per_worker else workers
    if workers > room:
        total_envs = max(workers, 1) * envs
        why = f"this machine has {cpus} CPUs ({driver_cpus} for the learner, {per_worker} per env runner)"
        if room == 1 and config.get("framework") == "torch":
            # Measured (`./run.sh --bench --sweep --repeats 3`, 2 cores): one torch env runner beside the learner
            # trains at 0.90 of sampling in the learner process, where sampling gets both cores (README,
            # Benchmark). TF measured 0 runners at 0.92-1.00 of one runner, so TF keeps its runner.
            room = 0
            why += "; with torch, sampling in the learner process measured faster than one env runner"
        new_envs = math.ceil(total_envs / max(room, 1))
        exp.notes.append(f"num_env_runners {workers} -> {room} and num_envs_per_env_runner {envs} -> {new_envs}: {why}")
        config["num_env_runners"], config["num_envs_per_env_runner"] = room, new_envs
    workers = config.get("num_env_runners", 2)
    asked = config.get("num_gpus", 0) + workers * config.get("num_gpus_per_env_runner", 0)
    if asked > gpus:
        exp.notes.append(f"num_gpus {config.get('num_gpus', 0)} -> 0 and num_gpus_per_env_runner -> 0: this machine has {gpus} GPUs")
        config["num_gpus"] = 0
        config["num_gpus_per_env_runner"] = 0


# A deliberately pessimistic env-steps/s for one env runner, to size sample_timeout_s: about 1/100 of what
# one runner samples on an idle 2-core machine (2,254 steps/s, README "Benchmark"). RLlib's default of 60 s
# was hit by the baseline's 64 x 256-step fragment on a loaded machine: the samples were thrown away and
# the iteration logged with 0 steps (issue 10). A slow machine must make sampling slower, never lost.
PESSIMISTIC_RUNNER_STEPS_PER_S = 20


def fit_sample_timeout(exp, algo_cfg):
    """Size RLlib's sample_timeout_s to the work one env runner is given, unless the experiment sets it.

    The timeout (seconds) is max(RLlib's 60, fragment x envs per runner / PESSIMISTIC_RUNNER_STEPS_PER_S).
    It only applies to remote env runners; with 0 runners the learner samples itself and nothing times out.
    """
    if "sample_timeout_s" in exp.config or not algo_cfg.num_env_runners or algo_cfg.sample_timeout_s is None:
        return
    fragment = algo_cfg.get_rollout_fragment_length()
    steps = fragment * algo_cfg.num_envs_per_env_runner
    timeout = float(max(algo_cfg.sample_timeout_s, math.ceil(steps / PESSIMISTIC_RUNNER_STEPS_PER_S)))
    if timeout == algo_cfg.sample_timeout_s:
        return
    exp.notes.append(f"sample_timeout_s {algo_cfg.sample_timeout_s:g} -> {timeout:g}: one env runner samples "
                     f"{algo_cfg.num_envs_per_env_runner} envs x {fragment} steps = {steps} steps per call, sized at a "
                     f"pessimistic {PESSIMISTIC_RUNNER_STEPS_PER_S} steps/s so a slow machine is never cut short")
    exp.config["sample_timeout_s"] = timeout
    algo_cfg.env_runners(sample_timeout_s=timeout)


# --------------------------------------------------------------------------- build


def runtime_env_config(exp, num_envs, **extra):
    """The env_config the env wrapper receives: the user's keys plus the toolkit's internal ones."""
    env_config = copy.deepcopy(exp.config["env_config"])
    # One procgen call steps all of a runner's games: the wrapper builds a vector env of that size.
    env_config["_num_envs"] = num_envs
    # RLlib 2.60 raises on model.custom_preprocessor; the wrapper applies it instead.
    pre = exp.config.get("model", {}).get("custom_preprocessor")
    if pre is not None:
        env_config["_preprocessor"] = pre
    env_config.update(extra)
    return env_config


def build_algorithm_config(exp):
    """The RLlib AlgorithmConfig (old API stack) for a validated experiment."""
    from registry import algorithm_class, load_object

    config = copy.deepcopy(exp.config)
    config.pop("env_config")
    config.get("model", {}).pop("custom_preprocessor", None)
    env_config = runtime_env_config(exp, config.get("num_envs_per_env_runner", 1))
    callbacks = config.pop("callbacks", None)
    algo_cfg = algorithm_class(exp.run).get_default_config()
    algo_cfg.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
    try:
        algo_cfg.update_from_dict(config)
        algo_cfg.environment(env=exp.spec["env"], env_config=env_config, disable_env_checking=True)
        algo_cfg.callbacks(load_object(callbacks) if callbacks else load_object("callbacks:ProcgenCallbacks"))
        algo_cfg.validate()
        fit_sample_timeout(exp, algo_cfg)
    except (ValueError, TypeError) as e:
        raise UserError(f"{exp.path}: RLlib refused the config: {str(e).strip().splitlines()[0]}") from None
    return algo_cfg
