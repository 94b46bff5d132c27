"""Factor `init`: how the weights of linear and convolutional layers start.

Applies to every nn.Linear / nn.Conv* weight and to attention input projections;
biases start at zero (except `default`). Normalisation layers and positional
embeddings keep their own initialisation: they are not what the init hypothesis is about.
"""

from __future__ import annotations

import torch
from torch import nn

from whatmatters.registry import Registry

INITS = Registry("init")


def _weights(model: nn.Module):
    """(weight, bias) of every layer an init scheme is responsible for."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            yield m.weight, m.bias
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            yield m.in_proj_weight, m.in_proj_bias


def _apply(model: nn.Module, fill) -> None:
    with torch.no_grad():
        for weight, bias in _weights(model):
            fill(weight)
            if bias is not None:
                bias.zero_()


@INITS.register("default")
def default(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's per-layer default (Kaiming-uniform with a=sqrt(5)); left untouched."""


@INITS.register("he")
def he(model: nn.Module, generator: torch.Generator, *, gain_nonlinearity: str = "relu") -> None:
    """He/Kaiming normal, fan-in (He et al. 2015): std = gain / sqrt(fan_in)."""
    _apply(model, lambda w: nn.init.kaiming_normal_(
        w, mode="fan_in", nonlinearity=gain_nonlinearity, generator=generator))


@INITS.register("xavier")
def xavier(model: nn.Module, generator: torch.Generator, *, gain: float = 1.0) -> None:
    """Glorot/Xavier normal: std = gain * sqrt(2 / (fan_in + fan_out))."""
    _apply(model, lambda w: nn.init.xavier_normal_(w, gain=gain, generator=generator))


@INITS.register("lecun")
def lecun(model: nn.Module, generator: torch.Generator) -> None:
    """LeCun normal: std = 1 / sqrt(fan_in) (Kaiming with a linear gain)."""
    _apply(model, lambda w: nn.init.kaiming_normal_(
        w, mode="fan_in", nonlinearity="linear", generator=generator))


@INITS.register("orthogonal")
def orthogonal(model: nn.Module, generator: torch.Generator, *, gain: float = 1.0) -> None:
    """(Semi-)orthogonal weights (Saxe et al. 2014); conv kernels are flattened per output."""
    _apply(model, lambda w: nn.init.orthogonal_(w, gain=gain, generator=generator))


@INITS.register("normal")
def normal(model: nn.Module, generator: torch.Generator, *, std: float = 0.01) -> None:
    """Naive fixed-scale normal N(0, std^2), blind to layer width: the 'inappropriate' init."""
    _apply(model, lambda w: nn.init.normal_(w, mean=0.0, std=std, generator=generator))
