"""2020 experiment files (Ray 0.8 / Tune / starter-kit names): every problem in one run, the key table checked
against RLlib 2.60, shapes of None-default keys, overrides under today's names, models/ discovery, migrate."""

import textwrap

import pytest

from tests.conftest import ROOT, run_script
from utils import legacy
from utils.config import build_algorithm_config, load_experiment
from utils.errors import UserError, UserErrors


def _yaml(text):
    return textwrap.dedent(text).lstrip()


def exp_text(config, run="PPO", top=""):
    """A tiny experiment with `config` (YAML lines, 4-space indented under config) and extra top-level keys."""
    return (f"exp:\n  run: {run}\n  env: procgen_env_wrapper\n  stop: {{timesteps_total: 1024}}\n{top}"
            "  config:\n    env_config: {env_name: coinrun, distribution_mode: easy}\n" + textwrap.indent(_yaml(config), "    "))


def messages(path, overrides=()):
    with pytest.raises(UserError) as info:
        load_experiment(path, overrides)
    error = info.value
    return error.messages if isinstance(error, UserErrors) else [str(error)]


# --------------------------------------------------------------------------- the shared cases, one kind each

SMALL_2020 = """
num_workers: 0
num_envs_per_worker: 4
rollout_fragment_length: 256
train_batch_size: 1024
sgd_minibatch_size: 256
"""


def test_deprecated_placeholder_keys_at_their_2020_values_are_dropped_with_notes(write_yaml):
    # Case deprecated-keys-with-2020-values.yaml: RLlib keeps these names only as placeholders (default -1).
    path = write_yaml(exp_text(SMALL_2020 + "synchronize_filters: True\nframework: torch\n"
                               "model: {custom_model: impala_cnn_torch, lstm_use_prev_action_reward: False}\n"))
    exp = load_experiment(path)
    assert "synchronize_filters" not in exp.config and "lstm_use_prev_action_reward" not in exp.config["model"]
    assert any(n.startswith("config.synchronize_filters: true dropped") for n in exp.notes)
    assert any(n.startswith("config.model.lstm_use_prev_action_reward: false dropped") for n in exp.notes)
    build_algorithm_config(exp)


def test_deprecated_placeholder_keys_with_other_values_are_refused_naming_the_replacement(write_yaml):
    path = write_yaml(exp_text(SMALL_2020 + "synchronize_filters: false\nframework: torch\nenable_connectors: true\n"
                               "model: {custom_model: impala_cnn_torch, lstm_use_prev_action_reward: true}\n"))
    found = messages(path)
    assert any("config.synchronize_filters: false no longer exists" in m and "update_worker_filter_stats: false" in m
               for m in found), found
    # A placeholder this project's table does not list is still never a type error.
    assert any("config.enable_connectors" in m and "deprecated placeholder" in m for m in found), found
    assert not any("must be an integer" in m for m in found), found


def test_lstm_use_prev_action_reward_true_maps_to_both_halves(write_yaml):
    path = write_yaml(exp_text(SMALL_2020 + "framework: torch\nmodel: {use_lstm: true, lstm_use_prev_action_reward: true}\n"))
    model = load_experiment(path).config["model"]
    assert model["lstm_use_prev_action"] is True and model["lstm_use_prev_reward"] is True


def test_override_under_todays_name_replaces_the_files_2020_name(write_yaml):
    # Case override-new-name-on-old-file.yaml, run with num_env_runners=1.
    path = write_yaml(exp_text(SMALL_2020 + "framework: torch\nmodel: {custom_model: impala_cnn_torch}\n"))
    exp = load_experiment(path, ["num_env_runners=1"])
    assert exp.config["num_env_runners"] == 1 and "num_workers" not in exp.config
    assert any("config.num_workers: 0 dropped (replaced by the command-line override num_env_runners=1)" in n
               for n in exp.notes)
    # And the other way round: an override under the 2020 name replaces the file's current name.
    path = write_yaml(exp_text("num_env_runners: 0\nframework: torch\n"), "new.yaml")
    assert load_experiment(path, ["num_workers=1"]).config["num_env_runners"] == 1


