"""The resources model (utils/resources.py): pure functions, tested without Ray; then the resolved experiment
that feeds it (RLlib's defaults for the algorithm), with the two mis-fits the guessed defaults made."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from utils import resources
from utils.resources import Demand, demand, fit_machine, fragment_length, grader_check, spread_cluster


def make(runners=4, envs=16, per=1, driver=1, gpus=0.0, gpus_per=0.0, framework="tf", given=True, evaluation=0):
    return Demand(runners, envs, per, driver, gpus, gpus_per, framework, evaluation, given)


def test_the_model_needs_no_ray():
    code = "import sys; import utils.resources, utils.resolved, utils.conventions; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_demand_reads_resolved_settings_only():
    settings = {"num_env_runners": 6, "num_envs_per_env_runner": 12, "num_cpus_per_env_runner": 1,
                "num_cpus_for_main_process": 1, "num_gpus": 0.3, "num_gpus_per_env_runner": 0.1, "framework": "tf",
                "evaluation_interval": None, "evaluation_num_env_runners": 3}
    d = demand(settings.get, given={"num_env_runners": 6})
    assert (d.runners, d.envs_per_runner, d.cpus, d.games, d.runners_given) == (6, 12, 7, 72, True)
    assert d.gpu_shares == pytest.approx(0.9)
    settings["evaluation_interval"] = 5  # RLlib then starts its evaluation env runners too
    assert demand(settings.get).cpus == 10 and demand(settings.get).runners_given is False


def test_ppgs_auxiliary_buffer_is_counted_and_checked_against_memory():
    """n_pi x train_batch_size rows of a 64x64x3 uint8 frame and a float32 target (algorithms/ppg/aux_buffer.py)."""
    ppg = {"n_pi": 32, "n_aux_epochs": 6, "train_batch_size": 16384, "framework": "torch"}
    d = demand(ppg.get)
    assert (d.replayed_batches, d.train_batch, d.frame_bytes) == (32, 16384, 64 * 64 * 3)
    assert d.learner_buffer_bytes == 32 * 16384 * (64 * 64 * 3 + 4) == 6_444_548_096
    assert demand({**ppg, "n_aux_epochs": 0}.get).learner_buffer_bytes == 0, "no auxiliary phase, no buffer"
    assert demand({**ppg, "n_pi": "32"}.get).learner_buffer_bytes == 0, "a wrong type is PPG's validation's to name"
    assert demand({**ppg, "n_pi": True}.get).learner_buffer_bytes == 0
    assert demand({"train_batch_size": 16384}.get).learner_buffer_bytes == 0, "PPO keeps no replay"
    gib = 2**30
    assert resources.memory_check(d, 64 * gib) == (None, None)
    problem, note = resources.memory_check(d, 10 * gib, "this laptop")
    assert problem is None and note == ("PPG's auxiliary buffer needs 6.0 GiB (32 train batches (n_pi) x 16,384 frames x "
                                        "12,292 bytes): over half of the 10.0 GiB of memory this laptop has; if the "
                                        "run is killed for memory, lower n_pi")
    problem, note = resources.memory_check(d, 7 * gib, "this laptop", fix="or a bigger laptop")
    assert note is None and problem == (
        "PPG's auxiliary buffer needs 6.0 GiB (32 train batches (n_pi) x 16,384 frames x 12,292 bytes), over 80% of the "
        "7.0 GiB of memory this laptop has (Ray, the env runners and the learner need the rest). Lower n_pi (each "
        "auxiliary phase then replays fewer batches), or a bigger laptop.")
    assert resources.memory_check(demand({"train_batch_size": 16384}.get), 1) == (None, None)


def test_fit_machine_keeps_the_games_and_drops_gpus():
    fit = fit_machine(make(gpus=0.3), cpus=2, gpus=0)
    assert fit.overrides == {"num_env_runners": 1, "num_envs_per_env_runner": 64, "num_gpus": 0, "num_gpus_per_env_runner": 0}
    assert fit.notes[0].startswith("num_env_runners 4 -> 1 and num_envs_per_env_runner 16 -> 64: this machine has 2 CPUs")
    assert fit.notes[1] == "num_gpus 0.3 -> 0 and num_gpus_per_env_runner -> 0: this machine has 0 GPUs"
    assert fit.as_args()[:2] == ["num_env_runners=1", "num_envs_per_env_runner=64"]
    assert fit_machine(make(gpus=0.3), cpus=8, gpus=1).overrides == {}


def test_fit_machine_torch_rule_samples_in_the_learner():
    """Measured (README, Benchmark): where one runner would fit, torch samples in the learner; TF keeps it."""
    assert fit_machine(make(framework="torch"), 2, 0).overrides == {"num_env_runners": 0, "num_envs_per_env_runner": 64}
    assert fit_machine(make(framework="tf"), 2, 0).overrides == {"num_env_runners": 1, "num_envs_per_env_runner": 64}
    assert fit_machine(make(framework="torch"), 3, 0).overrides == {"num_env_runners": 2, "num_envs_per_env_runner": 32}


def test_fit_machine_leaves_a_learner_that_samples_itself_alone():
    assert fit_machine(make(runners=0, envs=8), cpus=1, gpus=0).overrides == {}


def test_spread_cluster_grows_runners_over_the_same_games():
    fit = spread_cluster(make(), total_cpus=40, head_gpus=1)
    assert fit.overrides == {"num_env_runners": 32, "num_envs_per_env_runner": 2}
    assert "40 CPUs in the cluster, still 64 games per sampling round" in fit.notes[0]
    assert "launch with --set num_gpus=1" in fit.notes[1]
    assert spread_cluster(make(), 16, 1).as_args() == ["num_env_runners=8", "num_envs_per_env_runner=8"]
    assert spread_cluster(make(), 2, 0).overrides == {}, "shrinking is fit_machine's (train.py's) work"
    assert spread_cluster(make(given=False, runners=2, envs=1), 40, 0).overrides == {}, "RLlib's default layout is kept"
    assert spread_cluster(make(gpus=2), 8, 1).overrides == {"num_gpus": 1}


def test_grader_rule_counts_the_evaluation_runner():
    kit = make(runners=6, envs=12, gpus=0.3, gpus_per=0.1)  # the 2020 kit: 6 runners x 12 envs
    check = grader_check(kit)
    assert check.ok and check.cpus == 8 and check.gpu_shares == pytest.approx(1.0), check.summary()
    assert check.summary() == "8 vCPUs (6 env runners + the grader's evaluation runner, x 1 each, + 1 for the learner) <= 8, 1 GPU <= 1"
    seven = grader_check(make(runners=7, envs=12))
    assert not seven.ok and seven.cpus == 9
    assert "9 vCPUs (7 env runners + the grader's evaluation runner, x 1 each, + 1 for the learner)" in seven.problems[0]
    assert "Lower config.num_env_runners to at most 6" in seven.problems[0]
    assert grader_check(make(runners=7, envs=12), evaluation_worker=False).ok
    gpus = grader_check(make(runners=6, gpus=0.5, gpus_per=0.1))  # 0.5 + 7 x 0.1: the evaluation runner's share counts
    assert not gpus.ok and "GPU shares sum to 1.2" in gpus.problems[0] and "7 runners" in gpus.problems[0]
    assert grader_check(make(runners=6, gpus=0.5, gpus_per=0.1), evaluation_worker=False).gpu_shares == pytest.approx(1.1)
    no_gpu = grader_check(make(runners=2, gpus=0.3), gpu=False)
    assert not no_gpu.ok and '"gpu": false' in no_gpu.problems[0]


def test_fragment_length_auto_as_rllib():
    assert fragment_length("auto", 4000, 2, 1) == 2000
    assert fragment_length("auto", 16384, 0, 64) == 256
    assert fragment_length(256, 16384, 4, 16) == 256


# --------------------------------------------------------------------------- the resolved experiment (Ray's defaults)


def write(tmp_path, body, name="x.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


PPO = """
exp:
  run: PPO
  env: procgen_env_wrapper
  stop: {timesteps_total: 1000}
  config:
    env_config: {env_name: bigfish}
    model: {custom_model: impala_cnn_torch}
    num_env_runners: 4
    num_envs_per_env_runner: 16
    rollout_fragment_length: 256
    train_batch_size: 16384
