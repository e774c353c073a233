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
from dataclasses import dataclass, field, replace

from utils import resources
from utils.errors import Problems, UserError, closest, unknown_name
from utils.loader import load_yaml, parse_value
from utils.resolved import ResolvedSettings, attach_defaults

EXPERIMENT_KEYS = {
    "run": "algorithm name (PPO, APPO, IMPALA, RandomPolicy, ...)",
    "env": "registered env name",
    "stop": "stop conditions",
    "checkpoint_freq": "save a checkpoint every N iterations (0: never, besides the end)",
    "checkpoint_at_end": "save a checkpoint when training stops",
    "keep_checkpoints_num": "keep only the newest N checkpoints (null: keep all)",
    "config": "RLlib algorithm config",
    "disable_evaluation_worker": "AIcrowd's grader: true runs no evaluation env runner beside training (2020 kit)",
}
STOP_KEYS = ("timesteps_total", "training_iteration", "time_total_s", "episode_reward_mean")

# 2020 (Ray 0.8 / Tune / starter kit) names and what they became: the tables are in utils/legacy.py.
FRAMEWORKS = ("tf", "tf2", "torch")
# Counts that must be >= 1 (the rest of the num_* keys must be >= 0).
POSITIVE = {"num_envs_per_env_runner", "train_batch_size", "minibatch_size", "num_epochs", "rollout_fragment_length"}
# Keys whose RLlib default is None (or a class) have their shape checked in utils/shapes.py.


@dataclass
class Experiment(ResolvedSettings):
    """One resolved experiment, as it flows from the YAML file to the training loop.

    Once validated it carries RLlib's defaults for its algorithm; the named accessors (runners, framework,
    demand(), run_dir(), ... in utils.resolved) answer from the config where it sets a key, else from them."""

    name: str
    path: str
    spec: dict  # run, env, stop, checkpoint_*, config
    overrides: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    defaults: dict | None = field(default=None, repr=False)  # RLlib's default config for `run`
    changes: list = field(default_factory=list, repr=False)  # 2020 keys and what they became (utils.legacy)
    written_as: dict = field(default_factory=dict, repr=False)  # today's key path -> the path the file wrote

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
        return self.game

    def to_yaml_dict(self):
        return {self.name: copy.deepcopy(self.spec)}


def load_experiment(path, overrides=(), cpus=None, gpus=None, memory=None):
    """The whole pipeline: file + overrides -> a validated, machine-fitted Experiment.

    cpus, gpus: the machine to fit (None: no fitting); memory: its memory in bytes, to check the learner's replay
    memory against (utils.resources.memory_check; None: no check). Raises UserError for every problem found."""
    # Every problem of the file in one run: each step adds what it finds, then all are raised together.
    problems = Problems(str(path))
    exp = read_experiment(path, problems)
    apply_overrides(exp, overrides)
    translate_old_names(exp, problems)
    validate(exp, problems)
    problems.raise_if_any()
    if cpus is not None:
        fit_resources(exp, cpus, gpus or 0)
    if memory is not None:
        check_memory(exp, memory)
    return exp


def read_experiment(path, problems=None):
    data = load_yaml(path, problems)
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


def translate_old_names(exp, problems=None):
    """Map 2020 (Ray 0.8 / Tune / starter kit) key names onto RLlib 2.60's, with one note each (utils.legacy)."""
    from utils.legacy import translate

    translate(exp, problems)


# --------------------------------------------------------------------------- validation


def _where(exp, key):
    written = _written(exp, key)
    return f"{exp.path}: {written} (now {key})" if written != key else f"{exp.path}: {key}"


def _written(exp, path):
    """The key path as the file wrote it, when the translation of 2020 names renamed it; else `path`."""
    for new, old in exp.written_as.items():
        if path == new or path.startswith(new + "."):
            return old + path[len(new):]
    return path


