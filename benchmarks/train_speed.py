"""Training speed, side by side in one process on one device (docs/benchmarks.md).

For each workload, a "run" is the same number of SGD steps on the same network, followed
by the same evaluation (full train, test and shifted-test sets); we time:

  (a) tutorial  the loop a user writes from the PyTorch tutorials: a Dataset whose
                per-sample transforms run in DataLoader workers (torchvision transforms
                on PIL images for CIFAR), fp32, batches copied to the device each step
  (b) ours      whatmatters.train.train_runs, one seed
  (c) stacked   whatmatters.train.train_runs, S seeds trained together (vmap)
  (d) floor     forward + backward + optimizer step on ready-made device tensors, no
                augmentation, same precision and memory format as (b)

and print runs/hour and the ratios b/a, d/b (how close ours is to the floor) and c/b.
Each method runs --repeats times, interleaved, and the fastest counts.
Synthetic tensors (timing does not depend on the pixels). A second part trains MNIST-1D
(the real dataset, shipped in the `mnist1d` package) with S seeds in fp32 and in bf16 and
compares accuracy with the seed-to-seed spread.

    .venv/bin/python benchmarks/train_speed.py                 # GPU if present, full size
    .venv/bin/python benchmarks/train_speed.py --quick         # small sizes (CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from whatmatters import data as datasets  # noqa: E402
from whatmatters.factors import FACTORS  # noqa: E402
from whatmatters.jobs import resolve_execution  # noqa: E402
from whatmatters.study import EXECUTION_DEFAULTS  # noqa: E402
from whatmatters.train import evaluate, train_runs  # noqa: E402

WORKLOADS = {
    # the GPU study's baseline network and augmentation (config/gpu.yaml)
    "cifar_resnet": {"shape": (3, 32, 32), "architecture": ("resnet", {"width": 32, "depth": 4}),
                     "augmentation": ("crop_flip", {"max_shift": 4}), "batch": 256,
                     "n_train": 50_000, "n_test": 10_000, "quick_train": 512, "quick_test": 256},
    # the default study's baseline network (config.yaml) on MNIST-1D-shaped signals
    "mnist1d_cnn": {"shape": (1, 40), "architecture": ("cnn", {"width": 16, "depth": 2}),
                    "augmentation": ("shift", {"max_shift": 2}), "batch": 128,
                    "n_train": 4_000, "n_test": 1_000, "quick_train": 4_000, "quick_test": 1_000},
}
LR = 0.05


def levels_for(w: dict) -> dict:
    def level(factor, kind, **settings):
        return {"name": kind, "kind": kind, "settings": FACTORS[factor].resolve(factor, kind, settings)}

    return {"init": level("init", "default"), "optimizer": level("optimizer", "nesterov", lr=LR),
            "architecture": level("architecture", w["architecture"][0], **w["architecture"][1]),
            "loss": level("loss", "cross_entropy"),
            "augmentation": level("augmentation", w["augmentation"][0], **w["augmentation"][1]),
            "schedule": level("schedule", "constant", batch_size=w["batch"]),
            "regularization": level("regularization", "weight_decay")}


def synthetic(w: dict, n_train: int, n_test: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    make = lambda n: (torch.randn(n, *w["shape"], generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    (xt, yt), (xs, ys), (xh, yh) = make(n_train), make(n_test), make(n_test)
    return {"x_train": xt.to(device), "y_train": yt.to(device), "x_test": xs.to(device), "y_test": ys.to(device),
            "x_shift": xh.to(device), "y_shift": yh.to(device), "num_classes": 10, "input_shape": w["shape"]}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def network(w: dict, device, channels_last=False):
    torch.manual_seed(0)
    model = FACTORS["architecture"].build(w["architecture"][0], w["architecture"][1], w["shape"], 10, 0.0)
    return model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def evaluate_all(model, data):
    model.eval()
    for split in ("train", "test", "shift"):
        evaluate(model, data[f"x_{split}"], data[f"y_{split}"])


# (a) the tutorial loop -------------------------------------------------------------------

class CifarLike(Dataset):
    """What torchvision.datasets.CIFAR10 hands a transform: uint8 HWC images as PIL."""

    def __init__(self, n):
        from PIL import Image  # noqa: F401  (torchvision's transforms take PIL images)
        from torchvision import transforms as T

        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, n)
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class SignalLike(Dataset):
    """1-D signals with a per-sample random shift, written the way a tutorial would."""

    def __init__(self, n, max_shift=2):
        g = torch.Generator().manual_seed(0)
        self.x, self.y, self.max_shift = torch.randn(n, 1, 40, generator=g), torch.randint(0, 10, (n,), generator=g), max_shift

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        k = int(torch.randint(-self.max_shift, self.max_shift + 1, ()))
        x = torch.roll(self.x[i], k, dims=-1)
        if k > 0:
            x[..., :k] = 0
        elif k < 0:
            x[..., k:] = 0
        return x, int(self.y[i])


def tutorial(w, data, epochs, device, workers):
    n = len(data["y_train"])
    ds = CifarLike(n) if len(w["shape"]) == 3 else SignalLike(n)
    loader = DataLoader(ds, batch_size=w["batch"], shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model = network(w, device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    evaluate_all(model, data)
    sync(device)
    return time.perf_counter() - start


# (d) the compute floor -------------------------------------------------------------------

def floor(w, data, epochs, device, precision, channels_last):
    model = network(w, device, channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    b, steps = w["batch"], epochs * (len(data["y_train"]) // w["batch"])
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batches = [(data["x_train"][i * b:(i + 1) * b].contiguous(memory_format=layout), data["y_train"][i * b:(i + 1) * b])
               for i in range(min(8, steps))]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    sync(device)
    start = time.perf_counter()
    model.train()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with autocast:
        evaluate_all(model, data)
    sync(device)
    return time.perf_counter() - start


def ours(w, data, epochs, seeds, execution):
    start = time.perf_counter()
    train_runs(data, levels_for(w), seeds, epochs, **execution)
    return time.perf_counter() - start


def speed(name, w, args, device) -> dict:
    n_train, n_test = (w["quick_train"], w["quick_test"]) if args.quick else (w["n_train"], w["n_test"])
    data = synthetic(w, n_train, n_test, device)
    execution = resolve_execution(EXECUTION_DEFAULTS, device, args.seeds)
    execution.pop("seed_batch")
    epochs = args.epochs
    # warm-up: kernels, cuDNN autotuning, DataLoader start (not timed)
    warm = synthetic(w, 2 * w["batch"], 64, device)
    ours(w, warm, 1, [0], execution), ours(w, warm, 1, list(range(args.seeds)), execution)
    floor(w, warm, 1, device, **execution)
    methods = {
        "a_tutorial": lambda: tutorial(w, data, epochs, device, args.workers),
        "b_ours_one_seed": lambda: ours(w, data, epochs, [0], execution),
        "c_ours_stacked": lambda: ours(w, data, epochs, list(range(args.seeds)), execution),
        "d_floor": lambda: floor(w, data, epochs, device, **execution),
    }
    # interleaved repeats, fastest of each: a burst of load from other processes on a shared
    # machine then slows one repeat of every method rather than all repeats of one
    times = {k: [] for k in methods}
    for _ in range(args.repeats):
        for k, method in methods.items():
            times[k].append(method())
    seconds = {k: min(v) for k, v in times.items()}
    runs = {k: (args.seeds if k == "c_ours_stacked" else 1) for k in seconds}
    per_hour = {k: 3600 * runs[k] / s for k, s in seconds.items()}
    return {"workload": name, "n_train": n_train, "n_test": n_test, "epochs": epochs,
            "steps_per_run": epochs * (n_train // w["batch"]), "batch": w["batch"],
            "architecture": w["architecture"], "augmentation": w["augmentation"], "execution": execution,
            "seconds": seconds, "all_seconds": times, "runs_per_hour": per_hour,
            "ratios": {"b_over_a": per_hour["b_ours_one_seed"] / per_hour["a_tutorial"],
                       "b_time_over_d_time": seconds["b_ours_one_seed"] / seconds["d_floor"],
                       "c_over_b": per_hour["c_ours_stacked"] / per_hour["b_ours_one_seed"]}}


def precision_check(args, device) -> dict:
    """MNIST-1D, default study's CNN, S seeds stacked: fp32 vs bf16 test accuracy."""
    spec = {"name": "mnist1d", "kind": "mnist1d", "settings": {"num_samples": 5000, "test_fraction": 0.2, "seed": 42}}
    data = {k: v.to(device) if torch.is_tensor(v) else v for k, v in datasets.build(spec).items()}
    w = WORKLOADS["mnist1d_cnn"]
    seeds = list(range(args.seeds))
    out = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        runs = train_runs(data, levels_for(w), seeds, args.precision_epochs, precision=precision)
        acc = [r["test_accuracy"] for r in runs]
        out[precision] = {"mean": statistics.mean(acc), "sd": statistics.stdev(acc), "accuracies": acc,
                          "seconds": time.perf_counter() - start}
    diff = out["bf16"]["mean"] - out["fp32"]["mean"]
    se = (out["bf16"]["sd"] ** 2 / len(seeds) + out["fp32"]["sd"] ** 2 / len(seeds)) ** 0.5
    out["difference"] = {"bf16_minus_fp32": diff, "standard_error": se, "z": diff / se if se else 0.0}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small training sets (for a CPU)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the fastest counts")
    p.add_argument("--seeds", type=int, default=8, help="S, seeds stacked in (c)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers in (a), as in the tutorial")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--precision-epochs", type=int, default=4)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "quick": args.quick, "seeds": args.seeds, "workers": args.workers}
    print(json.dumps(info))
    results = []
    for name in args.workloads:
        r = speed(name, WORKLOADS[name], args, device)
        results.append(r)
        print(f"\n{name}: {r['n_train']} images x {r['epochs']} epochs = {r['steps_per_run']} steps of {r['batch']} "
              f"per run, {r['execution']}")
        for k, v in r["runs_per_hour"].items():
            print(f"  {k:18s} {r['seconds'][k]:8.2f} s  {v:10.1f} runs/hour")
        q = r["ratios"]
        print(f"  (b)/(a) runs/hour {q['b_over_a']:.2f}x (goal >= 5 on a GPU); time (b)/(d) {q['b_time_over_d_time']:.2f} "
              f"(goal <= 1.25); (c)/(b) runs/hour {q['c_over_b']:.2f}x (goal >= 4)")
    check = precision_check(args, device)
    print(f"\nMNIST-1D, {args.seeds} seeds x {args.precision_epochs} epochs: fp32 {check['fp32']['mean']:.4f} "
          f"(sd {check['fp32']['sd']:.4f}), bf16 {check['bf16']['mean']:.4f} (sd {check['bf16']['sd']:.4f}); "
          f"difference {check['difference']['bf16_minus_fp32']:+.4f} = {check['difference']['z']:+.2f} standard errors")
    out = Path(args.out or Path(__file__).parent / "results" / f"train_speed_{device.type}.json")
    out.write_text(json.dumps({"info": info, "speed": results, "precision": check}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
