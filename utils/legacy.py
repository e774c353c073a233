"""2020 (Ray 0.8 / Tune / AIcrowd starter kit) key names: what each became in RLlib 2.60, and the translation.

Every key a 2020 experiment file can hold that RLlib 2.60 no longer takes under that name is in one of the
tables below, each row with what replaced it and where Ray recorded the change:

- RENAMED: the same setting under today's name (mapped, one note each).
- DROPPED: settings RLlib no longer has; dropped with a note while they hold a value that meant "off" or the
  2020 default, refused otherwise with what to use instead.
- REFUSED: settings of a kind this project cannot honour as written; refused with the replacement.

Ray's own records checked for each row: RLlib 2.60's `AlgorithmConfig._translate_special_keys` and the
`deprecation_warning(old=..., new=...)` calls in `AlgorithmConfig.env_runners/training/evaluation/
fault_tolerance/resources`, the DEPRECATED_VALUE (-1) placeholders in `AlgorithmConfig.__init__`, PPO/IMPALA/
APPO's configs and `models/catalog.py` MODEL_DEFAULTS, and Ray 0.8's `rllib/agents/trainer.py` COMMON_CONFIG
(`sample_batch_size` renamed to `rollout_fragment_length` in 0.8.0). `tests/test_legacy.py` checks that every
new name exists in RLlib 2.60 and that every placeholder key of the algorithms this project trains is covered.

`translate(exp, problems)` applies the tables to an Experiment in place and records each change as a
`Change` (the key path as written, what it became, why): `load_experiment` prints them as notes and
`utils/migrate.py` writes them into the file.
"""

import functools
from dataclasses import dataclass

from utils.errors import Problems, UserError

# RLlib keeps removed keys as placeholders whose default is this value (ray._common.deprecation).
DEPRECATED_VALUE = -1


@dataclass
class Change:
    """One key of a 2020 file and what it became. path and new_path are tuples from the experiment level."""

    path: tuple
    action: str  # rename | drop | replace | move | keep | add
    value: object = None  # the value as written
    new_path: tuple = None
    new_value: object = None
    why: str = ""

    def note(self):
        old = ".".join(self.path)
        new = ".".join(self.new_path or ())
        why = f" ({self.why})" if self.why else ""
        if self.action == "rename":
            return f"{old} is now {new}{why}"
        if self.action == "move":
            return f"{old} is now {new}{why}"
        if self.action == "replace":
            return f"{old}: {_show(self.value)} is now {new}: {_show(self.new_value)}{why}"
        if self.action == "drop":
            return f"{old}: {_show(self.value)} dropped{why}"
        if self.action == "add":
            return f"{new}: {_show(self.new_value)} added{why}"
        return f"{old}: {_show(self.value)} kept as given{why}"

    def comment(self):
        """The comment migrate puts on the changed line."""
        old = ".".join(self.path[1:]) if self.path[:1] == ("config",) else ".".join(self.path)
        why = f": {self.why}" if self.why else ""
        if self.action in ("rename", "move"):
            return f"was {old}, its Ray 0.8 name{why}"
        if self.action == "replace":
            return f"was {old}: {_show(self.value)}{why}"
        if self.action == "add":
            return f"added{why}"
        return f"removed{why}"


def _show(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) and not value else str(value)


# --------------------------------------------------------------------------------------------- the tables