def test_both_names_in_the_file(write_yaml):
    path = write_yaml(exp_text("num_workers: 1\nnum_env_runners: 0\nframework: torch\n"))
    assert any("config.num_workers: 1 is the 2020 name of config.num_env_runners" in m for m in messages(path))
    path = write_yaml(exp_text("num_workers: 0\nnum_env_runners: 0\nframework: torch\n"), "same.yaml")
    assert any("the same value is also given as num_env_runners" in n for n in load_experiment(path).notes)


def test_schedule_written_as_text_is_refused_with_the_shape_and_an_example(write_yaml):
    # Case schedule-as-text.yaml: RLlib's default is None, so the type of the default says nothing.
    path = write_yaml(exp_text("framework: torch\nnum_env_runners: 0\nlr_schedule: linear\n"))
    (message,) = messages(path)
    assert "config.lr_schedule must be a list of [timestep, value] pairs" in message
    assert "not 'linear'" in message and "Example: lr_schedule: [[0, " in message


def test_use_pytorch_false_means_tensorflow(write_yaml):
    # Case use-pytorch-false.yaml.
    path = write_yaml(exp_text(SMALL_2020 + "use_pytorch: false\nmodel: {custom_model: impala_cnn_tf, custom_options: {}}\n"))
    exp = load_experiment(path)
    assert exp.config["framework"] == "tf"
    assert any(n.startswith("config.use_pytorch: false is now config.framework: tf") for n in exp.notes)


@pytest.mark.parametrize("config, framework, note", [
    ("use_pytorch: true\n", "torch", "config.use_pytorch: true is now config.framework: torch"),
    ("use_pytorch: false\nframework: torch\n", "torch", "config.framework: torch decides"),
    ("eager: true\n", "tf2", "config.eager: true is now config.framework: tf2"),
    ("num_workers: 0\n", "tf", "config.framework: tf added"),  # a 2020 file that never said: Ray 0.8 meant tf
])
def test_framework_of_a_2020_file(write_yaml, config, framework, note):
    exp = load_experiment(write_yaml(exp_text(config)))
    assert exp.config["framework"] == framework
    assert any(note in n for n in exp.notes), exp.notes


def test_framework_contradiction_is_a_question(write_yaml):
    path = write_yaml(exp_text("use_pytorch: true\nframework: tf\n"))
    assert any("true means framework: torch, but the file also says framework: tf" in m for m in messages(path))


# --------------------------------------------------------------------------- every problem in one run


MANY = """
num_workers: 0
num_sgd_iter: three
sgd_minibatch_size: 64
buffer_size: 50000
horizon: 500
gama: 0.9
vtrace: true
lr_schedule: linear
callbacks: callbacks.ProcgenCallbacks
framework: torch
model: {custom_model: impala_cnn_torch, custom_options: {depth: [16]}, conv_filters: [[16, 3]]}
"""


def test_every_problem_in_one_run_named_as_written(write_yaml):
    path = write_yaml(exp_text(MANY, top="  local_dir: /data/runs\n"))
    found = messages(path)
    expect = [
        "config.num_sgd_iter (now config.num_epochs) must be an integer, not 'three'",
        "config.buffer_size: 50000 is a DQN/SAC replay-buffer setting",
        "replay_buffer_config: {capacity: N}",
        "config.horizon: 500 no longer exists",
        'unknown key "config.gama". Did you mean "gamma"?',
        "config.vtrace",
        "It is a setting of APPO, IMPALA, not of run: PPO",
        "config.lr_schedule must be a list of [timestep, value] pairs",
        'write it as "callbacks:ProcgenCallbacks"',
        'unknown key "config.model.custom_options.depth". Did you mean "depths"?',
        "config.model.conv_filters must be a list of [out_channels, [kernel, kernel], stride]",
        "local_dir: /data/runs is a Ray Tune setting",
        "--outputs-dir DIR",
    ]
    text = "\n".join(found)
    for needle in expect:
        assert needle in text, f"{needle!r} not in:\n{text}"
    assert len(found) == 10, text
    # Hints stay within their kind: no replay-buffer key is offered an unrelated algorithm key.
    assert "shuffle_buffer_size" not in text and "evaluation_num_env_runners" not in text


def test_train_cli_lists_every_problem_then_a_count(write_yaml, tmp_path):
    path = write_yaml(exp_text(MANY))
    proc = run_script("train.py", "-f", path, env={"OUTPUTS_DIR": str(tmp_path / "out")})
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert all(line.startswith("error: ") for line in lines), proc.stderr
    assert lines[-1] == f"error: {len(lines) - 1} problems in {path}; fix them all, then run again.", proc.stderr
    assert len(lines) - 1 == 9 and not (tmp_path / "out").exists()


def test_duplicate_keys_are_all_reported_with_the_rest(write_yaml):
    path = write_yaml(exp_text("framework: torch\nobservation_filter: NoFilter\nnum_gpus_per_worker: 0.1\n"
                               "observation_filter: NoFilter\nnum_gpus_per_worker: 0\ngama: 1\n"))
    text = "\n".join(messages(path))
    assert 'duplicate key "observation_filter"' in text and "It repeats the same value" in text and "--migrate" in text
    assert 'duplicate key "num_gpus_per_worker"' in text and "The values differ" in text
    assert '"config.gama"' in text


# --------------------------------------------------------------------------- the table against RLlib 2.60


@pytest.mark.parametrize("run", ["PPO", "APPO", "IMPALA"])
def test_every_new_name_exists_in_rllib(run):
    defaults = legacy._algo_defaults(run)
    for old, (new, _) in legacy.RENAMED.items():
        if not legacy._placeholder(old, defaults):
            continue  # this algorithm still has the 2020 name as a real setting (PPO's use_critic, ...)
        if new in ("num_multi_gpu_tower_stacks",) and run == "PPO":
            continue  # an IMPALA/APPO setting
        assert new in defaults or new == "target_network_update_freq" and run != "APPO", (old, new)
    for new, _ in legacy.MODEL_RENAMED.values():
        assert new in defaults["model"]


@pytest.mark.parametrize("run", ["PPO", "APPO", "IMPALA"])
def test_every_rllib_placeholder_key_is_covered(run):
    """Each key RLlib 2.60 keeps only as DEPRECATED_VALUE is mapped, dropped or refused, never type-checked."""
    defaults = legacy._algo_defaults(run)
    placeholders = {k for k, v in defaults.items() if type(v) is int and v == legacy.DEPRECATED_VALUE}
    tabled = set(legacy.RENAMED) | set(legacy.DROPPED) | set(legacy.REFUSED) | {"vf_share_layers"}
    # Names RLlib itself introduced after 2020 and already retired: no 2020 file holds them; validation
    # refuses them as placeholders (test above).
    after_2020 = {"_disable_execution_plan_api", "_enable_rl_module_api", "always_attach_evaluation_results",
                  "auto_wrap_old_gym_envs", "custom_async_evaluation_function", "enable_async_evaluation",
                  "enable_connectors", "env_task_fn", "policy_map_cache", "worker_cls",
                  "max_requests_in_flight_per_aggregator_worker"}
    assert placeholders - tabled - after_2020 == set()
    model_placeholders = {k for k, v in defaults["model"].items() if type(v) is int and v == legacy.DEPRECATED_VALUE}
    assert model_placeholders <= set(legacy.MODEL_DROPPED) | {"lstm_use_prev_action_reward"}


@pytest.mark.parametrize("key, value, expected", [
    ("evaluation_num_episodes", 3, ("evaluation_duration", 3)),
    ("sample_batch_size", 128, ("rollout_fragment_length", 128)),
    ("min_iter_time_s", 0, ("min_time_s_per_iteration", 0)),
    ("metrics_smoothing_episodes", 10, ("metrics_num_episodes_for_smoothing", 10)),
    ("collect_metrics_timeout", 180, ("metrics_episode_collection_timeout_s", 180)),
    ("timesteps_per_iteration", 0, ("min_sample_timesteps_per_iteration", 0)),
])
def test_ray08_names_are_mapped(write_yaml, key, value, expected):
    path = write_yaml(exp_text(f"framework: torch\n{key}: {value}\n"))
    exp = load_experiment(path)
    assert exp.config[expected[0]] == expected[1] and key not in exp.config
    build_algorithm_config(exp)


