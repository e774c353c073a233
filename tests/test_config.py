"""Config loading, overrides, old-name mapping, resource fitting and every user error."""

import textwrap

import pytest

from tests.conftest import ROOT, run_script
from utils.config import build_algorithm_config, load_experiment
from utils.errors import UserError

BASELINE = ROOT / "experiments" / "impala-baseline.yaml"
BASELINE_TORCH = ROOT / "experiments" / "impala-baseline-torch.yaml"

MINIMAL = """
exp:
  run: PPO
  env: procgen_env_wrapper
  stop: {timesteps_total: 1000}
  config:
    env_config: {env_name: coinrun}
    framework: torch
    model: {custom_model: impala_cnn_torch}
    num_env_runners: 0
"""


def error_of(path, overrides=(), **kw):
    with pytest.raises(UserError) as info:
        load_experiment(path, overrides, **kw)
    return str(info.value)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "experiments").glob("*.yaml")))
def test_shipped_experiments_validate_and_build(name):
    exp = load_experiment(ROOT / "experiments" / name, cpus=2, gpus=0)
    algo_config = build_algorithm_config(exp)
    assert algo_config.env == exp.spec["env"]
    assert algo_config.env_config["_num_envs"] == exp.config["num_envs_per_env_runner"]


def test_baseline_keeps_starter_kit_values():
    exp = load_experiment(BASELINE)
    c = exp.config
    assert (c["gamma"], c["lambda"], c["lr"], c["num_epochs"], c["minibatch_size"], c["train_batch_size"]) == (
        0.999, 0.95, 5e-4, 3, 2048, 16384)
    assert (c["kl_coeff"], c["vf_loss_coeff"], c["entropy_coeff"], c["clip_param"], c["vf_clip_param"], c["grad_clip"]) == (
        0.0, 0.5, 0.01, 0.2, 0.2, 0.5)
    assert c["rollout_fragment_length"] == 256 and exp.stop == {"timesteps_total": 8000000}
    assert c["env_config"]["distribution_mode"] == "easy" and c["env_config"]["env_name"] == "coinrun"
    assert exp.run == "ProcgenPPO" and (c["reward_scaling"], c["reward_scaling_gamma"], c["reward_clip"]) == (True, 0.99, 10.0)
    assert c["model"]["custom_model"] == "impala_cnn_tf"


def test_fitting_to_two_cpus_keeps_train_batch():
    exp = load_experiment(BASELINE, cpus=2, gpus=0)
    c = exp.config
    assert c["num_env_runners"] == 1 and c["num_envs_per_env_runner"] == 64 and c["num_gpus"] == 0
    assert c["num_env_runners"] * c["num_envs_per_env_runner"] * c["rollout_fragment_length"] == c["train_batch_size"]
    assert any("num_gpus 0.3 -> 0" in n for n in exp.notes)
    assert any("num_env_runners 4 -> 1" in n for n in exp.notes)


def test_fitting_torch_to_two_cpus_samples_in_the_learner_process():
    # The measured-faster setting for torch when only one env runner would fit (README, Benchmark).
    exp = load_experiment(BASELINE_TORCH, cpus=2, gpus=0)
    c = exp.config
    assert c["num_env_runners"] == 0 and c["num_envs_per_env_runner"] == 64
    assert c["num_envs_per_env_runner"] * c["rollout_fragment_length"] == c["train_batch_size"]
    assert any("num_env_runners 4 -> 0" in n and "with torch" in n for n in exp.notes)
    # An explicit choice that fits is the user's, not the fitting's.
    exp = load_experiment(BASELINE_TORCH, ["num_env_runners=1", "num_envs_per_env_runner=64"], cpus=2, gpus=0)
    assert exp.config["num_env_runners"] == 1


def test_fitting_leaves_a_big_machine_alone():
    exp = load_experiment(BASELINE, cpus=8, gpus=1)
    assert exp.config["num_env_runners"] == 4 and exp.config["num_gpus"] == 0.3 and not exp.notes


