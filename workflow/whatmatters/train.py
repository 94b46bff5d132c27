"""Training one config: seeds, model, factor application, loop, evaluation, in that order.

`train_runs` trains one config on one prepared dataset with one or several seeds (stacked
into one model) and returns one record per seed; `train_run` is the one-seed case. A job
of many runs, the run store and what happens when a job fails: `whatmatters.jobs`.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from whatmatters.factors import FACTORS
from whatmatters.factors.architecture import Dropout


# Seeds: a run's randomness (weight init, data order, augmentation, dropout), from its seed alone

STREAMS = ("init", "order", "augment", "dropout")


def seed_streams(seed: int) -> dict[str, int]:
    """Independent seeds for weight init, data order, augmentation and dropout, derived from
    the run's seed alone, so two configs with the same seed share data order (common random
    numbers) and each source of variance can be varied on its own."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: int(c.generate_state(1, np.uint64)[0] >> 1) for name, c in zip(STREAMS, children)}


# Model: the seeds' networks of one config, trained as one

class Replicas:
    """S networks of one config, one per seed, trained in lockstep.

    S = 1 is the plain module. S > 1 stacks the S networks' weights into (S, ...) leaves
    (torch.func.stack_module_state) and runs them as one model with vmap over a
    functional call: one kernel launch serves every seed. Each network keeps its own
    init, data order, augmentation and dropout masks; the optimizers of this project are
    elementwise, so one optimizer over the stacked leaves updates each seed exactly as
    its own optimizer would.
    """

    def __init__(self, models: list[nn.Module], layout: torch.memory_format = torch.contiguous_format):
        self.models, self.stacked, self.layout = models, len(models) > 1, layout
        if self.stacked:
            self.params, self.buffers = stack_module_state(models)
            self.base = copy.deepcopy(models[0]).to("meta")
        else:
            self.params = dict(models[0].named_parameters())
            self.buffers = dict(models[0].named_buffers())
        self.dropouts = {name: m for name, m in models[0].named_modules() if isinstance(m, Dropout) and m.p > 0}
        # Divergence bookkeeping, allocated once so that a step's snapshot is one foreach copy
        # and its undo one where per tensor: the state before the step, and which seeds keep
        # their update ((2, S): params, buffers), viewed to broadcast against each tensor.
        self.tensors = [*self.params.values(), *self.buffers.values()]
        with torch.no_grad():
            self.before = [t.detach().clone() for t in self.tensors]
        self.alive = torch.ones(2, len(models), dtype=torch.bool, device=self.tensors[0].device)
        kinds = [0] * len(self.params) + [1] * len(self.buffers)
        self.alive_views = [self.alive[k].view(-1, *[1] * (t.ndim - 1)) if self.stacked else self.alive[k, 0]
                            for k, t in zip(kinds, self.tensors)]

    def losses(self, x: torch.Tensor, target: torch.Tensor, loss_fn, masks: dict) -> torch.Tensor:
        """Per-seed training losses (S,) for batches x (S, B, ...) and targets (S, B, C)."""
        if not self.stacked:
            for name, m in self.dropouts.items():
                m.mask = masks[name][0]
            x = x[0].contiguous(memory_format=self.layout) if x.ndim == 5 else x[0]
            return loss_fn(self.models[0](x), target[0])[None]
        state = {**self.params, **self.buffers, **{f"{name}.mask": mask for name, mask in masks.items()}}

        def one(state, x, target):
            return loss_fn(functional_call(self.base, state, (x,)), target)

        return vmap(one, randomness="error")(state, x, target)

    def mask_shapes(self, example: torch.Tensor) -> dict[str, tuple]:
        """Shape of each dropout layer's input for a batch like `example` (B, ...)."""
        shapes, model = {}, self.models[0]

        def record(name):
            def hook(module, args):
                shapes[name] = tuple(args[0].shape)
            return hook

        hooks = [m.register_forward_pre_hook(record(name)) for name, m in self.dropouts.items()]
        with torch.no_grad():
            model.eval()      # eval: the probe must not touch batch-norm statistics
            model(example)
            model.train()
        for h in hooks:
            h.remove()
        return shapes

    @torch.no_grad()
    def snapshot(self) -> None:
        """Remember every weight and buffer of every seed (one foreach copy), for `keep`."""
        torch._foreach_copy_(self.before, self.tensors)

    @torch.no_grad()
    def keep(self, params_alive: torch.Tensor, buffers_alive: torch.Tensor) -> None:
        """Undo the last step for seeds that are not alive (S,): a diverged run keeps the state it
        had when its loss first stopped being finite, as if it had stopped training there."""
        self.alive.copy_(torch.stack([params_alive, buffers_alive]))
        torch._foreach_copy_(self.tensors, [torch.where(alive, t, b)
                                            for t, b, alive in zip(self.tensors, self.before, self.alive_views)])

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """The S trained networks as ordinary modules (for evaluation)."""
        if self.stacked:
            stacked = {**self.params, **self.buffers}
            for s, model in enumerate(self.models):
                for name, t in [*model.named_parameters(), *model.named_buffers()]:
                    if name in stacked:
                        t.copy_(stacked[name][s])
        for m in self.dropouts.values():
            m.mask = None
        return self.models


