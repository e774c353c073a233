"""PPG (Phasic Policy Gradient, algorithms/ppg): its loss terms against hand-computed values, the auxiliary
buffer, the two-network model, the config's refusals, and a tiny end-to-end train + auxiliary phase +
checkpoint + resume + rollout."""

import json
import math

import numpy as np
import pytest

from algorithms.ppg import losses
from algorithms.ppg.aux_buffer import AuxBuffer
from tests.conftest import ROOT, hang_ceiling, run_script


def t(values):
    import torch

    return torch.tensor(values, dtype=torch.float32)


def test_policy_loss_is_ppos_clipped_surrogate():
    # ratio 1.5 with A = 1 clips to 1.2; ratio 0.5 with A = -2: min(-1, -1.6) = -1.6. Loss = -mean(1.2, -1.6) = 0.2.
    assert float(losses.policy_loss(t([1.5, 0.5]), t([1.0, -2.0]), 0.2)) == pytest.approx(0.2)


def test_value_loss_is_the_plain_squared_error_unless_clipped():
    values, old, targets = t([1.0, 0.0]), t([0.5, 0.5]), t([2.0, 0.0])
    # Plain: mean(1, 0) = 0.5, no 0.5 factor (vf_loss_coeff carries the paper's 0.5).
    assert float(losses.value_loss(values, targets)) == pytest.approx(0.5)
    # ppo2's clip at 0.2: v_clipped = 0.7 and 0.3: mean(max(1, 1.69), max(0, 0.09)) = 0.89.
    assert float(losses.value_loss(values, targets, old, 0.2)) == pytest.approx(0.89)


def test_aux_loss_weights_the_kl_and_both_value_heads():
    kl, aux_values, values, targets = t([0.2, 0.4]), t([1.0, 3.0]), t([0.0, 2.0]), t([2.0, 2.0])
    total, parts = losses.aux_loss(kl, aux_values, values, targets, beta_clone=2.0, vf_true_weight=0.5)
    # vf_aux = 0.5 mean(1, 1) = 0.5; vf_true = 0.5 mean(4, 0) = 1.0; kl mean 0.3.
    assert {k: float(v) for k, v in parts.items()} == pytest.approx({"pol_distance": 0.3, "vf_aux": 0.5, "vf_true": 1.0})
    assert float(total) == pytest.approx(0.5 + 2.0 * 0.3 + 0.5 * 1.0)


def test_policy_distance_is_kl_of_the_old_policy_to_the_new():
    # ppg.py: td.kl_divergence(oldpd, pd). KL is not symmetric: these two distributions tell the directions apart.
    from ray.rllib.models.torch.torch_action_dist import TorchCategorical

    old, new = np.array([0.9, 0.05, 0.05]), np.array([0.2, 0.5, 0.3])
    expected, reverse = float(np.sum(old * np.log(old / new))), float(np.sum(new * np.log(new / old)))
    kl = losses.policy_distance(TorchCategorical(t(np.log(old)[None]), None), TorchCategorical(t(np.log(new)[None]), None))
    assert float(kl[0]) == pytest.approx(expected, rel=1e-5) and abs(expected - reverse) > 0.2


def test_approx_kl_is_ppgs_logged_approxkl():
    assert float(losses.approx_kl(t([0.0, -1.0]), t([0.2, -1.0]))) == pytest.approx(0.5 * (0.04 + 0.0) / 2)


def test_aux_buffer_keeps_uint8_frames_and_grows_past_its_first_reservation():
    buffer = AuxBuffer(phases=2)
    frames = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    buffer.add(frames, [1.0, 2.0, 3.0])
    buffer.add(frames[:2], [4.0, 5.0])
    buffer.add(frames, [6.0, 7.0, 8.0])  # past the 2 x 3 rows reserved for the first batch's size
    assert buffer.obs.dtype == np.uint8 and (buffer.size, buffer.batches) == (8, 3)
    assert buffer.targets[: buffer.size].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert np.array_equal(buffer.obs[5:8], frames)
    assert len(buffer.obs) >= 9, "grown by half (6 -> 9), not to the exact size: no copy for every larger batch"
    epoch = buffer.minibatches(3, np.random.default_rng(0))
    assert [len(m) for m in epoch] == [3, 3, 2] and sorted(np.concatenate(epoch).tolist()) == list(range(8))
    reserved = buffer.obs
    buffer.clear()
    assert (buffer.size, buffer.batches) == (0, 0) and buffer.obs is reserved
    with pytest.raises(ValueError, match="same length"):
        buffer.add(frames, [1.0])


def test_ppg_model_has_separate_networks_and_an_auxiliary_value_head():
    import gymnasium as gym
    import torch

    from models.ppg_impala_cnn_torch import PPGImpalaCNN

    obs_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    model = PPGImpalaCNN(obs_space, gym.spaces.Discrete(15), 15,
                         {"custom_model_config": {"depths": [4, 4, 4], "dense_size": 16}}, "ppg")
    obs = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    logits, _ = model({"obs": obs}, [], None)
    assert logits.shape == (5, 15) and model.value_function().shape == (5,) and model.aux_value_function().shape == (5,)
    for output, reaches, spared in (("value", "value_network.", "policy_network."),
                                    ("aux value", "policy_network.", "value_network."),
                                    ("logits", "policy_network.", "value_network.")):
        model.zero_grad(set_to_none=True)
        logits, _ = model({"obs": obs}, [], None)
        {"value": model.value_function, "aux value": model.aux_value_function, "logits": lambda: logits}[output]().sum().backward()  # noqa: B023
        grads = {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}
        assert any(v for k, v in grads.items() if k.startswith(reaches)), reaches
        assert not any(v for k, v in grads.items() if k.startswith(spared)), f"the {output} must not reach {spared}"