# config keys: 2020 name -> (today's name, where Ray recorded it)
RENAMED = {
    "num_workers": ("num_env_runners", "AlgorithmConfig._translate_special_keys"),
    "num_envs_per_worker": ("num_envs_per_env_runner", "AlgorithmConfig.env_runners(num_envs_per_worker)"),
    "num_cpus_per_worker": ("num_cpus_per_env_runner", "AlgorithmConfig.resources(num_cpus_per_worker)"),
    "num_gpus_per_worker": ("num_gpus_per_env_runner", "AlgorithmConfig.resources(num_gpus_per_worker)"),
    "custom_resources_per_worker": ("custom_resources_per_env_runner", "AlgorithmConfig.resources(custom_resources_per_worker)"),
    "num_cpus_for_driver": ("num_cpus_for_main_process", "AlgorithmConfig._translate_special_keys"),
    "num_sgd_iter": ("num_epochs", "AlgorithmConfig.training(num_sgd_iter)"),
    "sgd_minibatch_size": ("minibatch_size", "PPOConfig.training(sgd_minibatch_size)"),
    "sample_batch_size": ("rollout_fragment_length", "Ray 0.8.0 renamed sample_batch_size"),
    "evaluation_num_workers": ("evaluation_num_env_runners", "AlgorithmConfig.evaluation(evaluation_num_workers)"),
    "evaluation_num_episodes": ("evaluation_duration", "AlgorithmConfig: evaluation_duration with "
                                "evaluation_duration_unit episodes, RLlib's default unit"),
    "timesteps_per_iteration": ("min_sample_timesteps_per_iteration", "AlgorithmConfig: timesteps_per_iteration"),
    "min_iter_time_s": ("min_time_s_per_iteration", "AlgorithmConfig: min_iter_time_s"),
    "metrics_smoothing_episodes": ("metrics_num_episodes_for_smoothing", "AlgorithmConfig: metrics_smoothing_episodes"),
    "collect_metrics_timeout": ("metrics_episode_collection_timeout_s", "AlgorithmConfig: collect_metrics_timeout"),
    "ignore_worker_failures": ("ignore_env_runner_failures", "AlgorithmConfig.fault_tolerance(ignore_worker_failures)"),
    "recreate_failed_workers": ("restart_failed_env_runners", "AlgorithmConfig.env_runners(recreate_failed_workers)"),
    "num_data_loader_buffers": ("num_multi_gpu_tower_stacks", "IMPALAConfig: num_data_loader_buffers (Ray 1.4)"),
    "max_sample_requests_in_flight_per_worker": ("max_requests_in_flight_per_env_runner",
                                                 "IMPALAConfig: max_sample_requests_in_flight_per_worker"),
    "target_update_frequency": ("target_network_update_freq", "APPOConfig.training(target_update_frequency)"),
}
MODEL_RENAMED = {
    "custom_options": ("custom_model_config", "ModelCatalog: custom_options"),
}

# config keys removed from RLlib: key -> (values that meant "off"/the 2020 default, why, what to use instead)
_MEMORY = ("Ray sizes memory itself", "remove it; give Ray memory with ray.init or --ray-address")
_SAMPLER = "procgen ends its episodes itself"
DROPPED = {
    "horizon": ((None,), _SAMPLER, "remove it; procgen's own time limits end episodes"),
    "soft_horizon": ((False,), _SAMPLER, "remove it"),
    "no_done_at_end": ((False,), "episodes always end with done", "remove it"),
    "monitor": ((False,), "RLlib 2.60 has no monitor", "rollout.py --video-dir DIR records videos"),
    "memory": ((0, None), *_MEMORY),
    "object_store_memory": ((0, None), *_MEMORY),
    "memory_per_worker": ((0, None), *_MEMORY),
    "object_store_memory_per_worker": ((0, None), *_MEMORY),
    "use_exec_api": ((True, False), "RLlib 2.60 has one execution path", "remove it"),
    "no_eager_on_workers": ((False,), "RLlib 2.60 has no such switch", "remove it"),
    "fake_sampler": ((False,), "RLlib 2.60 has no fake sampler", "remove it"),
    "simple_optimizer": ((False, True), "RLlib 2.60 picks its optimizer path itself", "remove it"),
    "synchronize_filters": ((True,), "RLlib 2.60 synchronizes filters by default: update_worker_filter_stats: true",
                            "update_worker_filter_stats: false"),
    "shuffle_sequences": ((True,), "RLlib 2.60's old-stack PPO has no such switch (run: ProcgenPPO reshuffles every epoch, as ppo2)", "remove it"),
    "sample_async": ((False,), "RLlib 2.60 samples synchronously", "remove it"),
    "num_aggregation_workers": ((0,), "aggregator workers are gone from RLlib's old API stack", "remove it"),
    "input_evaluation": ((("is", "wis"), [], None), "only for offline input", "off_policy_estimation_methods"),
    "use_critic": ((True,), "APPO always uses a value function", "remove it"),  # APPO only; PPO keeps use_critic
    "multiagent": (({"policies": {}, "policy_mapping_fn": None, "policies_to_train": None}, {}, None),
                   "procgen is single-agent", "remove it; one policy plays all of a runner's games"),
}
MODEL_DROPPED = {
    "state_shape": ((None,), "ModelV1 only", "remove it"),
    "_use_default_native_models": ((False,), "RLlib 2.60 placeholder", "remove it"),
}