def _note_vf_clip_meaning(exp):
    """`run: PPO` with vf_clip_param: say that the key changed meaning since Ray 0.8 (the 2020 kit)."""
    config = exp.spec.get("config")
    if exp.spec.get("run") == "PPO" and isinstance(config, dict) and "vf_clip_param" in config:
        exp.notes.append(
            f"vf_clip_param {config['vf_clip_param']} with run: PPO clamps the squared value error at that value "
            "(RLlib 2.60); in Ray 0.8 (the 2020 kit) it clipped the value prediction around the old one, as the "
            "Procgen paper's ppo2 does. For that meaning, and the paper's PPO, use run: ProcgenPPO."
        )


def _note_tf_grad_clip_ignored(exp):
    """`run: PPO` on TF with grad_clip: RLlib 2.60's TF PPO policy never applies it; say so."""
    config = exp.spec.get("config")
    if (exp.spec.get("run") == "PPO" and isinstance(config, dict) and config.get("framework") in ("tf", "tf2")
            and config.get("grad_clip") is not None):
        exp.notes.append(
            f"grad_clip {config['grad_clip']} with run: PPO and framework: {config['framework']} is not applied: "
            "RLlib 2.60's TF PPO policies (static graph and eager) have no gradient clipping "
            "(its torch policy clips by the global norm). For clipping by the "
            "global norm, as the Procgen paper's ppo2 does, use run: ProcgenPPO or framework: torch."
        )


def validate(exp, problems=None):
    """Refuse every unknown key, wrong type and impossible value, naming the fix: all of them in one run."""
    from registry import algorithm_class, env_module
    from utils.algorithm_support import check_algorithm

    own = problems is None
    problems = problems or Problems(exp.path)
    spec = exp.spec
    for key in spec:
        if key not in EXPERIMENT_KEYS:
            problems.add(UserError(
                f'{exp.path}: unknown key "{key}" in experiment {exp.name}.{closest(key, EXPERIMENT_KEYS)} '
                f"Allowed: {', '.join(EXPERIMENT_KEYS)}."
            ))
    algo_cls = None
    with problems.check():
        if "run" not in spec:
            raise UserError(f"{exp.path}: experiment {exp.name} has no `run`. Add e.g. run: PPO (or RandomPolicy).")
        if not isinstance(spec["run"], str):
            raise UserError(f"{exp.path}: run must be an algorithm name such as PPO, not {spec['run']!r}.")
        check_algorithm(spec["run"], exp.path)  # listed by RLlib, yet cannot train on Procgen here
        algo_cls = algorithm_class(spec["run"], where=exp.path)
    config = spec["config"]
    if not isinstance(config, dict):
        problems.add(UserError(f"{_where(exp, 'config')} must be a mapping of RLlib settings, not {config!r}."))
        config = None
    with problems.check():
        if config is not None and "env" in config:
            if "env" in spec and spec["env"] != config["env"]:
                raise UserError(f"{exp.path}: env is given twice ({spec['env']} and config.env: {config['env']}). Keep one.")
            spec["env"] = config.pop("env")
        if "env" not in spec:
            raise UserError(f"{exp.path}: experiment {exp.name} has no `env`. Add env: procgen_env_wrapper.")
        env_mod = env_module(spec["env"], where=exp.path)
        if config is not None:
            config["env_config"] = env_mod.check_config(config.get("env_config") or {}, where=_where(exp, "config.env_config"))
    for step in (_validate_stop, _validate_checkpointing, _validate_grader_keys):
        with problems.check():
            step(exp)
    _note_vf_clip_meaning(exp)
    _note_tf_grad_clip_ignored(exp)
    if algo_cls is not None and config is not None:
        defaults = attach_defaults(exp, algo_cls).defaults
        _validate_mapping(exp, config, defaults, "config", skip={"env_config", "model"}, problems=problems)
        with problems.check():
            _validate_model(exp, config, defaults["model"], problems)
        _validate_values(exp, config, problems)
    if own:
        problems.raise_if_any()


