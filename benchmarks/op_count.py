"""Operator calls per training step, one seed vs S stacked seeds (docs/benchmarks.md).

On a GPU a small network's step is bound by kernel launches, and each aten operator call is
at least one launch, so counting operator calls on the CPU measures what stacking saves
there. A TorchDispatchMode counts every aten call (forward, backward, optimizer, and the
trainer's bookkeeping) of `whatmatters.train.train_runs`; a step's count is the difference
between 6 and 2 steps of one epoch, divided by 4 (set-up and evaluation cancel), at batch
size 16: how many examples a batch holds changes no operator call, only its work. Calls made
inside augmentation, dropout-mask drawing and the divergence snapshot/undo
(`Replicas.snapshot`, `Replicas.keep`) are counted apart as bookkeeping.

Networks: each architecture of the default study (config.yaml) on MNIST-1D-shaped signals,
and config/gpu.yaml's baseline ResNet on CIFAR-shaped images; with augmentation and dropout
on, so every kind of bookkeeping is in the step.

    PYTHONPATH=workflow .venv/bin/python benchmarks/op_count.py [--seeds 8]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from whatmatters import train  # noqa: E402
from whatmatters.factors import FACTORS  # noqa: E402

BATCH = 16
METADATA = {torch.ops.aten.detach.default, torch.ops.aten.lift_fresh.default, torch.ops.aten._unsafe_view.default,
            torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default}
SIGNAL = {"shape": (1, 40), "augmentation": ("shift", {"max_shift": 2})}
IMAGE = {"shape": (3, 32, 32), "augmentation": ("crop_flip", {"max_shift": 4})}
NETWORKS = {  # name: (workload, architecture kind, settings)
    "mlp (default study)": (SIGNAL, "mlp", {"width": 128, "depth": 2}),
    "cnn (default study)": (SIGNAL, "cnn", {"width": 16, "depth": 2}),
    "resnet (default study)": (SIGNAL, "resnet", {"width": 16, "depth": 2}),
    "transformer (default study)": (SIGNAL, "transformer", {"dim": 32, "depth": 1, "heads": 4}),
    "resnet (CIFAR, config/gpu.yaml)": (IMAGE, "resnet", {"width": 32, "depth": 4}),
}


class OpCounter(TorchDispatchMode):
    """Counts aten operator calls, by phase: 'step' unless inside bookkeeping."""

    def __init__(self):
        super().__init__()
        self.counts, self.phase = Counter(), "step"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[self.phase] += 1
        if not func.is_view and func not in METADATA:   # a view launches no kernel on a GPU
            self.counts[self.phase + " kernels"] += 1
        return func(*args, **(kwargs or {}))


def bookkeeping(counter: OpCounter, fn):
    def wrapped(*args, **kwargs):
        before, counter.phase = counter.phase, "bookkeeping"
        try:
            return fn(*args, **kwargs)
        finally:
            counter.phase = before
    return wrapped


def levels(workload: dict, kind: str, settings: dict) -> dict:
    def level(factor, k, **s):
        return {"name": k, "kind": k, "settings": FACTORS[factor].resolve(factor, k, s)}

    aug_kind, aug_settings = workload["augmentation"]
    return {"init": level("init", "default"), "optimizer": level("optimizer", "adam", lr=0.002),
            "architecture": level("architecture", kind, **settings), "loss": level("loss", "cross_entropy"),
            "augmentation": level("augmentation", aug_kind, **aug_settings),
            "schedule": level("schedule", "cosine", batch_size=BATCH),
            "regularization": level("regularization", "both", weight_decay=5e-4, p=0.1)}


def count(workload: dict, config: dict, seeds: int, steps: int) -> Counter:
    g = torch.Generator().manual_seed(0)
    n = BATCH * steps
    data = {"x_train": torch.randn(n, *workload["shape"], generator=g), "y_train": torch.randint(0, 10, (n,), generator=g),
            "x_test": torch.randn(8, *workload["shape"], generator=g), "y_test": torch.randint(0, 10, (8,), generator=g),
            "num_classes": 10, "input_shape": workload["shape"]}
    counter = OpCounter()
    patches = [(train.Replicas, "snapshot"), (train.Replicas, "keep"),
               (train, "_dropout_mask"), (train, "_dropout_masks")]   # before and after the masks were batched
    saved = [(owner, name, getattr(owner, name)) for owner, name in patches if hasattr(owner, name)]
    registry, build = FACTORS["augmentation"], FACTORS["augmentation"].build
    try:
        for owner, name, fn in saved:
            setattr(owner, name, bookkeeping(counter, fn))
        registry.build = lambda *a, **k: bookkeeping(counter, build(*a, **k))
        with counter:
            train.train_runs(data, config, list(range(seeds)), 1)
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
        del registry.build
    return counter.counts


def per_step(workload: dict, config: dict, seeds: int) -> dict:
    few, many = count(workload, config, seeds, 2), count(workload, config, seeds, 6)
    step = {k: (many[k] - few[k]) / 4 for k in ("step", "bookkeeping", "step kernels", "bookkeeping kernels")}
    calls, kernels = step["step"] + step["bookkeeping"], step["step kernels"] + step["bookkeeping kernels"]
    return {"calls": calls, "bookkeeping": step["bookkeeping"], "bookkeeping_share": step["bookkeeping"] / calls,
            "kernel_calls": kernels, "bookkeeping_kernel_share": step["bookkeeping kernels"] / kernels}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="S, seeds stacked")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "op_count.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"| network | calls/step: 1 seed, {args.seeds} stacked, ratio (goal <= 1.3) | bookkeeping share, stacked "
          f"(goal <= 20%) | without views (kernel launches on a GPU): 1 seed, {args.seeds} stacked, ratio | bookkeeping share |")
    print("| --- | --- | --- | --- | --- |")
    for name, (workload, kind, settings) in NETWORKS.items():
        config = levels(workload, kind, settings)
        one, stacked = per_step(workload, config, 1), per_step(workload, config, args.seeds)
        r = {"network": name, "one_seed": one, "stacked": stacked, "seeds": args.seeds,
             "ratio": stacked["calls"] / one["calls"], "kernel_ratio": stacked["kernel_calls"] / one["kernel_calls"]}
        rows.append(r)
        print(f"| {name} | {one['calls']:.0f}, {stacked['calls']:.0f}, {r['ratio']:.2f}x | {stacked['bookkeeping_share']:.0%} "
              f"| {one['kernel_calls']:.0f}, {stacked['kernel_calls']:.0f}, {r['kernel_ratio']:.2f}x "
              f"| {stacked['bookkeeping_kernel_share']:.0%} |")
    Path(args.out).write_text(json.dumps({"torch": torch.__version__, "networks": rows}, indent=1))


if __name__ == "__main__":
    main()
