"""Factor `regularization`: explicit regularizers, weight decay and dropout.

A level resolves to a `Regularization`: the weight decay handed to the optimizer and
the dropout probability handed to the architecture.
"""

from __future__ import annotations

from typing import NamedTuple

from whatmatters.registry import Registry

REGULARIZATIONS = Registry("regularization")


class Regularization(NamedTuple):
    weight_decay: float  # per step, scaled as the optimizer applies it
    dropout: float  # probability of zeroing a hidden unit


@REGULARIZATIONS.register("none")
def none() -> Regularization:
    """No explicit regularizer."""
    return Regularization(0.0, 0.0)


@REGULARIZATIONS.register("weight_decay")
def weight_decay(*, weight_decay: float = 5e-4) -> Regularization:
    """Weight decay only."""
    return Regularization(weight_decay, 0.0)


@REGULARIZATIONS.register("dropout")
def dropout(*, p: float = 0.1) -> Regularization:
    """Dropout only, on hidden units of every architecture."""
    return Regularization(0.0, p)


@REGULARIZATIONS.register("both")
def both(*, weight_decay: float = 5e-4, p: float = 0.1) -> Regularization:
    """Weight decay and dropout."""
    return Regularization(weight_decay, p)