# Keys of another algorithm family or of Ray 0.8 with a nested replacement: always refused, naming it.
_REPLAY = "replay_buffer_config: {type: MultiAgentPrioritizedReplayBuffer, capacity: ..., prioritized_replay_alpha: ...}"
REFUSED = {
    "buffer_size": ("a DQN/SAC replay-buffer setting", "replay_buffer_config: {capacity: N} (DQN family only)"),
    "prioritized_replay": ("a DQN replay-buffer setting", _REPLAY),
    "prioritized_replay_alpha": ("a DQN replay-buffer setting", _REPLAY),
    "prioritized_replay_beta": ("a DQN replay-buffer setting", _REPLAY),
    "prioritized_replay_eps": ("a DQN replay-buffer setting", _REPLAY),
    "final_prioritized_replay_beta": ("a DQN replay-buffer setting", _REPLAY),
    "prioritized_replay_beta_annealing_timesteps": ("a DQN replay-buffer setting", _REPLAY),
    "learning_starts": ("a DQN setting", "num_steps_sampled_before_learning_starts (DQN family only)"),
    "replay_batch_size": ("a replay setting", "train_batch_size"),
    "schedule_max_timesteps": ("Ray 0.8 DQN exploration", "exploration_config: {type: EpsilonGreedy, epsilon_timesteps: N}"),
    "exploration_fraction": ("Ray 0.8 DQN exploration", "exploration_config: {type: EpsilonGreedy, epsilon_timesteps: N}"),
    "exploration_final_eps": ("Ray 0.8 DQN exploration", "exploration_config: {type: EpsilonGreedy, final_epsilon: X}"),
    "min_time_s_per_reporting": ("renamed in Ray 2", "min_time_s_per_iteration"),
}

# Tune's experiment-level keys of 2020, and the kit's: key -> (values that meant the default, what to do instead)
EXPERIMENT_DROPPED = {
    "local_dir": (("~/ray_results", None), "run directories go under OUTPUTS_DIR; use --outputs-dir DIR"),
    "upload_dir": (("", None), "copy $OUTPUTS_DIR yourself (or train on SageMaker, which uploads it)"),
    "num_samples": ((1,), "one run per command; run train.py once per seed with seed=N"),
    "resources_per_trial": ((None,), "resources come from config (num_env_runners, num_gpus, ...)"),
    "checkpoint_score_attr": (("training_iteration", None), "keep_checkpoints_num keeps the newest N"),
    "max_failures": ((0, 1, None), "run the same command again: it resumes from the newest checkpoint"),
    "restore": ((None, ""), "put the run in --run-dir: train.py resumes from the newest checkpoint there"),
    "export_formats": ((None, []), "remove it"),
    "trial_name_creator": ((None,), "remove it"),
    "sync_to_driver": ((None, True, False), "remove it"),
    "name": ((None,), "the experiment's name is its top-level key"),
}
# The 2020 kit's train.py wrote these into env_config: accepted as given, never used for the score.
GRADER_ENV_KEYS = ("return_min", "return_blind", "return_max")
ENV_DROPPED = {
    "debug_mode": ((False,), "the env wrapper has no debug mode", "remove it"),
    "render_mode": ((None, "rgb_array"), "videos come from rollout.py --video-dir", "rollout.py --video-dir DIR"),
}


# --------------------------------------------------------------------------------------------- translation


