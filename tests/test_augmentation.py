"""DrAC data augmentation (algorithms/procgen_ppo/augmentation.py) and its place in ProcgenPPO's torch loss:
shapes, what each augmentation does to pixels, the regularizer by hand, and identity when off."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.procgen_ppo import augmentation
from algorithms.procgen_ppo.augmentation import AUGMENTATIONS, CROP_PAD, TRANSLATE_PAD, augment


def batch(n=6, seed=0):
    return torch.rand((n, 64, 64, 3), generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_shape_dtype_range_and_reproducible(name, dtype):
    # uint8 is what RLlib's train batch holds for Procgen frames.
    obs = batch().to(dtype)
    out = augment(name, obs, torch.Generator().manual_seed(1))
    assert out.shape == obs.shape and out.dtype == torch.float32
    assert float(out.mean()) > 20, "the image survives (a uint8 grayscale once came out black)"
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    again = augment(name, obs, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    if name != "grayscale":
        assert not torch.equal(out, obs.float())


@pytest.mark.parametrize("name, fill, pad", [("crop", "edge", CROP_PAD), ("translate", "constant", TRANSLATE_PAD)])
def test_shifts_are_windows_of_the_padded_image(name, fill, pad):
    obs = batch(4)
    out = augment(name, obs, torch.Generator().manual_seed(3)).numpy()
    for image, shifted in zip(obs.numpy(), out, strict=True):
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=fill)
        windows = [padded[dy:dy + 64, dx:dx + 64] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        assert any(np.array_equal(shifted, w) for w in windows)


def test_flip_grayscale_and_jitter_pixels():
    obs = batch(16)
    flipped = augment("flip", obs, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, o.flip(dims=(1,))) for f, o in zip(flipped, obs, strict=True)]
    same = [torch.equal(f, o) for f, o in zip(flipped, obs, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and any(mirrored) and any(same)
    gray = augment("grayscale", obs)
    assert torch.equal(gray[..., 0], gray[..., 1]) and torch.equal(gray[..., 1], gray[..., 2])
    assert torch.allclose(gray[0, 0, 0, 0], (obs[0, 0, 0] * torch.tensor([0.299, 0.587, 0.114])).sum())
    # A grey image stays grey under jitter (saturation and contrast of a uniform grey do nothing).
    grey = torch.full((2, 64, 64, 3), 100.0)
    jittered = augment("color-jitter", grey, torch.Generator().manual_seed(0))
    assert torch.allclose(jittered[..., 0], jittered[..., 1]) and torch.allclose(jittered[..., 0], jittered[..., 2])


def test_unknown_augmentation_or_non_rgb_obs_is_refused():
    with pytest.raises(ValueError, match="crop, translate, color-jitter"):
        augment("rotate", batch())
    with pytest.raises(ValueError, match=r"needs RGB observations \(N, H, W, 3\), got shape \(2, 64, 64, 12\)"):
        augment("grayscale", torch.zeros((2, 64, 64, 12)))


def test_drac_regularizer_by_hand():
    from ray.rllib.models.torch.torch_action_dist import TorchCategorical

    logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    aug_logits = torch.tensor([[0.0, np.log(3.0)]], requires_grad=True)
    values, aug_values = torch.tensor([1.0]), torch.tensor([1.5], requires_grad=True)
    reg = augmentation.drac_regularizer(TorchCategorical(logits, None), TorchCategorical(aug_logits, None),
                                        values, aug_values)
    # KL([.5, .5] || [.25, .75]) = .5 ln 2 + .5 ln(2/3); value term .5 (1.5 - 1)^2 = .125.
    assert float(reg.detach()) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3) + 0.125, rel=1e-5)
    reg.backward()
    assert logits.grad is None or float(logits.grad.abs().sum()) == 0.0, "the original policy is held fixed"
    assert float(aug_logits.grad.abs().sum()) > 0


def policy(**settings):
    import registry
    from algorithms.procgen_ppo.policies import torch_policy_class
    from algorithms.procgen_ppo.procgen_ppo import ProcgenPPOConfig

    registry.register_all(models=["impala_cnn_torch"])
    config = ProcgenPPOConfig().api_stack(enable_rl_module_and_learner=False,
                                          enable_env_runner_and_connector_v2=False).framework("torch")
    config.update_from_dict({"model": {"custom_model": "impala_cnn_torch",
                                       "custom_model_config": {"depths": [4, 4, 4], "dense_size": 16}}, **settings})
    torch.manual_seed(0)
    return torch_policy_class()(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(15),
                                config.to_dict())


def train_batch(n=8):
    from ray.rllib.evaluation.postprocessing import Postprocessing
    from ray.rllib.policy.sample_batch import SampleBatch

    g = torch.Generator().manual_seed(5)
    return SampleBatch({
        SampleBatch.OBS: (torch.rand((n, 64, 64, 3), generator=g) * 255).to(torch.uint8),
        SampleBatch.ACTIONS: torch.randint(0, 15, (n,), generator=g),
        SampleBatch.ACTION_LOGP: torch.full((n,), -np.log(15.0)),
        SampleBatch.ACTION_DIST_INPUTS: torch.zeros((n, 15)),
        SampleBatch.VF_PREDS: torch.rand((n,), generator=g),
        Postprocessing.ADVANTAGES: torch.randn((n,), generator=g),
        Postprocessing.VALUE_TARGETS: torch.rand((n,), generator=g) * 3,
    })


def test_policy_loss_is_the_paper_loss_and_identity_when_augmentation_is_off():
    from ray.rllib.evaluation.postprocessing import Postprocessing
    from ray.rllib.policy.sample_batch import SampleBatch

    from algorithms.procgen_ppo import losses

    data = train_batch()
    plain = policy()
    loss = plain.loss(plain.model, plain.dist_class, data)
    # The same terms computed here from the model's outputs: clipped surrogate on per-minibatch-normalized
    # advantages, ppo2 value loss around VF_PREDS, entropy bonus.
    logits, _ = plain.model(data)
    values = plain.model.value_function()
    dist = plain.dist_class(logits, plain.model)
    adv = data[Postprocessing.ADVANTAGES]
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    ratio = torch.exp(dist.logp(data[SampleBatch.ACTIONS]) - data[SampleBatch.ACTION_LOGP])
    surrogate = torch.min(adv * ratio, adv * torch.clamp(ratio, 0.8, 1.2))
    vf = losses.value_loss_torch(values, data[SampleBatch.VF_PREDS], data[Postprocessing.VALUE_TARGETS], 0.2)
    expected = -surrogate.mean() + 0.5 * vf - 0.01 * dist.entropy().mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)

    zero_weight = policy(augmentation="crop", drac_coeff=0.0)
    assert float(zero_weight.loss(zero_weight.model, zero_weight.dist_class, data)) == pytest.approx(float(loss), rel=1e-6)
    drac = policy(augmentation="crop", drac_coeff=0.1)
    with_reg = drac.loss(drac.model, drac.dist_class, data)
    regularizer = float(drac.model.tower_stats["drac_regularizer"])
    assert regularizer > 0
    assert float(with_reg) == pytest.approx(float(loss) + 0.1 * regularizer, rel=1e-5)


@pytest.mark.parametrize("settings, fragment", [
    ({"augmentation": "rotate"}, "augmentation must be one of"),
    ({"augmentation": "crop", "framework": "tf"}, "needs framework: torch"),
    ({"augmentation": "crop", "drac_coeff": -1}, "drac_coeff must be >= 0"),
])
def test_bad_augmentation_settings_are_refused(settings, fragment):
    from algorithms.procgen_ppo.procgen_ppo import ProcgenPPOConfig

    config = ProcgenPPOConfig().api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
    config.update_from_dict(settings)
    with pytest.raises(ValueError, match=fragment):
        config.validate()


def test_augmentation_draws_resume_from_the_policy_state():
    """A checkpoint keeps DrAC's random generator: a restored policy draws the crops the saved one would have."""
    data = train_batch()
    saved = policy(augmentation="crop", drac_coeff=0.1)
    saved.loss(saved.model, saved.dist_class, data)  # moves the generator past its seed
    state = saved.get_state()
    restored = policy(augmentation="crop", drac_coeff=0.1)
    assert not torch.equal(restored.augmentation_generator.get_state(), saved.augmentation_generator.get_state())
    restored.set_state(state)
    assert torch.equal(restored.augmentation_generator.get_state(), saved.augmentation_generator.get_state())
    crops = [augmentation.augment("crop", data["obs"], p.augmentation_generator) for p in (saved, restored)]
    assert torch.equal(*crops)
