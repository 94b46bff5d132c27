"""Factor `schedule`, the training strategy: learning-rate schedule and batch size.

Every level carries `batch_size` (a common setting the trainer consumes). A builder
maps (optimizer, total_steps) to a torch LR scheduler stepped once per optimizer step;
the peak learning rate is the optimizer level's `lr`.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from whatmatters.registry import Registry, Setting

SCHEDULES = Registry("schedule", common=(Setting("batch_size", (int,), 64),))


@SCHEDULES.register("constant")
def constant(optimizer: torch.optim.Optimizer, total_steps: int):
    """The learning rate stays at `lr`."""
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@SCHEDULES.register("step")
def step(optimizer: torch.optim.Optimizer, total_steps: int, *, drops: int = 2, gamma: float = 0.1):
    """Multiply the rate by `gamma` at `drops` evenly spaced points of training."""
    milestones = [round(k * total_steps / (drops + 1)) for k in range(1, drops + 1)]
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


@SCHEDULES.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, total_steps: int):
    """Cosine decay from `lr` to 0 over training (Loshchilov & Hutter 2017, no restarts)."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, *, warmup: float = 0.1):
    """Linear warm-up over the first `warmup` fraction of steps, then cosine decay to 0."""
    n_warm = max(1, int(warmup * total_steps))
    return lr_scheduler.SequentialLR(
        optimizer,
        [lr_scheduler.LinearLR(optimizer, start_factor=1.0 / n_warm, total_iters=n_warm),
         lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - n_warm))],
        milestones=[n_warm],
    )


@SCHEDULES.register("onecycle")
def onecycle(optimizer: torch.optim.Optimizer, total_steps: int, *, warmup: float = 0.3):
    """One-cycle (Smith & Topin 2019): rise to `lr`, then anneal far below it. Momentum is
    left to the optimizer factor (no momentum cycling), so the factors stay separate."""
    peak = optimizer.param_groups[0]["lr"]
    return lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=max(2, total_steps), pct_start=warmup,
        cycle_momentum=False)