def test_overrides_by_dotted_path_are_typed_like_yaml():
    exp = load_experiment(BASELINE, ["env_config.env_name=bigfish", "stop.timesteps_total=5000", "lr=0.001",
                                     "model.custom_model_config.depths=[8, 16, 16]", "config.gamma=0.99"])
    assert exp.env_name == "bigfish"
    assert exp.stop["timesteps_total"] == 5000
    assert exp.config["lr"] == 0.001 and exp.config["gamma"] == 0.99
    assert exp.config["model"]["custom_model_config"]["depths"] == [8, 16, 16]
    assert "config.env_config.env_name=bigfish" in exp.overrides


def test_exponents_without_a_dot_are_numbers_in_files_and_overrides(tmp_path):
    # YAML 1.2 reads 5e-4 as a float; PyYAML (YAML 1.1) would give the string '5e-4' and the type check would refuse it.
    text = BASELINE.read_text().replace("lr: 5.0e-4", "lr: 5e-4")
    assert "lr: 5e-4" in text
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    exp = load_experiment(path, ["adam_epsilon=1e-8", "stop.timesteps_total=2e6"])
    assert exp.config["lr"] == 5e-4 and exp.config["adam_epsilon"] == 1e-8 and exp.stop["timesteps_total"] == 2e6


@pytest.mark.parametrize("override, expected", [
    ("lr", "not KEY=VALUE"),
    ("env_config.env_name=bigfsh", 'Did you mean "bigfish"'),
    ("num_epochs=three", "must be an integer"),
    ("stop.timestep_total=5", 'Did you mean "timesteps_total"'),
    ("train_batch_size=0", "must be >= 1"),
    ("num_env_runners=-1", "must be >= 0"),
    ("model.custom_model=impala_cnn", 'Did you mean "impala_cnn_tf"'),
    ("model.custom_model_config.depth=[1]", 'Did you mean "depths"'),
    ("framework=jax", "Unknown framework"),
    ("model.custom_model=impala_cnn_torch", "impala_cnn_torch is a torch model but framework is tf"),
    ("model.custom_preprocessor=MyPreprocesor", 'Did you mean "MyPreprocessor"'),
    ("env_config.distribution_mode=medium", "distribution_mode"),
    ("env_config.num_levels=-3", "num_levels"),
    ("gamma=1.5", "(0, 1]"),
    ("lr=0", "lr must be > 0"),
])
def test_bad_overrides_are_refused_by_name(override, expected):
    assert expected in error_of(BASELINE, [override])


def test_old_starter_kit_names_are_mapped_with_notes(write_yaml):
    path = write_yaml("""
    old:
      run: PPO
      env: procgen_env_wrapper
      stop: {timesteps_total: 1000}
      config:
        use_pytorch: true
        num_workers: 1
        num_envs_per_worker: 4
        num_sgd_iter: 2
        sgd_minibatch_size: 64
        num_cpus_per_worker: 1
        vf_share_layers: true
        horizon: null
        soft_horizon: false
        no_done_at_end: false
        model: {custom_model: impala_cnn_torch, custom_options: {dense_size: 64}}
    """.replace("\n    ", "\n"))
    exp = load_experiment(path)
    c = exp.config
    assert (c["framework"], c["num_env_runners"], c["num_envs_per_env_runner"], c["num_epochs"], c["minibatch_size"]) == (
        "torch", 1, 4, 2, 64)
    assert c["model"]["custom_model_config"] == {"dense_size": 64} and c["model"]["vf_share_layers"] is True
    assert "horizon" not in c and "use_pytorch" not in c
    assert any("num_sgd_iter is now config.num_epochs" in n for n in exp.notes)
    assert any("config.horizon: null dropped" in n for n in exp.notes)
    build_algorithm_config(exp)


def _yaml(text):
    return textwrap.dedent(text).lstrip()