def batchable(levels: dict[str, dict]) -> bool:
    """Whether a config's seeds can train stacked: every level's kind allows it."""
    return all(FACTORS[f].kind(lv["kind"]).batchable for f, lv in levels.items())


# Loop: factor application, then every step of every epoch

def train_runs(data: dict, levels: dict[str, dict], seeds: list[int], epochs: int, *,
               precision: str = "fp32", channels_last: bool = False) -> list[dict]:
    """Train one config (levels: factor -> {name, kind, settings}) with each of `seeds` for
    `epochs` on `data` (a prepared dataset, tensors already on the training device), all
    seeds together when there are several (see Replicas). Returns one record per seed.

    precision: fp32, or bf16 (autocast of forward and loss; weights and optimizer stay
    fp32). channels_last: image tensors and weights in NHWC layout (single seeds only).
    A loss that turns NaN/inf stops that seed's training, recorded as status 'diverged'
    with whatever accuracy the network then has; other seeds go on.
    """
    start = time.perf_counter()
    S, streams = len(seeds), [seed_streams(seed) for seed in seeds]
    x_train, y_train = data["x_train"], data["y_train"]
    device = x_train.device
    build = {f: (lambda f: lambda *args: FACTORS[f].build(levels[f]["kind"], levels[f]["settings"], *args))(f)
             for f in FACTORS}
    layout = torch.channels_last if channels_last and S == 1 and x_train.ndim == 4 else torch.contiguous_format

    # Models: architecture with the regularizer's dropout, then the init scheme, per seed.
    reg = build["regularization"]()
    models = []
    for st in streams:
        torch.manual_seed(st["init"])  # layers' default init draws from the global RNG
        model = build["architecture"](data["input_shape"], data["num_classes"], reg.dropout)
        build["init"](model, torch.Generator().manual_seed(st["init"]))
        models.append(model.to(device, memory_format=layout).train())
    nets = Replicas(models, layout)

    # Training strategy: optimizer (with the regularizer's weight decay), batch size, schedule.
    optimizer = build["optimizer"](nets.params.values(), reg.weight_decay)
    batch_size = levels["schedule"]["settings"]["batch_size"]
    n = len(x_train)
    steps_per_epoch = max(1, n // batch_size)  # drop the ragged last batch (batch norm needs >1)
    total_steps = epochs * steps_per_epoch
    scheduler = build["schedule"](optimizer, total_steps)
    loss_fn, augment = build["loss"](), build["augmentation"]()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    order = [torch.Generator().manual_seed(st["order"]) for st in streams]
    augment_rng = [torch.Generator(device=device).manual_seed(st["augment"]) for st in streams]
    dropout_rng = [torch.Generator(device=device).manual_seed(st["dropout"]) for st in streams]
    mask_shapes = nets.mask_shapes(x_train[:batch_size]) if nets.dropouts else {}
    targets = F.one_hot(y_train, data["num_classes"]).float()  # (N, C)

    # Per seed, on the device (no host sync per step): alive, step it diverged at, epoch loss.
    alive = torch.ones(S, dtype=torch.bool, device=device)
    diverged_at = torch.full((S,), -1, dtype=torch.long, device=device)
    epoch_loss = torch.zeros(S, device=device)
    step = 0
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in order]).to(device)  # (S, N)
        epoch_loss.zero_()
        for i in range(steps_per_epoch):
            idx = perms[:, i * batch_size:(i + 1) * batch_size]  # (S, B)
            xb, tb = x_train[idx], targets[idx]                  # (S, B, ...), one gather
            # every seed's batch augmented at once, each seed's rows from its own stream
            xb, tb = augment(xb.flatten(0, 1), tb.flatten(0, 1), augment_rng if S > 1 else augment_rng[0])
            xb, tb = xb.unflatten(0, (S, -1)), tb.unflatten(0, (S, -1))
            masks = _dropout_masks(mask_shapes, {name: m.p for name, m in nets.dropouts.items()}, dropout_rng)
            nets.snapshot()
            with autocast:
                losses = nets.losses(xb, tb, loss_fn, masks).float()
            finite = torch.isfinite(losses)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()   # seeds are independent: each leaf slice gets its own gradient
            optimizer.step()
            scheduler.step()
            now_alive = alive & finite
            # A seed whose loss is not finite stops before this update (its batch-norm
            # statistics keep this forward pass, as a lone run's would).
            nets.keep(now_alive, alive)
            diverged_at = torch.where(alive & ~finite, step, diverged_at)
            epoch_loss += torch.where(now_alive, losses.detach(), 0.0)
            alive = now_alive
            step += 1
        if not bool(alive.any()):   # one host sync per epoch
            break

    # Evaluation on the full train, test and shifted-test sets, no augmentation, eval mode.
    diverged_at = diverged_at.tolist()
    records = []
    for s, model in enumerate(nets.unstack()):
        model.eval()
        with autocast:
            train = evaluate(model, x_train, y_train)
            test = evaluate(model, data["x_test"], data["y_test"])
            shift = evaluate(model, data["x_shift"], data["y_shift"]) if "x_shift" in data else None
        status, at = ("diverged", diverged_at[s]) if diverged_at[s] >= 0 else ("ok", None)
        steps = total_steps if at is None else at
        if status == "ok" and (train["nonfinite"] or test["nonfinite"] or not math.isfinite(test["loss"])):
            status, at = "diverged", steps  # the last update blew up
        records.append(_record(data, streams[s], status, at, steps, total_steps, train, test, shift,
                               float(epoch_loss[s]) / steps_per_epoch))
    seconds = time.perf_counter() - start
    for r in records:
        r["train_seconds"] = seconds / S   # the group's time, shared equally
        r["execution"] = {"seed_batch": S, "precision": precision,
                          "memory_format": "channels_last" if layout is torch.channels_last else "contiguous"}
    return records