@pytest.mark.parametrize("run, key, needle", [
    ("IMPALA", "num_data_loader_buffers: 1", "num_multi_gpu_tower_stacks"),
    ("IMPALA", "max_sample_requests_in_flight_per_worker: 2", "max_requests_in_flight_per_env_runner"),
])
def test_impala_names_are_mapped(write_yaml, run, key, needle):
    exp = load_experiment(write_yaml(exp_text(f"framework: torch\n{key}\n", run=run)))
    assert needle in exp.config


def test_prioritized_replay_names_the_replacement(write_yaml):
    path = write_yaml(exp_text("framework: torch\nprioritized_replay: true\nlearning_starts: 1000\n"))
    text = "\n".join(messages(path))
    assert "replay_buffer_config" in text and "num_steps_sampled_before_learning_starts" in text


@pytest.mark.parametrize("top, ok", [("  local_dir: ~/ray_results\n", True), ("  num_samples: 1\n", True),
                                     ("  num_samples: 4\n", False), ("  restore: /x/checkpoint_5\n", False)])
def test_tune_experiment_keys(write_yaml, top, ok):
    path = write_yaml(exp_text("framework: torch\n", top=top))
    if ok:
        assert any("a Tune setting with no effect here" in n for n in load_experiment(path).notes)
    else:
        assert "is a Ray Tune setting this project does not run" in messages(path)[0]


# --------------------------------------------------------------------------- the 2020 grader's keys (issue 13)


def test_grader_normalization_keys_are_taken_as_given_and_never_used(write_yaml):
    from envs.games import GAMES, normalized_score

    before = normalized_score("coinrun", 7.5)
    path = write_yaml(exp_text("framework: torch\n").replace(
        "distribution_mode: easy}", "distribution_mode: easy, return_min: 0, return_blind: 4, return_max: 10}"))
    exp = load_experiment(path)
    assert not {"return_min", "return_blind", "return_max"} & set(exp.config["env_config"])
    notes = "\n".join(exp.notes)
    assert "config.env_config.return_blind: 4 kept as given" in notes and "5 for this game, not 4" in notes
    assert "config.env_config.return_max: 10 kept as given" in notes
    assert normalized_score("coinrun", 7.5) == before and GAMES["coinrun"].easy_min == 5
    bad = write_yaml(exp_text("framework: torch\n").replace("easy}", "easy, return_max: high}"), "bad.yaml")
    assert "config.env_config.return_max must be a number" in messages(bad)[0]


def test_grader_written_config_keys_are_accepted(write_yaml):
    """What the 2020 train.py / evaluator added to a config: evaluation settings, log_sys_usage, the CLI flags'."""
    path = write_yaml(exp_text("use_pytorch: false\nlog_sys_usage: true\nevaluation_interval: 25\n"
                               "evaluation_num_workers: 1\nevaluation_num_episodes: 3\n"
                               "evaluation_config: {num_envs_per_worker: 1}\neager: false\nlog_level: INFO\n",
                               top="  disable_evaluation_worker: true\n"))
    exp = load_experiment(path)
    c = exp.config
    assert (c["framework"], c["evaluation_num_env_runners"], c["evaluation_duration"]) == ("tf", 1, 3)


# --------------------------------------------------------------------------- custom model files


RAY08_MODEL = '''
from ray.rllib.models import ModelCatalog
from ray.rllib.models.tf.tf_modelv2 import TFModelV2
from ray.rllib.utils.framework import try_import_tf

tf = try_import_tf()


class MyNet(TFModelV2):
    def __init__(self, obs_space, action_space, num_outputs, model_config, name):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        self.options = model_config["custom_options"]


ModelCatalog.register_custom_model("my_2020_net", MyNet)
'''


