"""ProcgenPPO (the Procgen paper's PPO on RLlib): its loss terms and reward scaling against hand-computed
values in both frameworks, one tiny training iteration per framework, and the curve tool."""

import json
import math

import numpy as np
import pytest

from algorithms.procgen_ppo import losses
from algorithms.procgen_ppo.reward_scaling import ReturnScaler
from tests.conftest import ROOT, hang_ceiling, run_script

# v, v_old, R and c = 0.2, by hand: item 1 moves +0.5 from v_old, so v_clipped = 0.7: max((1-2)^2, (0.7-2)^2) = 1.69;
# item 2 moves -0.5, so v_clipped = 0.3: max(0^2, 0.3^2) = 0.09. Loss = 0.5 * mean(1.69, 0.09) = 0.445.
VALUES, OLD_VALUES, TARGETS, CLIP, VALUE_LOSS = [1.0, 0.0], [0.5, 0.5], [2.0, 0.0], 0.2, 0.445
# RLlib 2.60's PPO on the same numbers: mean(clamp((v - R)^2, 0, 0.2)) = mean(0.2, 0) = 0.1 (no 0.5 factor).
RLLIB_VALUE_LOSS = 0.1
# (a - 2.5) / sqrt(1.25): the population std of [1, 2, 3, 4] is sqrt(1.25).
ADVANTAGES = [1.0, 2.0, 3.0, 4.0]
NORMALIZED = [-1.5 / math.sqrt(1.25), -0.5 / math.sqrt(1.25), 0.5 / math.sqrt(1.25), 1.5 / math.sqrt(1.25)]


def torch_value(fn, *arrays, **kwargs):
    import torch

    return fn(*(torch.tensor(a, dtype=torch.float32) for a in arrays), **kwargs).numpy()


def tf_value(fn, *arrays, **kwargs):
    import tensorflow as tf

    out = fn(*(tf.constant(a, dtype=tf.float32) for a in arrays), **kwargs)
    if tf.executing_eagerly():
        return out.numpy()
    with tf.compat.v1.Session() as session:
        return session.run(out)


@pytest.mark.parametrize("evaluate, suffix", [(torch_value, "torch"), (tf_value, "tf")])
def test_value_loss_clips_the_prediction_like_ppo2(evaluate, suffix):
    loss = evaluate(getattr(losses, f"value_loss_{suffix}"), VALUES, OLD_VALUES, TARGETS, clip=CLIP)
    assert loss == pytest.approx(VALUE_LOSS, rel=1e-6)
    assert loss != pytest.approx(RLLIB_VALUE_LOSS)
    # Within the clip range the loss is the plain 0.5 * squared error.
    near = evaluate(getattr(losses, f"value_loss_{suffix}"), [0.6, 0.4], OLD_VALUES, TARGETS, clip=CLIP)
    assert near == pytest.approx(0.5 * ((0.6 - 2.0) ** 2 + 0.4**2) / 2, rel=1e-6)


@pytest.mark.parametrize("evaluate, suffix", [(torch_value, "torch"), (tf_value, "tf")])
def test_advantages_are_normalized_per_minibatch(evaluate, suffix):
    out = evaluate(getattr(losses, f"normalize_advantages_{suffix}"), ADVANTAGES)
    np.testing.assert_allclose(out, NORMALIZED, rtol=1e-5)


@pytest.mark.parametrize("evaluate, suffix", [(torch_value, "torch"), (tf_value, "tf")])
def test_clip_fraction_counts_ratios_outside_the_clip_range_like_ppo2(evaluate, suffix):
    # |r - 1| > 0.2 for 1.3, 0.7 and 1.25; 1.0 and 1.1 lie inside the clip range.
    fraction = evaluate(getattr(losses, f"clip_fraction_{suffix}"), [1.3, 0.7, 1.0, 1.1, 1.25], clip=CLIP)
    assert fraction == pytest.approx(3 / 5)
    assert evaluate(getattr(losses, f"clip_fraction_{suffix}"), [1.0, 1.0], clip=CLIP) == 0


