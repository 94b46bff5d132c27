"""Factor `optimizer`: the update rule, with its learning rate (every level carries `lr`).

Weight decay is not the optimizer's: it comes from the `regularization` factor and is
passed in. How it acts follows the optimizer, as in practice: coupled L2 for SGD, Adam
and RMSprop, decoupled for AdamW and Lion.
"""

from __future__ import annotations

from typing import Iterable

import torch

from whatmatters.registry import Registry

OPTIMIZERS = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable, weight_decay: float, *, lr: float, momentum: float = 0.0):
    """SGD, optionally with heavy-ball momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov")
def nesterov(params: Iterable, weight_decay: float, *, lr: float, momentum: float = 0.9):
    """SGD with Nesterov momentum (Sutskever et al. 2013)."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Iterable, weight_decay: float, *, lr: float, beta1: float = 0.9,
         beta2: float = 0.999, eps: float = 1e-8):
    """Adam (Kingma & Ba 2015); weight decay as coupled L2."""
    return torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable, weight_decay: float, *, lr: float, beta1: float = 0.9,
          beta2: float = 0.999, eps: float = 1e-8):
    """AdamW (Loshchilov & Hutter 2019): decoupled weight decay."""
    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable, weight_decay: float, *, lr: float, alpha: float = 0.99,
            momentum: float = 0.0, eps: float = 1e-8):
    """RMSprop (Tieleman & Hinton 2012)."""
    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, momentum=momentum, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("lion")
def lion(params: Iterable, weight_decay: float, *, lr: float, beta1: float = 0.9,
         beta2: float = 0.99):
    """Lion (Chen et al. 2023): sign of an interpolated momentum; decoupled weight decay."""
    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


@OPTIMIZERS.register("signsgd")
def signsgd(params: Iterable, weight_decay: float, *, lr: float):
    """sign-SGD (Bernstein et al. 2018): step along sign(gradient); Lion with both betas 0."""
    return Lion(params, lr=lr, betas=(0.0, 0.0), weight_decay=weight_decay)


class Lion(torch.optim.Optimizer):
    """Lion, written here because torch.optim has none (a dozen lines do not justify a
    dependency):

        c = sign(beta1 * m + (1 - beta1) * g);  p -= lr * (c + wd * p);  m = beta2 * m + (1 - beta2) * g
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss
