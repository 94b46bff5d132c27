"""Factor `augmentation`: batched tensor transforms on the training device.

An augmentation maps (x, target, generator) -> (x, target) for a whole batch:
x is (B, C, L) for signals or (B, C, H, W) for images, target is (B, C) probabilities.
Random draws come from the run's own augmentation stream (`generator`, on x's device),
never from the global RNG, and no per-sample Python runs in the loop.

Stacked seeds (whatmatters.train) pass a list of S generators and their S batches as one,
x (S*B, ...): each seed's B rows draw from its own generator exactly what they would draw
alone (`_draw`, `_permutation`), and the transform runs once for all seeds.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from whatmatters.registry import Registry

AUGMENTATIONS = Registry("augmentation")

Generators = torch.Generator | list[torch.Generator]
Augment = Callable[[torch.Tensor, torch.Tensor, Generators], tuple[torch.Tensor, torch.Tensor]]


def _draw(generator: Generators, rows: int, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
    """draw(n, g): n rows of random values from g. For a list of S generators, `rows` splits
    into S equal blocks, block s drawn from generator s; the blocks concatenated (rows, ...)."""
    if isinstance(generator, torch.Generator):
        return draw(rows, generator)
    return torch.cat([draw(rows // len(generator), g) for g in generator])


def _permutation(generator: Generators, rows: int, device) -> torch.Tensor:
    """A random permutation of each block's rows within the block (rows,)."""
    if isinstance(generator, torch.Generator):
        return torch.randperm(rows, device=device, generator=generator)
    n = rows // len(generator)
    perms = torch.stack([torch.randperm(n, device=device, generator=g) for g in generator])  # (S, n)
    return (perms + n * torch.arange(len(generator), device=device)[:, None]).flatten()


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
    offsets = _draw(generator, x.shape[0],
                    lambda n, g: torch.randint(0, 2 * max_shift + 1, (n,), device=x.device, generator=g))
    index = offsets[:, None] + torch.arange(size, device=x.device)  # (B, size)
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[dim] = size
    index = index.view(shape).expand(*x.shape[:dim], size, *x.shape[dim + 1:])
    return padded.gather(dim, index)


@AUGMENTATIONS.register("noise")
def noise(*, std: float = 0.1) -> Augment:
    """Additive Gaussian noise with standard deviation `std` (inputs are standardised)."""

    def augment(x, target, generator):
        return x + std * _draw(generator, x.shape[0],
                               lambda n, g: torch.randn((n, *x.shape[1:]), device=x.device, generator=g)), target

    return augment


def _beta(alpha: float, n: int, device, generator: Generators) -> torch.Tensor:
    """n draws from Beta(alpha, alpha) as a ratio of Gammas (torch's Beta sampler takes no
    generator)."""
    def gamma(k, g):
        return torch._standard_gamma(torch.full((k,), alpha, device=device), generator=g)
    g1, g2 = _draw(generator, n, gamma), _draw(generator, n, gamma)
    return g1 / (g1 + g2)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) values shaped to broadcast against x (B, ...)."""
    return values.view(-1, *[1] * (x.ndim - 1))


@AUGMENTATIONS.register("mixup")
def mixup(*, alpha: float = 0.2) -> Augment:
    """Mixup (Zhang et al. 2018): convex combinations of sample pairs and of their targets,
    with one weight per sample drawn from Beta(alpha, alpha)."""

    def augment(x, target, generator):
        b = x.shape[0]
        lam = _beta(alpha, b, x.device, generator)  # (B,)
        perm = _permutation(generator, b, x.device)
        lam_x = _per_sample(lam, x)
        return lam_x * x + (1 - lam_x) * x[perm], lam[:, None] * target + (1 - lam[:, None]) * target[perm]

    return augment


@AUGMENTATIONS.register("cutmix")
def cutmix(*, alpha: float = 1.0) -> Augment:
    """CutMix (Yun et al. 2019): paste a random box from another sample of the batch into
    each sample, its size from Beta(alpha, alpha); targets mix by the pasted share."""

    def augment(x, target, generator):
        b, spatial = x.shape[0], x.shape[2:]
        lam = _beta(alpha, b, x.device, generator)
        perm = _permutation(generator, b, x.device)
        side = (1 - lam) ** (1 / len(spatial))  # box side as a share of each axis: area 1 - lam
        box = torch.ones_like(x[:, :1])  # (B, 1, *spatial): 1 inside the pasted box
        for dim, n in enumerate(spatial, start=2):
            cut = (side * n).round()
            centre = _draw(generator, b, lambda k, g: torch.randint(0, n, (k,), device=x.device, generator=g))
            start = (centre - cut / 2).clamp(min=0)
            end = (centre + cut / 2).clamp(max=n)
            pos = torch.arange(n, device=x.device)
            inside = (pos >= start[:, None]) & (pos < end[:, None])  # (B, n)
            shape = [b] + [1] * (x.ndim - 1)
            shape[dim] = n
            box = box * inside.view(shape)
        share = box.flatten(1).mean(1)  # the box actually pasted, after clipping at the edges
        return x * (1 - box) + x[perm] * box, (1 - share[:, None]) * target + share[:, None] * target[perm]

    return augment


@AUGMENTATIONS.register("flip")
def flip(*, p: float = 0.5) -> Augment:
    """Mirror each sample along its last axis with probability `p` (a horizontal flip for
    images, time reversal for signals)."""

    def augment(x, target, generator):
        mirrored = _draw(generator, x.shape[0], lambda n, g: torch.rand(n, device=x.device, generator=g)) < p
        return torch.where(_per_sample(mirrored, x), x.flip(-1), x), target

    return augment


@AUGMENTATIONS.register("crop_flip")
def crop_flip(*, max_shift: int = 4, p: float = 0.5) -> Augment:
    """The standard CIFAR recipe: pad-and-crop translation by up to `max_shift`, then a
    flip with probability `p`."""
    crop, mirror = shift(max_shift=max_shift), flip(p=p)
    return lambda x, target, generator: mirror(*crop(x, target, generator), generator)


@AUGMENTATIONS.register("cutout")
def cutout(*, size: int = 2) -> Augment:
    """Cutout (DeVries & Taylor 2017): zero one random box of `size` positions per spatial
    axis in each sample."""

    def augment(x, target, generator):
        box = torch.ones_like(x[:, :1])  # (B, 1, *spatial): 1 inside the box
        for dim in range(2, x.ndim):
            n = x.shape[dim]
            start = _draw(generator, x.shape[0],
                          lambda k, g: torch.randint(0, max(n - size, 0) + 1, (k,), device=x.device, generator=g))
            pos = torch.arange(n, device=x.device)
            inside = (pos >= start[:, None]) & (pos < start[:, None] + size)  # (B, n)
            shape = [x.shape[0]] + [1] * (x.ndim - 1)
            shape[dim] = n
            box = box * inside.view(shape)
        return x * (1 - box), target

    return augment