def test_reward_scaling_divides_by_the_running_std_of_the_discounted_return():
    scaler = ReturnScaler(gamma=0.5, clip=10.0)
    # Returns of the fragment: 1, 0.5 * 1 + 1 = 1.5. Running stats from (mean 0, var 1, count 1e-4).
    scaled = scaler.scale("episode", [1.0, 1.0], episode_ends=False)
    count = 1e-4 + 2
    mean = 1.25 * 2 / count
    var = (1.0 * 1e-4 + 0.0625 * 2 + 1.25**2 * 1e-4 * 2 / count) / count
    assert scaler.get_state() == pytest.approx({"mean": mean, "var": var, "count": count})
    np.testing.assert_allclose(scaled, [1 / math.sqrt(var + 1e-8)] * 2, rtol=1e-6)
    # The open episode's return carries into its next fragment (0.5 * 1.5 + 2 = 2.75), then resets at its end.
    scaler.scale("episode", [2.0], episode_ends=True)
    assert scaler.mean == pytest.approx((1.25 * 2 + 2.75) / (count + 1))
    assert "episode" not in scaler._open_returns


def test_reward_scaling_matches_the_variance_of_all_returns_and_clips():
    rng = np.random.default_rng(0)
    scaler, returns = ReturnScaler(gamma=0.9), []
    for episode in range(20):
        rewards, ret = rng.normal(size=30), 0.0
        for r in rewards:
            ret = 0.9 * ret + r
            returns.append(ret)
        scaler.scale(episode, rewards[:10], episode_ends=False)
        scaler.scale(episode, rewards[10:], episode_ends=True)
    assert scaler.var == pytest.approx(np.var(returns), rel=1e-3)
    assert scaler.mean == pytest.approx(np.mean(returns), rel=1e-3, abs=1e-4)
    tiny = ReturnScaler(clip=10.0)
    tiny.set_state({"mean": 0.0, "var": 1e-6, "count": 1e9})
    assert list(tiny.scale("e", [100.0, -100.0], episode_ends=True)) == [10.0, -10.0]


def test_merged_scaler_states_equal_one_scaler_over_all_values():
    from algorithms.procgen_ppo.reward_scaling import merge_states

    rng = np.random.default_rng(1)
    parts = [rng.normal(loc=i, size=50 + 10 * i) for i in range(3)]
    scalers = []
    for values in parts:
        scaler = ReturnScaler()
        scaler.update(values)
        scalers.append(scaler.get_state())
    merged = merge_states(scalers)
    everything = np.concatenate(parts)
    assert merged["count"] == pytest.approx(everything.size + 3e-4)
    assert merged["mean"] == pytest.approx(everything.mean(), rel=1e-4)
    assert merged["var"] == pytest.approx(everything.var(), rel=1e-4)
    assert merge_states(scalers[:1]) == scalers[0]


def test_procgen_ppo_refuses_what_its_loss_cannot_do():
    from algorithms.procgen_ppo.procgen_ppo import ProcgenPPOConfig

    for settings, fragment in (({"framework": "tf2"}, "framework torch or tf"),
                               ({"model": {"use_lstm": True}}, "no recurrent loss"),
                               ({"vf_clip_param": 0.0}, "vf_clip_param must be > 0")):
        config = ProcgenPPOConfig().api_stack(enable_rl_module_and_learner=False,
                                              enable_env_runner_and_connector_v2=False)
        config.update_from_dict(settings)
        with pytest.raises(ValueError, match=fragment):
            config.validate()


def test_run_ppo_with_vf_clip_param_notes_the_changed_meaning():
    from utils.config import load_experiment

    exp = load_experiment(ROOT / "experiments" / "learning-check.yaml", ["run=PPO"], cpus=2, gpus=0)
    assert any("vf_clip_param 0.2 with run: PPO" in note and "ProcgenPPO" in note for note in exp.notes)
    exp = load_experiment(ROOT / "experiments" / "learning-check.yaml", [], cpus=2, gpus=0)
    assert exp.run == "ProcgenPPO" and not any("vf_clip_param" in note for note in exp.notes)