@pytest.mark.parametrize("settings, fragment", [
    ({"framework": "tf"}, "PPG needs framework: torch"),
    ({"model": {"custom_model": "impala_cnn_torch"}}, "auxiliary value head"),
    ({"model": {"custom_model": "ppg_impala_cnn_torch", "vf_share_layers": True}}, "set model.vf_share_layers: false"),
    ({"n_pi": 0}, "n_pi must be an integer >= 1"),
    ({"n_aux_epochs": -1}, "n_aux_epochs must be an integer >= 0"),
    ({"vf_clip_param": 0.0}, "vf_clip_param must be > 0 or null"),
    ({"augmentation": "rotate"}, "augmentation must be one of"),
    ({"kl_coeff": 0.2}, "PPG has no KL penalty"),
    ({"simple_optimizer": False}, "remove simple_optimizer: false"),
])
def test_ppg_refuses_what_it_cannot_do(settings, fragment):
    from algorithms.ppg.ppg import PPGConfig

    config = PPGConfig().api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
    config.update_from_dict(settings)
    with pytest.raises(ValueError, match=fragment):
        config.validate()


def test_ppg_yaml_has_the_papers_procgen_settings():
    from utils.config import load_experiment

    c = load_experiment(ROOT / "experiments" / "ppg.yaml", cpus=2, gpus=0).config
    assert (c["n_pi"], c["num_epochs"], c["n_aux_epochs"], c["beta_clone"]) == (32, 1, 6, 1.0)
    assert (c["gamma"], c["lambda"], c["lr"], c["aux_lr"], c["clip_param"], c["entropy_coeff"]) == (
        0.999, 0.95, 5e-4, 5e-4, 0.2, 0.01)
    assert c["train_batch_size"] // c["minibatch_size"] == 8 and c["grad_clip"] is None and c["vf_clip_param"] is None
    assert c["model"]["custom_model"] == "ppg_impala_cnn_torch"


# 4 iterations of 512 steps plus a restore, then 3 more in a third build with no env runner (ppg_check.py).
@pytest.mark.timeout(hang_ceiling(7 * 512, runs=3))
def test_ppg_trains_runs_its_aux_phase_every_n_pi_and_resumes(tmp_path):
    proc = run_script(ROOT / "tests" / "ppg_check.py", tmp_path, 1, check=True)
    facts = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("FACTS "))[6:])
    assert (facts["policy_class"], facts["model_class"]) == ("PPGTorchPolicy", "PPGImpalaCNN")
    first, second, third, resumed = facts["results"]
    assert first["aux_phases"] == 0 and "aux_pol_distance" not in first
    # n_pi 2: the auxiliary phase follows the 2nd policy phase and replays both train batches.
    assert second["aux_phases"] == 1 and second["aux_batches"] == 2 and second["aux_samples"] >= 1024
    assert all(math.isfinite(second[k]) for k in ("aux_pol_distance", "aux_vf_aux", "aux_vf_true"))
    assert third["aux_phases"] == 1
    # DrAC's augmentation works on PPG's policy phase too (issue 16 point 2).
    assert all(r["drac_regularizer"] > 0 for r in facts["results"])
    # 2 epochs of 256-sample minibatches over >= 1024 rows: every Adam step of the auxiliary optimizer counted.
    steps = 2 * math.ceil(second["aux_samples"] / 256)
    assert set(facts["aux_optimizer_steps"]) == {steps}
    assert facts["restored_aux_optimizer_steps"] == facts["aux_optimizer_steps"], "the aux Adam resumes"
    assert facts["rngs_moved_since_seed"] and facts["rngs_resumed"], "aux minibatch order and DrAC draws resume"
    assert facts["counters"] == facts["restored_counters"] == {"ppg_policy_phases": 3, "ppg_aux_phases": 1}
    assert "note: PPG resumed 1 policy phase(s) after its last auxiliary phase" in proc.stdout
    # After the resume the 4th policy phase completes a cycle: the buffer holds only the batch sampled since.
    assert resumed["aux_phases"] == 2 and resumed["aux_batches"] == 1 and resumed["timesteps"] == 4 * facts["results"][0]["timesteps"]
    assert facts["buffer_dtype"] == "uint8"
    assert facts["runner_weights_match_after_aux_phase"], "the auxiliary phase's weights reach the env runner"
    assert facts["buffer_after_live_restore"] == 0, "a restore drops batches of the abandoned timeline"
    # num_env_runners 0 with lr_schedule: the learner's own schedule follows the timestep (as RLlib's PPO).
    assert facts["scheduled_lr"][0] == pytest.approx(5e-4) and facts["scheduled_lr"][-1] < 4e-4
    assert 0 <= facts["action"] < facts["action_space_n"]