def translate(exp, problems=None, algo_defaults=None):
    """Map the 2020 names of exp.spec onto RLlib 2.60's in place; record Changes, collect problems."""
    own = problems is None
    problems = problems or Problems(exp.path)
    changes = []
    given = _override_paths(exp)
    spec, config = exp.spec, exp.config
    if algo_defaults is None:
        algo_defaults = _algo_defaults(spec.get("run"))
    _translate_experiment(exp, spec, changes, problems)
    if isinstance(config, dict):
        _translate_framework(exp, config, changes, problems, given)
        _translate_config(exp, config, algo_defaults, changes, problems, given)
        if isinstance(config.get("model"), dict):
            _translate_model(exp, config["model"], changes, problems, given)
        if isinstance(config.get("env_config"), dict):
            _translate_env(exp, config["env_config"], changes, problems)
        if changes:
            _translate_batch(config, algo_defaults, changes)
        if changes and "framework" not in config:
            # Every 2020 file was written under Ray 0.8's default framework, TensorFlow; RLlib 2.60's is torch.
            config["framework"] = "tf"
            changes.append(Change(("config", "framework"), "add", None, ("config", "framework"), "tf",
                                  "the file uses 2020 names and sets no framework: Ray 0.8's default was tf, "
                                  "RLlib 2.60's is torch"))
    exp.changes.extend(changes)
    exp.notes.extend(c.note() for c in changes)
    for c in changes:
        if c.action in ("rename", "move") and c.new_path:
            exp.written_as[".".join(c.new_path)] = ".".join(c.path)
    if own:
        problems.raise_if_any()
    return changes


def _override_paths(exp):
    return {text.partition("=")[0] for text in exp.overrides}


@functools.cache
def _algo_defaults_cached(run):
    from registry import algorithm_class

    return algorithm_class(run).get_default_config().to_dict()


def _algo_defaults(run):
    from utils.algorithm_support import REFUSED

    if not isinstance(run, str) or run in REFUSED:  # refused by validation; building their defaults is noisy
        return {}
    try:
        return dict(_algo_defaults_cached(run))
    except Exception:  # noqa: BLE001  (an unknown algorithm is reported by validation)
        return {}


def _where(exp, path):
    return f"{exp.path}: {'.'.join(path)}"


def _rename(exp, node, prefix, old, new, why, changes, problems, given):
    """node[old] -> node[new]; a command-line override under either name wins over the file's value."""
    value = node[old]
    old_path, new_path = (*prefix, old), (*prefix, new)
    if new in node:
        if ".".join(new_path) in given:
            node.pop(old)
            changes.append(Change(old_path, "drop", value, why=f"replaced by the command-line override {new}={_show(node[new])}"))
            return
        if ".".join(old_path) in given:
            node[new] = node.pop(old)
            changes.append(Change(old_path, "rename", value, new_path, why=f"the command-line override replaces the file's {new}"))
            return
        if node[new] == value:
            node.pop(old)
            changes.append(Change(old_path, "drop", value, why=f"the same value is also given as {new}"))
            return
        problems.add(UserError(
            f"{_where(exp, old_path)}: {_show(value)} is the 2020 name of {'.'.join(new_path)}, which the file also sets "
            f"to {_show(node[new])}. Keep only {new}."))
        node.pop(old)
        return
    node[new] = node.pop(old)
    changes.append(Change(old_path, "rename", value, new_path, why=why))


def _drop(exp, node, prefix, key, rule, changes, problems):
    defaults, why, instead = rule
    value = node.pop(key)
    path = (*prefix, key)
    if _is_default(value, defaults):
        changes.append(Change(path, "drop", value, why=why))
    else:
        problems.add(UserError(f"{_where(exp, path)}: {_show(value)} no longer exists in RLlib 2.60 ({why}). "
                               f"Instead: {instead}."))


def _is_default(value, defaults):
    for d in defaults:
        if isinstance(d, tuple) and isinstance(value, list) and tuple(value) == d:
            return True
        if type(value) is type(d) and value == d or value is None and d is None:
            return True
        if isinstance(d, dict) and isinstance(value, dict) and all(value.get(k) in (v, None, {}) for k, v in d.items()) \
                and set(value) <= set(d):
            return True
    return False


def _translate_experiment(exp, spec, changes, problems):
    from utils.config import EXPERIMENT_KEYS

    for key in list(spec):
        if key in EXPERIMENT_KEYS:
            continue
        if key in EXPERIMENT_DROPPED:
            defaults, instead = EXPERIMENT_DROPPED[key]
            value = spec.pop(key)
            if _is_default(value, defaults) or key == "local_dir" and str(value).startswith("~/ray_results"):
                changes.append(Change((key,), "drop", value, why=f"a Tune setting with no effect here; {instead}"))
            else:
                problems.add(UserError(f"{_where(exp, (key,))}: {_show(value)} is a Ray Tune setting this project "
                                       f"does not run. Instead: {instead}."))


