"""Training improves the policy, not just runs: ProcgenPPO (the baseline's algorithm) on one fixed level
must beat the random policy clearly.

experiments/learning-check.yaml's `stop.episode_reward_mean` is the pass threshold and its
`stop.timesteps_total` the fail limit. The random policy's return on the same level is measured here,
in the same run, so the threshold's margin over random is checked too.
"""

import json

import pytest
import yaml

from tests.conftest import ROOT, hang_ceiling
from tests.test_train_e2e import progress_lines, train

LEARNING = ROOT / "experiments" / "learning-check.yaml"
RANDOM = ROOT / "experiments" / "random-policy.yaml"
RANDOM_STEPS = 30000
STEP_CAP = next(iter(yaml.safe_load(LEARNING.read_text()).values()))["stop"]["timesteps_total"]


@pytest.mark.timeout(hang_ceiling(RANDOM_STEPS + STEP_CAP, runs=2))
def test_ppo_beats_random_policy_on_a_fixed_level(tmp_path):
    (name, spec), = yaml.safe_load(LEARNING.read_text()).items()
    env_config = spec["config"]["env_config"]
    assert env_config["num_levels"] == 1, "the check runs on a single fixed level"
    threshold = spec["stop"]["episode_reward_mean"]
    game, level = env_config["env_name"], env_config["start_level"]

    baseline = train(tmp_path / "random", f"env_config.env_name={game}", "env_config.num_levels=1",
                     f"env_config.start_level={level}", f"stop.timesteps_total={RANDOM_STEPS}", experiment=RANDOM)
    random_return = progress_lines(baseline.stdout)[-1]["episode_reward_mean"]

    print(f"random_return: {random_return:.2f}")
    reached = learn(tmp_path, name, game, threshold)
    assert reached >= threshold
    assert threshold >= random_return + 0.25 * abs(random_return) + 1, (
        f"threshold {threshold} is not clearly above the random policy's {random_return:.2f} on this level")


def learn(tmp_path, name, game, threshold, *overrides):
    """Train learning-check.yaml (plus overrides); the last mean return, asserting it stopped at the threshold."""
    proc = train(tmp_path / "ppo", *overrides, experiment=LEARNING)
    rows = progress_lines(proc.stdout)
    summary = json.loads((tmp_path / "ppo" / "out" / name / game / "summary.json").read_text())
    print(f"threshold: {threshold}, reached: {rows[-1]['episode_reward_mean']:.2f} "
          f"at timesteps_total {rows[-1]['timesteps_total']:.0f} in {rows[-1]['time_total_s']:.0f}s")
    assert summary["stopped_by"] == "episode_reward_mean", f"did not reach {threshold} within the step cap: {rows[-1]}"
    return rows[-1]["episode_reward_mean"]


@pytest.mark.slow
@pytest.mark.timeout(hang_ceiling(STEP_CAP))
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bf16_trunk_still_learns_the_fixed_level(tmp_path, framework):
    # bf16 changes numerics, so it is opt-in; this is the evidence that it still learns (README, Benchmark).
    (name, spec), = yaml.safe_load(LEARNING.read_text()).items()
    learn(tmp_path, name, spec["config"]["env_config"]["env_name"], spec["stop"]["episode_reward_mean"],
          f"framework={framework}", f"model.custom_model=impala_cnn_{framework}", "model.custom_model_config.bf16=true")


# PPG (issue 16) on the same level: its two networks, one pass per batch as in the paper, no value or gradient clipping,
# and an auxiliary phase every 8 batches of 2048 (the paper's n_pi 32 would first come at 65536 steps).
PPG = ["run=PPG", "model.custom_model=ppg_impala_cnn_torch", "model.vf_share_layers=false", "num_epochs=1",
       "vf_clip_param=null", "grad_clip=null", "adam_epsilon=1e-8", "n_pi=8", "aux_minibatch_size=512"]


@pytest.mark.slow
@pytest.mark.timeout(hang_ceiling(STEP_CAP))
def test_ppg_learns_the_fixed_level(tmp_path):
    (name, spec), = yaml.safe_load(LEARNING.read_text()).items()
    learn(tmp_path, name, spec["config"]["env_config"]["env_name"], spec["stop"]["episode_reward_mean"], *PPG)
