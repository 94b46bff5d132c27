"""Factor `augmentation`: batched tensor transforms on the training device.

An augmentation maps (x, target, generator) -> (x, target) for a whole batch:
x is (B, C, L) for signals or (B, C, H, W) for images, target is (B, C) probabilities.
Random draws come from the run's own augmentation stream (`generator`, on x's device),
never from the global RNG, and no per-sample Python runs in the loop.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from whatmatters.factors.registry import Registry

AUGMENTATIONS = Registry("augmentation")

Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@AUGMENTATIONS.register("none")
def none() -> Augment:
    """No augmentation."""
    return lambda x, target, generator: (x, target)


@AUGMENTATIONS.register("shift")
def shift(*, max_shift: int = 2) -> Augment:
    """Random translation by up to `max_shift` positions along every spatial axis, zero-filled
    (pad-and-crop, the standard crop augmentation)."""

    def augment(x, target, generator):
        for dim in range(2, x.ndim):
            x = _shift_along(x, dim, max_shift, generator)
        return x, target

    return augment


def _shift_along(x: torch.Tensor, dim: int, max_shift: int, generator: torch.Generator):
    """Shift each sample of x along `dim` by its own offset in [-max_shift, max_shift]."""
    if max_shift <= 0:
        return x
    size = x.shape[dim]
    pad = [0, 0] * (x.ndim - 2)
    pad[2 * (x.ndim - 1 - dim)] = pad[2 * (x.ndim - 1 - dim) + 1] = max_shift  # F.pad counts from the last dim
    padded = F.pad(x, pad)
    offsets = torch.randint(0, 2 * max_shift + 1, (x.shape[0],), device=x.device, generator=generator)
    index = offsets[:, None] + torch.arange(size, device=x.device)  # (B, size)
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[dim] = size
    index = index.view(shape).expand(*x.shape[:dim], size, *x.shape[dim + 1:])
    return padded.gather(dim, index)


@AUGMENTATIONS.register("noise")
def noise(*, std: float = 0.1) -> Augment:
    """Additive Gaussian noise with standard deviation `std` (inputs are standardised)."""

    def augment(x, target, generator):
        return x + std * torch.randn(x.shape, device=x.device, generator=generator), target

    return augment


@AUGMENTATIONS.register("mixup")
def mixup(*, alpha: float = 0.2) -> Augment:
    """Mixup (Zhang et al. 2018): convex combinations of sample pairs and of their targets,
    with one weight per sample drawn from Beta(alpha, alpha)."""

    def augment(x, target, generator):
        b = x.shape[0]
        # Beta(a, a) as a ratio of Gammas; torch's Beta sampler takes no generator.
        g1 = torch._standard_gamma(torch.full((b,), alpha, device=x.device), generator=generator)
        g2 = torch._standard_gamma(torch.full((b,), alpha, device=x.device), generator=generator)
        lam = g1 / (g1 + g2)  # (B,)
        perm = torch.randperm(b, device=x.device, generator=generator)
        lam_x = lam.view(b, *[1] * (x.ndim - 1))
        return lam_x * x + (1 - lam_x) * x[perm], lam[:, None] * target + (1 - lam[:, None]) * target[perm]

    return augment


@AUGMENTATIONS.register("cutout")
def cutout(*, size: int = 2) -> Augment:
    """Cutout (DeVries & Taylor 2017): zero one random box of `size` positions per spatial
    axis in each sample."""

    def augment(x, target, generator):
        box = torch.ones_like(x[:, :1])  # (B, 1, *spatial): 1 inside the box
        for dim in range(2, x.ndim):
            n = x.shape[dim]
            start = torch.randint(0, max(n - size, 0) + 1, (x.shape[0],), device=x.device, generator=generator)
            pos = torch.arange(n, device=x.device)
            inside = (pos >= start[:, None]) & (pos < start[:, None] + size)  # (B, n)
            shape = [x.shape[0]] + [1] * (x.ndim - 1)
            shape[dim] = n
            box = box * inside.view(shape)
        return x * (1 - box), target

    return augment