"""


def test_resolved_experiment_answers_from_rllib_defaults(tmp_path):
    from utils.config import load_experiment

    exp = load_experiment(write(tmp_path, PPO))
    assert (exp.runners, exp.envs_per_runner, exp.fragment_length, exp.train_batch) == (4, 16, 256, 16384)
    assert (exp.framework, exp.driver_cpus, exp.gpus, exp.gpus_per_runner, exp.game) == ("torch", 1, 0, 0, "bigfish")
    assert exp.run_dir("outs") == ROOT.__class__("outs") / "exp" / "bigfish"
    assert exp.evaluation_worker


def test_ppo_without_framework_fits_as_torch(tmp_path):
    """Mis-fit 1: `framework` left out resolves to RLlib's torch and is fitted exactly as `framework: torch`."""
    from utils.config import load_experiment

    implicit = load_experiment(write(tmp_path, PPO), cpus=2, gpus=0)
    explicit = load_experiment(write(tmp_path, PPO), ["framework=torch"], cpus=2, gpus=0)
    assert implicit.notes == explicit.notes and implicit.notes
    assert implicit.runners == explicit.runners == 0 and implicit.envs_per_runner == 64


def test_dqn_keeps_rllibs_zero_env_runners(tmp_path):
    """Mis-fit 2: DQN's RLlib default is 0 env runners; fitting must not give it one. (DQN itself is now refused
    up front, utils/algorithm_support.py; RandomPolicy's AlgorithmConfig has the same default of 0.)"""
    from utils.config import load_experiment

    body = """
    exp:
      run: RandomPolicy
      env: procgen_env_wrapper
      stop: {timesteps_total: 1000}
      config:
        env_config: {env_name: coinrun}
    """
    exp = load_experiment(write(tmp_path, body), cpus=2, gpus=0)
    assert exp.runners == 0 and "num_env_runners" not in exp.config
    assert not any("num_env_runners" in n for n in exp.notes), exp.notes