def test_a_model_file_in_models_is_found_by_its_registered_name(tmp_path):
    from utils.model_files import discover, ray08_problems

    (tmp_path / "fancy.py").write_text(RAY08_MODEL)
    (tmp_path / "plain_torch.py").write_text("import torch.nn as nn\nfrom ray.rllib.models.torch.torch_modelv2 import "
                                             "TorchModelV2\n\n\nclass Net(TorchModelV2, nn.Module):\n    pass\n")
    found = discover(known={}, models_dir=tmp_path)
    assert found == {"my_2020_net": ("models.fancy:MyNet", "tf"), "plain_torch": ("models.plain_torch:Net", "torch")}
    problems = [str(e) for e in ray08_problems("my_2020_net", found["my_2020_net"][0], models_dir=tmp_path)]
    assert any(p.startswith("models/fancy.py:6: model my_2020_net is written for Ray 0.8: `tf = try_import_tf()`")
               and "tf1, tf, tfv = try_import_tf()" in p for p in problems), problems
    assert any(p.startswith("models/fancy.py:12:") and 'model_config["custom_model_config"]' in p for p in problems)


def test_the_projects_own_models_are_clean_and_listed():
    from models import MODELS
    from utils.model_files import ray08_problems

    assert {"impala_cnn_tf", "impala_cnn_torch", "my_vision_network"} <= set(MODELS)
    assert all(not ray08_problems(name, spec) for name, (spec, _) in MODELS.items())


# --------------------------------------------------------------------------- migrate


KIT_STYLE = """\
procgen-ppo:
    env: procgen_env_wrapper  # Change this at your own risk :D
    run: PPO
    stop:
        timesteps_total: 2048
    checkpoint_freq: 100
    checkpoint_at_end: True
    config:
        env_config:
            env_name: coinrun
            distribution_mode: easy
        # Number of SGD iterations in each outer loop
        num_sgd_iter: 1
        sgd_minibatch_size: 512 # 2 minibatches per epoch
        train_batch_size: 1024
        observation_filter: NoFilter
        vf_share_layers: True
        horizon: null
        soft_horizon: False
        use_pytorch: False
        model:
            custom_model: impala_cnn_tf
            custom_options: {}
        num_workers: 0
        num_envs_per_worker: 4
        rollout_fragment_length: 256
        explore: True,
        observation_filter: "NoFilter"
        synchronize_filters: True
"""


def test_migrate_rewrites_comments_each_change_and_round_trips(tmp_path):
    from utils.migrate import main, migrate_text

    old = tmp_path / "old.yaml"
    old.write_text(KIT_STYLE)
    new = tmp_path / "new.yaml"
    assert main([str(old), str(new)]) == 0
    text = new.read_text()
    assert "num_epochs: 1  # was num_sgd_iter, its Ray 0.8 name" in text
    assert "minibatch_size: 512 # 2 minibatches per epoch  # was sgd_minibatch_size" in text
    assert "framework: tf  # was use_pytorch: false" in text
    assert "# horizon: null  # removed: procgen ends its episodes itself" in text
    assert "explore: true  # was 'True,'" in text
    assert '# observation_filter: "NoFilter"  # removed: repeats line 16' in text
    assert "            vf_share_layers: true  # was vf_share_layers" in text
    assert "# Number of SGD iterations in each outer loop" in text  # the user's comments stay
    exp = load_experiment(new)
    assert exp.config["framework"] == "tf" and exp.config["model"]["vf_share_layers"] is True
    assert not exp.changes  # nothing 2020 left
    assert old.read_text() == KIT_STYLE  # with NEW given, OLD is untouched
    again, notes, questions, changed = migrate_text(new)
    assert (again, notes, questions, changed) == (text, [], [], False)


def test_migrate_prints_the_notes_train_prints(tmp_path, capsys):
    from utils.migrate import main

    old = tmp_path / "case.yaml"
    old.write_text(exp_text(SMALL_2020 + "use_pytorch: false\nmodel: {custom_model: impala_cnn_tf, custom_options: {}}\n"))
    train_notes = load_experiment(old).notes
    assert main([str(old)]) == 0
    out = capsys.readouterr().out
    assert [line.removeprefix("note: ") for line in out.splitlines() if line.startswith("note: ")] == train_notes
    assert (tmp_path / "case.yaml.orig").exists() and "num_env_runners: 0" in old.read_text()
    assert "model: {custom_model: impala_cnn_tf, custom_model_config: {}}" in old.read_text()