def _dropout_masks(shapes: dict[str, tuple], p: dict[str, float], generators: list) -> dict[str, torch.Tensor]:
    """Each dropout layer's keep-masks (S, *shape), scaled by 1/(1-p): one uniform draw per seed
    from its own dropout stream covers all layers; thresholds and scales run once for all seeds."""
    if not shapes:
        return {}
    sizes = [math.prod(shape) for shape in shapes.values()]
    u = torch.stack([torch.rand(sum(sizes), device=g.device, generator=g) for g in generators])  # (S, sum)
    return {name: ((part >= p[name]) * (1 / (1 - p[name]))).view(len(generators), *shape)
            for (name, shape), part in zip(shapes.items(), u.split(sizes, dim=1))}


def train_run(data: dict, levels: dict[str, dict], seed: int, epochs: int, **execution) -> dict:
    """Train one config with one seed (see train_runs)."""
    return train_runs(data, levels, [seed], epochs, **execution)[0]


# Evaluation: the trained networks scored, and each run's record

ECE_BINS = 15   # equal-width confidence bins of the expected calibration error (Guo et al. 2017)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> dict:
    """Score `model` on x (N, ...) with labels y (N,).

    Returns {correct, loss (mean cross-entropy), ece, nonfinite (examples whose outputs
    were not finite)}: ece is the expected calibration
    error, sum over ECE_BINS equal-width bins of max-probability confidence of
    |accuracy - mean confidence| x fraction of examples in the bin. Outputs that are not
    finite (a diverged network) are scored as a uniform guess: chance accuracy,
    cross-entropy log(classes), so a failed run is a measured result, not a hole.
    """
    model.eval()
    correct, loss, nonfinite = 0, 0.0, 0
    bins = torch.zeros(2, ECE_BINS, dtype=torch.float64, device=x.device)   # per bin: hits, sum of confidence
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch]).float()
        finite = torch.isfinite(logits).all(-1, keepdim=True)
        nonfinite += int((~finite).sum())
        logits = torch.where(finite, logits, torch.zeros_like(logits))
        target = y[i:i + batch]
        confidence, predicted = logits.softmax(-1).max(-1)
        hit = predicted == target
        correct += int(hit.sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        which = (confidence * ECE_BINS).long().clamp(max=ECE_BINS - 1)
        bins.index_add_(1, which, torch.stack([hit, confidence]).double())
    hits, conf = bins
    ece = float((hits - conf).abs().sum() / len(x))   # sum_b n_b/N |acc_b - conf_b|
    return {"correct": correct, "loss": loss / len(x), "ece": ece, "nonfinite": nonfinite}


def _record(data, streams, status, diverged_at, steps, total_steps, train, test, shift, objective) -> dict:
    n, n_test = len(data["y_train"]), len(data["y_test"])
    shifted = {} if shift is None else {
        "shifted_accuracy": shift["correct"] / len(data["y_shift"]), "n_shift": len(data["y_shift"]),
        "n_shift_correct": shift["correct"]}
    return {
        "status": status,
        "test_accuracy": test["correct"] / n_test,
        "test_loss": test["loss"],
        "n_test": n_test,
        "n_test_correct": test["correct"],
        "ece": test["ece"],
        "train_accuracy": train["correct"] / n,
        "train_loss": train["loss"],
        "n_train": n,
        "n_train_correct": train["correct"],
        **shifted,
        # the optimised objective (whatever the loss factor is), mean over the last epoch
        "train_objective": objective if status == "ok" else float("nan"),
        "steps": steps,
        "total_steps": total_steps,
        "diverged_at_step": diverged_at,
        "streams": streams,
    }