def test_run_ppo_on_tf_with_grad_clip_notes_that_rllib_does_not_apply_it():
    from utils.config import load_experiment

    check = ROOT / "experiments" / "learning-check.yaml"
    tf = ["framework=tf", "model.custom_model=impala_cnn_tf"]
    exp = load_experiment(check, ["run=PPO", *tf], cpus=2, gpus=0)
    assert any("grad_clip 0.5 with run: PPO and framework: tf is not applied" in note and "ProcgenPPO" in note
               for note in exp.notes)
    for overrides in (["run=PPO"], ["run=PPO", *tf, "grad_clip=null"], tf):  # torch clips; nothing to clip; ProcgenPPO
        exp = load_experiment(check, overrides, cpus=2, gpus=0)
        assert not any("grad_clip" in note for note in exp.notes), overrides
    # The contrast shipped for "Reproduce the paper" (the 2020 kit's baseline, run: PPO on TF) gets both notes.
    exp = load_experiment(ROOT / "reference" / "runs" / "rllib-ppo.yaml", cpus=2, gpus=0)
    assert exp.run == "PPO" and any(note.startswith("grad_clip 0.5 with run: PPO and framework: tf") for note in exp.notes)
    assert any(note.startswith("vf_clip_param 0.2 with run: PPO") for note in exp.notes)


@pytest.mark.timeout(hang_ceiling(2 * 1024, runs=2))
@pytest.mark.parametrize("framework, runners", [("torch", 1), ("tf", 0)])
def test_one_iteration_trains_reports_game_returns_and_keeps_the_scaler_in_checkpoints(tmp_path, framework, runners):
    # torch with one remote env runner: its statistics must reach the checkpoint and come back to the runner;
    # tf with none: the learner samples and its own statistics are saved.
    proc = run_script(ROOT / "tests" / "procgen_ppo_check.py", framework, tmp_path, runners, check=True)
    facts = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("FACTS "))[6:])
    assert facts["policy_class"] == {"torch": "ProcgenPPOTorchPolicy", "tf": "ProcgenPPOTFPolicy"}[framework]
    # bigfish pays whole points (1 a fish, 10 at the end): reported returns are the game's, not the scaled rewards,
    # which the running std (here well away from 1) would make fractional.
    assert facts["episode_returns"] and all(r == int(r) for r in facts["episode_returns"])
    (sampler,) = facts["sampler_scalers"]
    assert abs(sampler["var"] - 1.0) > 0.05
    assert sampler["count"] >= 1024, "every sampled step's return updates the running statistics"
    assert facts["scaler"] == pytest.approx(sampler), "the checkpoint holds the sampling runner's statistics"
    assert facts["restored_scaler"] == pytest.approx(sampler)
    assert facts["restored_runner_scalers"] == pytest.approx([sampler] * runners)
    assert facts["simple_optimizer"] is True, "minibatches reshuffled every epoch, as ppo2"
    assert facts["optimizer_epsilon"] == pytest.approx(1e-5)
    assert math.isfinite(facts["vf_loss"])
    # ppo2 clips the gradients by their global norm; RLlib 2.60's TF PPO policy does not clip at all.
    # The natural norm is far above GRAD_CLIP, so the applied gradients have exactly that global norm.
    assert facts["applied_grad_global_norm"] == pytest.approx(facts["grad_clip"], rel=1e-3)
    assert facts["grad_gnorm_stat"] == pytest.approx(facts["grad_clip"], rel=1e-3), "the norm applied, as torch reports"
    # KL(sampling policy || updated one) is reported although the loss has no KL penalty (ppo2's approxkl).
    assert facts["kl"] > 0, facts["kl"]
    # ppo2's clipfrac, a share of each minibatch: with clip_param 1e-9 every ratio that moved counts.
    assert 0 < facts["clip_fraction"] <= 1, facts["clip_fraction"]