def test_migrate_leaves_ambiguous_quirks_for_the_user(tmp_path, capsys):
    from utils.migrate import main

    old = tmp_path / "dup.yaml"
    old.write_text(exp_text("framework: tf\nnum_gpus_per_worker: 0.1\nnum_gpus_per_worker: 0\nhorizon: 200\n"))
    assert main([str(old), str(tmp_path / "new.yaml")]) == 2
    err = capsys.readouterr().err
    assert 'duplicate key "num_gpus_per_worker"' in err and "The values differ" in err
    assert "config.horizon: 200 no longer exists" in err
    assert "num_gpus_per_worker: 0.1\n" in (tmp_path / "new.yaml").read_text()


def test_run_sh_migrate(tmp_path):
    import subprocess

    old = tmp_path / "old.yaml"
    old.write_text(KIT_STYLE)
    proc = subprocess.run([str(ROOT / "run.sh"), "--migrate", str(old), str(tmp_path / "new.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "note: config.num_sgd_iter is now config.num_epochs" in proc.stdout and proc.stderr == ""
    missing = subprocess.run([str(ROOT / "run.sh"), "--migrate", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr


# --------------------------------------------------------------------------- every algorithm `run:` accepts


def test_algorithms_that_cannot_train_here_are_refused_up_front(write_yaml):
    from utils.algorithm_support import REFUSED

    for run in REFUSED:
        path = write_yaml(exp_text("framework: torch\n", run=run), f"{run}.yaml")
        (message,) = [m for m in messages(path) if "run:" in m]
        assert f"run: {run} cannot train here" in message and "Use PPO" in message


TINY_ALGORITHM = """
framework: torch
model: {custom_model: impala_cnn_torch, custom_model_config: {depths: [4], dense_size: 16}}
num_env_runners: 0
num_envs_per_env_runner: 2
rollout_fragment_length: 32
train_batch_size: 64
"""


def _accepted_algorithms():
    from registry import algorithm_names
    from utils.algorithm_support import REFUSED

    return sorted(set(algorithm_names()) - set(REFUSED))


@pytest.mark.slow
@pytest.mark.parametrize("run", _accepted_algorithms())
def test_every_accepted_algorithm_trains_one_tiny_iteration(run, write_yaml, tmp_path):
    """Each `run:` validation accepts trains one iteration, or RLlib's own check refuses it before anything
    is written (one error line); never a traceback."""
    config = TINY_ALGORITHM if run != "RandomPolicy" else "num_env_runners: 0\n"
    path = write_yaml(exp_text(config, run=run).replace("timesteps_total: 1024", "training_iteration: 1"))
    proc = run_script("train.py", "-f", path, "--outputs-dir", tmp_path / "out", "--progress-bar", "off")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if proc.returncode == 2:
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error: ") and "RLlib refused the config" in line, proc.stderr
        assert not (tmp_path / "out").exists()
    else:
        assert proc.returncode == 0 and "done: stopped by training_iteration" in proc.stdout, proc.stdout[-3000:]


def test_a_2020_batch_below_one_round_of_fragments_becomes_the_round(write_yaml):
    # The kit's procgen-starter-example: 1 worker x 2 envs x 200 steps for train_batch_size 200; Ray 0.8 trained
    # on the 400 it sampled, RLlib 2.60 refuses the config.
    path = write_yaml(exp_text("num_workers: 1\nnum_envs_per_worker: 2\nrollout_fragment_length: 200\n"
                               "train_batch_size: 200\nmodel: {custom_model: impala_cnn_tf}\n"))
    exp = load_experiment(path, cpus=2, gpus=0)
    assert exp.config["train_batch_size"] == 400
    assert any("config.train_batch_size: 200 is now config.train_batch_size: 400" in n for n in exp.notes)
    build_algorithm_config(exp)