def _validate_grader_keys(exp):
    value = exp.spec.get("disable_evaluation_worker", False)
    if not isinstance(value, bool):
        raise UserError(f"{_where(exp, 'disable_evaluation_worker')} must be true or false, not {value!r}.")


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


def _validate_mapping(exp, given, defaults, prefix, skip=(), problems=None):
    from utils.legacy import unknown_key_hint
    from utils.shapes import SHAPES, check_shape

    own = problems is None
    problems = problems or Problems(exp.path)
    for key, value in given.items():
        path = f"{prefix}.{key}"
        if key in skip:
            continue
        with problems.check():
            if key not in defaults:
                raise UserError(f'{exp.path}: unknown key "{_written(exp, path)}".{unknown_key_hint(exp, key, defaults, prefix)}')
            if type(defaults[key]) is int and defaults[key] == -1 and not key.endswith("rollout_fragment_length"):
                # RLlib's DEPRECATED_VALUE: the name is kept only to raise on it, so no value of it can work.
                raise UserError(f"{_where(exp, path)}: RLlib 2.60 keeps {key} only as a deprecated placeholder, "
                                "with no effect. Remove it.")
            if path in SHAPES:
                check_shape(_where(exp, path), path, value)
                continue
            _check_type(exp, path, value, defaults[key])
    if own:
        problems.raise_if_any()


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


def _validate_model(exp, config, model_defaults, problems=None):
    from registry import model_framework, model_names, preprocessor_names

    model = config.setdefault("model", {})
    if not isinstance(model, dict):
        raise UserError(f"{_where(exp, 'config.model')} must be a mapping, not {model!r}.")
    _validate_mapping(exp, model, model_defaults, "config.model", skip={"custom_model_config"}, problems=problems)
    name = model.get("custom_model")
    framework = exp.framework
    if framework not in FRAMEWORKS:
        raise unknown_name("framework", framework, FRAMEWORKS, _where(exp, "config.framework"))
    custom = model.get("custom_model_config") or {}
    if name is not None:
        if name not in model_names():
            raise unknown_name("model", name, model_names(), _where(exp, "config.model.custom_model"))
        needs = model_framework(name)
        if _check_model_file(exp, name, problems):
            return  # importing a Ray 0.8 model file would fail on what was just reported
        if needs != ("torch" if framework == "torch" else "tf"):
            twins = [m for m in model_names() if model_framework(m) == ("torch" if framework == "torch" else "tf")]
            raise UserError(
                f"{_where(exp, 'config.model.custom_model')}: {name} is a {needs} model but framework is {framework}. "
                f"Use one of {', '.join(twins)}, or set framework to {'torch' if needs == 'torch' else 'tf'}."
            )
        allowed = getattr(_import_model(name), "DEFAULT_CONFIG", None)
        if not isinstance(custom, dict):
            raise UserError(f"{_where(exp, 'config.model.custom_model_config')} must be a mapping, not {custom!r}.")
        # A model without DEFAULT_CONFIG (as 2020's models were) reads its options itself: they stay unchecked.
        if allowed is not None:
            _validate_mapping(exp, custom, allowed, "config.model.custom_model_config", problems=problems)
    elif custom:
        raise UserError(f"{_where(exp, 'config.model.custom_model_config')} is set but no custom_model is. Set config.model.custom_model.")
    pre = model.get("custom_preprocessor")
    if pre is not None and pre not in preprocessor_names():
        raise unknown_name("preprocessor", pre, preprocessor_names(), _where(exp, "config.model.custom_preprocessor"))


def _check_model_file(exp, name, problems):
    """Ray 0.8 idioms in the model's file, each with file, line and the change (utils/model_files.py)."""
    from registry import model_path
    from utils.model_files import ray08_problems

    found = ray08_problems(name, model_path(name))
    if found and problems is not None:
        for error in found:
            problems.add(error)
    elif found:
        raise found[0]
    return bool(found)