ERROR_CASES = {
    "unknown_key": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    gama: 0.9"), ['"config.gama"', 'Did you mean "gamma"']),
    "unknown_top_key": (MINIMAL.replace("  run: PPO", "  run: PPO\n  chekpoint_freq: 3"), ['"chekpoint_freq"', 'Did you mean "checkpoint_freq"']),
    "wrong_type_bool": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    explore: True,"), ["config.explore must be true or false", "'True,'", "stray comma"]),
    "wrong_type_int": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: two"), ["config.num_env_runners must be an integer"]),
    "duplicate_key": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    num_env_runners: 1"), ['duplicate key "num_env_runners"', "line 10"]),
    "syntax": (MINIMAL.replace("stop: {timesteps_total: 1000}", "stop: {timesteps_total: 1000"), ["YAML syntax error", "line"]),
    "empty": ("# nothing here\n", ["is empty"]),
    "missing_run": (MINIMAL.replace("  run: PPO\n", ""), ["has no `run`"]),
    "unknown_algorithm": (MINIMAL.replace("run: PPO", "run: PPPO"), ['Unknown algorithm (run:) "PPPO"', 'Did you mean "PPO"']),
    "unknown_game": (MINIMAL.replace("env_name: coinrun", "env_name: coinrunn"), ['Unknown game "coinrunn"', 'Did you mean "coinrun"']),
    "unknown_env": (MINIMAL.replace("env: procgen_env_wrapper", "env: procgen_env"), ['Unknown env "procgen_env"', "procgen_env_wrapper"]),
    "unknown_mode": (MINIMAL.replace("env_name: coinrun", "env_name: coinrun, distribution_mode: eazy"), ["distribution_mode", "eazy", "easy"]),
    "unknown_model": (MINIMAL.replace("custom_model: impala_cnn_torch", "custom_model: resnet"), ['Unknown model "resnet"']),
    "zero_count": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    num_epochs: 0"), ["config.num_epochs must be >= 1, not 0"]),
    "negative_stop": (MINIMAL.replace("timesteps_total: 1000", "timesteps_total: -5"), ["stop.timesteps_total must be > 0"]),
    "removed_key_non_default": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    horizon: 500"), ["config.horizon: 500 no longer exists"]),
    "two_experiments": (MINIMAL + MINIMAL.replace("exp:", "exp2:"), ["expected one experiment", "2 top-level keys"]),
    "rllib_inconsistent_batch": (MINIMAL.replace("num_env_runners: 0", "num_env_runners: 0\n    train_batch_size: 1000\n    rollout_fragment_length: 300"), ["RLlib refused the config", "train_batch_size"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_each_user_error_names_the_problem(case, write_yaml):
    text, needles = ERROR_CASES[case]
    path = write_yaml(_yaml(text))
    if case == "rllib_inconsistent_batch":
        exp = load_experiment(path)
        with pytest.raises(UserError) as info:
            build_algorithm_config(exp)
        message = str(info.value)
    else:
        message = error_of(path)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert str(path) in message or case == "unknown_algorithm"


def test_missing_file_is_a_user_error(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope.yaml")


@pytest.mark.parametrize("case", ["unknown_key", "duplicate_key", "syntax", "unknown_game", "wrong_type_bool",
                                  "rllib_inconsistent_batch"])
def test_train_cli_prints_one_message_and_no_traceback(case, write_yaml, tmp_path):
    path = write_yaml(_yaml(ERROR_CASES[case][0]))
    proc = run_script("train.py", "-f", path, env={"OUTPUTS_DIR": str(tmp_path / "out")})
    assert proc.returncode == 2
    # Only the one error line: TF's, gym's and Ray's start-up noise is filtered out (utils/quiet.py).
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if line.startswith("error: ")], proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == "", proc.stderr + proc.stdout
    assert ERROR_CASES[case][1][0] in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing may be written for a config that fails validation"


def test_train_cli_refuses_bad_override(tmp_path):
    proc = run_script("train.py", "-f", BASELINE, "env_config.env_name=bigfsh", env={"OUTPUTS_DIR": str(tmp_path)})
    assert proc.returncode == 2 and 'Did you mean "bigfish"' in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_train_verbose_shows_what_quiet_hides(tmp_path):
    proc = run_script("train.py", "-f", BASELINE, "env_config.env_name=bigfsh", "--verbose", env={"OUTPUTS_DIR": str(tmp_path)})
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) > 1 and "Gym has been unmaintained" in proc.stderr