def _translate_framework(exp, config, changes, problems, given):
    """use_pytorch / eager (Ray 0.8) -> framework. 2020's default framework was TensorFlow."""
    said = {}
    for key, means in (("use_pytorch", "torch"), ("eager", "tf2")):
        if key not in config:
            continue
        value = config.pop(key)
        if isinstance(value, bool):
            said[key] = value
        else:
            problems.add(UserError(f"{_where(exp, ('config', key))} must be true or false, not {value!r} "
                                   f"(true meant framework: {means})."))
    if not said:
        return
    framework = "torch" if said.get("use_pytorch") else "tf2" if said.get("eager") else "tf"
    current = config.get("framework")
    for key, value in said.items():
        path = ("config", key)
        if current is None:
            why = "2020's default framework was TensorFlow" if framework == "tf" else ""
            changes.append(Change(path, "replace", value, ("config", "framework"), framework, why))
            config["framework"] = current = framework
        elif not value or current == framework or "config.framework" in given:
            changes.append(Change(path, "drop", value, why=f"config.framework: {current} decides"))
        else:
            problems.add(UserError(f"{_where(exp, path)}: true means framework: {framework}, but the file also says "
                                   f"framework: {current}. Keep only framework."))


def _translate_batch(config, algo_defaults, changes):
    """Ray 0.8 sampled whole rounds of fragments: a train batch below one round trained on the round.

    RLlib 2.60 refuses such a batch (the starter kit's example: 1 runner x 2 envs x 200 steps for a batch of 200,
    which Ray 0.8 trained as 400), so the batch becomes the round, as 2020 ran it."""
    def setting(key):
        value = config.get(key, algo_defaults.get(key))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    runners, envs, fragment, batch = (setting(k) for k in ("num_env_runners", "num_envs_per_env_runner",
                                                            "rollout_fragment_length", "train_batch_size"))
    if None in (runners, envs, fragment, batch) or min(envs, fragment, batch) < 1 or "train_batch_size" not in config:
        return
    one_round = max(runners, 1) * envs * fragment
    if batch < one_round:
        config["train_batch_size"] = one_round
        changes.append(Change(("config", "train_batch_size"), "replace", batch, ("config", "train_batch_size"), one_round,
                              f"Ray 0.8 trained on whole rounds of {max(runners, 1)} runners x {envs} envs x {fragment} steps; "
                              "RLlib 2.60 refuses a batch below one round"))


def _placeholder(key, algo_defaults):
    """True when RLlib 2.60 keeps `key` for this algorithm only as a deprecated placeholder (or not at all)."""
    if key not in algo_defaults:
        return True
    value = algo_defaults[key]
    return type(value) is int and value == DEPRECATED_VALUE


def _translate_config(exp, config, algo_defaults, changes, problems, given):
    for key in list(config):
        if key in RENAMED and _placeholder(key, algo_defaults):
            new, why = RENAMED[key]
            _rename(exp, config, ("config",), key, new, "", changes, problems, given)
        elif key in DROPPED and (_placeholder(key, algo_defaults) or not algo_defaults):
            _drop(exp, config, ("config",), key, DROPPED[key], changes, problems)
        elif key in REFUSED and _placeholder(key, algo_defaults):
            what, instead = REFUSED[key]
            value = config.pop(key)
            run = exp.spec.get("run")
            problems.add(UserError(f"{_where(exp, ('config', key))}: {_show(value)} is {what} that run: {run} in RLlib "
                                   f"2.60 does not have. Instead: {instead}."))
        elif key == "vf_share_layers" and _placeholder(key, algo_defaults):
            value = config.pop(key)
            model = config.setdefault("model", {})
            if isinstance(model, dict) and model.get("vf_share_layers", not value) == value:
                changes.append(Change(("config", key), "drop", value, why="config.model.vf_share_layers says the same"))
            elif isinstance(model, dict) and "vf_share_layers" in model:
                problems.add(UserError(f"{_where(exp, ('config', key))}: {_show(value)} disagrees with config.model."
                                       f"vf_share_layers: {_show(model['vf_share_layers'])}. Keep only the one in model."))
            elif isinstance(model, dict):
                model["vf_share_layers"] = value
                changes.append(Change(("config", key), "move", value, ("config", "model", "vf_share_layers"), value,
                                      "a model option in RLlib 2.60, per PPOConfig.training's deprecation"))


