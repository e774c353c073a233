"""Data augmentation for Procgen observations, in batch on the learner (RAD, Laskin et al. 2020; DrAC,
Raileanu et al. 2020, "Automatic Data Augmentation for Generalization in Deep RL").

`augment(name, obs, generator)` takes observations of shape (N, H, W, 3), uint8 as RLlib's train batch
holds Procgen's frames or float in [0, 255], and returns float32 of the same shape in [0, 255]; the
randomness comes from the torch.Generator, one draw per observation.

- crop: pad 12 pixels by replicating the border, then a random crop back to H x W (DrAC's own code,
  rraileanu/auto-drac: ReplicationPad2d(12) + RandomCrop(64)).
- translate: a shift of up to 4 pixels with a black border (RAD's translate, the image placed at a
  random offset, for a fixed input size).
- color-jitter: random brightness, contrast and saturation, each a factor in [0.6, 1.4] (DrAC's
  ColorJitter strengths 0.4; hue left out).
- grayscale: luminance copied to the three channels.
- flip: horizontal flip with probability 0.5.

DrAC's regularizer (weight `drac_coeff`, the paper's alpha_r 0.1), with pi and V on the original
observation held fixed:  G = KL(pi(.|s) || pi(.|f(s))) + 0.5 (V(f(s)) - V(s))^2, averaged over the batch
(the 0.5 as in auto-drac's code; the paper writes the value term without it).
"""

AUGMENTATIONS = ("crop", "translate", "color-jitter", "grayscale", "flip")
CROP_PAD = 12
TRANSLATE_PAD = 4
JITTER = 0.4
LUMINANCE = (0.299, 0.587, 0.114)


def augment(name, obs, generator=None):
    """`name` applied to a batch of observations (N, H, W, C) float in [0, 255]; same shape and dtype."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {name!r}")
    if obs.shape[-1] != 3:
        raise ValueError(f"augmentation {name!r} needs RGB observations (N, H, W, 3), got shape {tuple(obs.shape)}")
    obs = obs.float()
    return {"crop": crop, "translate": translate, "color-jitter": color_jitter,
            "grayscale": grayscale, "flip": flip}[name](obs, generator)


def _shift(obs, generator, mode, pad):
    import torch
    import torch.nn.functional as F

    n, h, w, _ = obs.shape
    x = obs.permute(0, 3, 1, 2)
    if mode == "replicate":
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    else:
        padded = F.pad(x, (pad, pad, pad, pad), mode="constant", value=0.0)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(obs.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(obs.device)
    rows = (dy[:, None] + torch.arange(h, device=obs.device)[None, :])  # (N, H)
    cols = (dx[:, None] + torch.arange(w, device=obs.device)[None, :])  # (N, W)
    batch = torch.arange(n, device=obs.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.contiguous()


def crop(obs, generator=None):
    return _shift(obs, generator, "replicate", CROP_PAD)


def translate(obs, generator=None):
    return _shift(obs, generator, "constant", TRANSLATE_PAD)


def _factors(n, generator, device):
    import torch

    return (1.0 - JITTER + 2 * JITTER * torch.rand((n, 1, 1, 1), generator=generator)).to(device)


def grayscale(obs, generator=None):
    import torch

    weights = torch.tensor(LUMINANCE, dtype=torch.float32, device=obs.device)
    gray = (obs * weights).sum(dim=-1, keepdim=True)
    return gray.expand_as(obs).contiguous()


def color_jitter(obs, generator=None):
    n = obs.shape[0]
    x = obs * _factors(n, generator, obs.device)  # brightness
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * _factors(n, generator, obs.device)  # contrast
    gray = grayscale(x)
    x = gray + (x - gray) * _factors(n, generator, obs.device)  # saturation
    return x.clamp(0.0, 255.0)


def flip(obs, generator=None):
    import torch

    flipped = torch.rand((obs.shape[0],), generator=generator).to(obs.device) < 0.5
    return torch.where(flipped[:, None, None, None], obs.flip(dims=(2,)), obs)


def drac_regularizer(dist, aug_dist, values, aug_values):
    """DrAC's G_pi + G_V (see module docstring); `dist` and `values` are of the original observations, (N,)."""
    import torch

    fixed_dist = type(dist)(dist.inputs.detach(), dist.model)
    policy_term = torch.mean(fixed_dist.kl(aug_dist))
    value_term = 0.5 * torch.mean((aug_values - values.detach()) ** 2)
    return policy_term + value_term