def _import_model(name):
    """The model's class; a file that fails to import is one message naming its file, line and error."""
    import traceback

    from registry import model_class, model_path

    try:
        return model_class(name)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  (any error of the user's model file)
        module = model_path(name).partition(":")[0]
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "/models/" in f.filename]
        where = f"models/{frames[-1].filename.rsplit('/models/', 1)[1]}:{frames[-1].lineno}" if frames else module
        raise UserError(f"{where}: model {name} cannot be imported: {type(e).__name__}: {e}. Fix that line.") from None


def _validate_values(exp, config, problems=None):
    own = problems is None
    problems = problems or Problems(exp.path)
    for key, value in config.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if key in POSITIVE and value < 1:
            problems.add(UserError(f"{_where(exp, f'config.{key}')} must be >= 1, not {value}."))
        elif (key.startswith("num_") or key in ("entropy_coeff", "grad_clip")) and value < 0:
            problems.add(UserError(f"{_where(exp, f'config.{key}')} must be >= 0, not {value}."))
    gamma = config.get("gamma")
    if isinstance(gamma, (int, float)) and not 0 < gamma <= 1:
        problems.add(UserError(f"{_where(exp, 'config.gamma')} must be in (0, 1], not {gamma}."))
    lr = config.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr <= 0:
        problems.add(UserError(f"{_where(exp, 'config.lr')} must be > 0, not {lr}."))
    if own:
        problems.raise_if_any()


# --------------------------------------------------------------------------- resources


def fit_resources(exp, cpus, gpus):
    """Shrink env runners and GPU shares that this machine cannot give, keeping the train batch the same
    (utils.resources.fit_machine); the changes go into the config, their notes into exp.notes."""
    return exp.apply(resources.fit_machine(exp.demand(), cpus, gpus))


def learner_memory_demand(exp):
    """exp.demand(), with the learner's replay (PPG's auxiliary buffer) sized from the experiment's own env and stop:
    frame_bytes from the env's observation space (frame stacks and preprocessors change it; the env is built once,
    for one game), replayed_batches at most the train batches the run samples before stop.timesteps_total or
    stop.training_iteration."""
    d = exp.demand()
    if not d.replayed_batches:
        return d
    batches, limit = d.replayed_batches, d.replay_limit
    stop = exp.spec.get("stop") or {}
    for key, per_batch in (("timesteps_total", d.train_batch), ("training_iteration", 1)):
        value = stop.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and per_batch:
            if math.ceil(value / per_batch) < batches:
                shown = int(value) if value == int(value) else value
                batches, limit = math.ceil(value / per_batch), f"stop.{key} {shown:,} comes before n_pi"
    return replace(d, replayed_batches=batches, replay_limit=limit, frame_bytes=observation_bytes(exp))


def observation_bytes(exp):
    """Bytes of one observation of the experiment's env, as its space says (shape x dtype size)."""
    import numpy as np
    from ray.rllib.env.env_context import EnvContext

    from registry import env_module

    env = env_module(exp.spec["env"]).create(EnvContext(runtime_env_config(exp, 1), worker_index=0))
    try:
        space = env.observation_space
    finally:
        env.close()
    return int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize


def check_memory(exp, memory_bytes, machine="this machine", fix="or run on a machine with more memory"):
    """Refuse an experiment whose learner replay (PPG's auxiliary buffer) would not leave the machine enough
    memory; a note in exp.notes when it takes over half (utils.resources.memory_check). Raises UserError."""
    problem, note = resources.memory_check(learner_memory_demand(exp), memory_bytes, machine, fix)
    if problem:
        raise UserError(f"{exp.path}: {problem}")
    if note:
        exp.notes.append(note)


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
    env_config = runtime_env_config(exp, exp.envs_per_runner)
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