def test_impala_default_gpu_is_fitted(tmp_path):
    """RLlib's IMPALA asks for 1 GPU by default: on a machine without one that share is dropped, with a note."""
    from utils.config import load_experiment

    body = PPO.replace("run: PPO", "run: IMPALA")
    exp = load_experiment(write(tmp_path, body), cpus=8, gpus=0)
    assert exp.config["num_gpus"] == 0 and any(n.startswith("num_gpus 1 -> 0") for n in exp.notes)


def test_disable_evaluation_worker_is_a_top_level_key(tmp_path):
    from utils.config import load_experiment
    from utils.errors import UserError

    body = PPO.replace("  run: PPO", "  run: PPO\n  disable_evaluation_worker: true")
    exp = load_experiment(write(tmp_path, body))
    assert exp.evaluation_worker is False and exp.spec["disable_evaluation_worker"] is True
    with pytest.raises(UserError, match=r"disable_evaluation_worker must be true or false, not 'yes please'"):
        load_experiment(write(tmp_path, body.replace("true", "yes please")))


def test_ppgs_buffer_is_sized_from_the_experiments_own_env_and_stop(tmp_path):
    """load_experiment(memory=...) (train.py passes this machine's, as Ray counts it): the frame size is the env's
    (a frame stack of 4 holds 4 frames a row), and a run that stops before n_pi batches never holds n_pi."""
    from utils.config import load_experiment
    from utils.errors import UserError

    gib, ppg = 2**30, ROOT / "experiments" / "ppg.yaml"
    with pytest.raises(UserError, match=r"^.*experiments/ppg.yaml: PPG's auxiliary buffer needs 6.0 GiB \(32 train batches "
                                        r"\(n_pi\) x 16,384 frames x 12,292 bytes\), over 80% of the 4.0 GiB of memory "
                                        r"this machine has .* Lower n_pi .*, or run on a machine with more memory\.$"):
        load_experiment(ppg, cpus=2, gpus=0, memory=4 * gib)
    noted = load_experiment(ppg, cpus=2, gpus=0, memory=8 * gib)
    assert any(n.startswith("PPG's auxiliary buffer needs 6.0 GiB") and "if the run is killed for memory" in n
               for n in noted.notes), noted.notes
    assert not [n for n in load_experiment(ppg, cpus=2, gpus=0, memory=64 * gib).notes if "auxiliary" in n]
    with pytest.raises(UserError, match=r"needs 24.0 GiB \(32 train batches \(n_pi\) x 16,384 frames x 49,156 bytes\)"):
        load_experiment(ppg, ["env=stacked_procgen_env", "env_config.frame_stack=4"], cpus=2, gpus=0, memory=24 * gib)
    short = load_experiment(ppg, ["stop.timesteps_total=100000"], cpus=2, gpus=0, memory=4 * gib)  # 7 batches: 1.3 GiB
    assert not [n for n in short.notes if "auxiliary" in n]
    with pytest.raises(UserError, match=r"needs 1.3 GiB \(7 train batches \(stop.timesteps_total 100,000 comes before n_pi\)"):
        load_experiment(ppg, ["stop.timesteps_total=100000"], cpus=2, gpus=0, memory=1 * gib)


def test_train_py_checks_ppgs_buffer_against_this_machines_memory():
    """The wiring: train.py refuses before Ray starts; here the 8M-step stop bounds the buffer to 489 batches."""
    proc = subprocess.run([sys.executable, "train.py", "-f", "experiments/ppg.yaml", "n_pi=100000", "--progress-bar", "off"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith("error: experiments/ppg.yaml: PPG's auxiliary buffer needs 91.7 GiB (489 train batches "
                                  "(stop.timesteps_total 8,000,000 comes before n_pi) x 16,384 frames"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "resolved config" not in proc.stdout


def test_accessors_before_validation_say_so():
    from utils.config import Experiment

    exp = Experiment("x", "x.yaml", {"run": "PPO", "config": {}})
    with pytest.raises(RuntimeError, match="no RLlib defaults yet"):
        exp.setting("num_env_runners")
    assert resources.GRADER_CPUS == 8