def _translate_model(exp, model, changes, problems, given):
    prefix = ("config", "model")
    for key in list(model):
        if key in MODEL_RENAMED:
            new, _ = MODEL_RENAMED[key]
            _rename(exp, model, prefix, key, new, "", changes, problems, given)
        elif key in MODEL_DROPPED:
            _drop(exp, model, prefix, key, MODEL_DROPPED[key], changes, problems)
        elif key == "lstm_use_prev_action_reward":
            value = model.pop(key)
            if not isinstance(value, bool):
                problems.add(UserError(f"{_where(exp, (*prefix, key))} must be true or false, not {value!r}."))
            elif not value:
                changes.append(Change((*prefix, key), "drop", value,
                                      why="lstm_use_prev_action and lstm_use_prev_reward are false by default"))
            else:
                model["lstm_use_prev_action"] = model["lstm_use_prev_reward"] = True
                changes.append(Change((*prefix, key), "replace", value, (*prefix, "lstm_use_prev_action"), True,
                                      "ModelCatalog: split into lstm_use_prev_action and lstm_use_prev_reward, both true"))
                changes.append(Change((*prefix, key), "add", value, (*prefix, "lstm_use_prev_reward"), True,
                                      "the other half of lstm_use_prev_action_reward"))


def _translate_env(exp, env_config, changes, problems):
    prefix = ("config", "env_config")
    for key in list(env_config):
        if key in GRADER_ENV_KEYS:
            value = env_config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.add(UserError(f"{_where(exp, (*prefix, key))} must be a number (the 2020 kit's normalization "
                                       f"constant), not {value!r}."))
                env_config.pop(key)
                continue
            env_config.pop(key)
            changes.append(Change((*prefix, key), "keep", value, why=_grader_why(env_config, key, value)))
        elif key in ENV_DROPPED:
            _drop(exp, env_config, prefix, key, ENV_DROPPED[key], changes, problems)


def _grader_why(env_config, key, value):
    from envs.games import GAMES

    game = GAMES.get(env_config.get("env_name", "coinrun"))
    hard = env_config.get("distribution_mode") == "hard"
    ours = None
    if game is not None:
        ours = {"return_min": None, "return_blind": game.hard_min if hard else game.easy_min,
                "return_max": game.hard_max if hard else game.easy_max}[key]
    why = "the 2020 kit's normalization constant; scores use envs/games.py's constants"
    if ours is not None and ours != value:
        why += f"; {ours:g} for this game, not {value:g}"
    return why


# --------------------------------------------------------------------------------------------- hints

# Algorithms whose settings a 2020 file may carry under the wrong `run:` (checked in this order).
_OTHER_ALGORITHMS = ("PPO", "APPO", "IMPALA", "DQN", "SAC", "MARWIL", "BC", "CQL")


def unknown_key_hint(exp, key, defaults, prefix):
    """' Did you mean ...' among keys of the same kind (algorithm setting, model option, a model's own option)."""
    from utils.errors import closest

    if prefix == "config.model.custom_model_config":
        name = exp.config.get("model", {}).get("custom_model")
        if not defaults:
            return f" {name} takes no options (its DEFAULT_CONFIG is empty)."
        return f"{closest(key, defaults)} {name}'s options: {', '.join(sorted(defaults))}."
    public = [k for k in defaults if not str(k).startswith("_") and not _is_placeholder_value(defaults[k])]
    if prefix == "config.model":
        return closest(key, public) or " See RLlib's model options (MODEL_DEFAULTS in ray/rllib/models/catalog.py)."
    owners = _algorithms_with(key, exp.spec.get("run"))
    if owners:
        return (f" It is a setting of {', '.join(owners)}, not of run: {exp.spec.get('run')}. "
                "Remove it, or change run.")
    return closest(key, public) or " See RLlib's AlgorithmConfig for the key names."


def _is_placeholder_value(value):
    return type(value) is int and value == DEPRECATED_VALUE


def _algorithms_with(key, run):
    owners = []
    for name in _OTHER_ALGORITHMS:
        if name == run:
            continue
        defaults = _algo_defaults(name)
        if key in defaults and not _is_placeholder_value(defaults[key]):
            owners.append(name)
    return owners
