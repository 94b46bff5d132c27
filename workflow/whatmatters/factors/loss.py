"""Factor `loss`: the training objective.

Every loss takes logits (B, C) and target probabilities (B, C): one-hot labels, or
soft labels when an augmentation such as mixup mixes them. Returns a scalar mean.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from whatmatters.registry import Registry

LOSSES = Registry("loss")

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@LOSSES.register("cross_entropy")
def cross_entropy() -> Loss:
    """Cross-entropy (negative log-likelihood of the softmax)."""
    return lambda logits, target: F.cross_entropy(logits, target)


@LOSSES.register("label_smoothing")
def label_smoothing(*, smoothing: float = 0.1) -> Loss:
    """Cross-entropy against targets mixed with the uniform distribution (Szegedy et al. 2016)."""
    return lambda logits, target: F.cross_entropy(logits, target, label_smoothing=smoothing)


@LOSSES.register("brier")
def brier() -> Loss:
    """Brier score: squared error between softmax probabilities and targets, summed over classes."""
    return lambda logits, target: (logits.softmax(-1) - target).pow(2).sum(-1).mean()


@LOSSES.register("focal")
def focal(*, gamma: float = 2.0) -> Loss:
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p)^gamma on easy examples."""

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)  # (B, C)
        return -(target * (1 - logp.exp()).pow(gamma) * logp).sum(-1).mean()

    return loss


@LOSSES.register("symmetric_ce")
def symmetric_ce(*, alpha: float = 0.1, beta: float = 1.0) -> Loss:
    """Symmetric cross-entropy (Wang et al. 2019), robust to label noise:
    alpha * CE + beta * reverse CE, with log 0 clipped to log 1e-4 in the reverse term."""

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target)
        rce = -(logits.softmax(-1) * target.clamp_min(1e-4).log()).sum(-1).mean()
        return alpha * ce + beta * rce

    return loss
