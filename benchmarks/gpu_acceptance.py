"""The Python steps of benchmarks/gpu_acceptance.sh (see there); one subcommand each.

    study  OUT DEVICE SOURCE MIN_RUNS
                               write OUT/study/config.yaml: the study SOURCE on DEVICE, with
                               seeds added until it has >= MIN_RUNS runs
    check  OUT DEVICE          the study's run table is complete; every record says DEVICE,
                               its precision and its seed batch -> OUT/study_check.json
    hours  OUT DEVICE IMAGES [LIMIT]
                               one epoch of each network of config/gpu.yaml (the first LIMIT
                               network and batch size pairs), stacked as the study stacks it, on
                               IMAGES CIFAR-shaped tensors; the study's GPU-hours estimated from
                               those times (of the runs timed, if LIMIT) -> OUT/gpu_hours.json
    report OUT                 every OUT/*.json in one OUT/gpu_acceptance.json and .md
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "fashion_mnist": 60_000}
CIFAR = (3, 32, 32)   # fashion_mnist's 1x28x28 is timed at this shape too: an overestimate


def study(out: Path, device: str, source: str, min_runs: str) -> None:
    """The study `source` (config.yaml: shipped datasets only) on `device`, with enough seeds
    for >= `min_runs` runs."""
    import yaml

    from whatmatters.config import read_config
    from whatmatters.design import expand
    from whatmatters.study import load_study

    config = read_config(ROOT / source)
    config["execution"] = {**config.get("execution", {}), "device": device}
    while len(expand(load_study(config))["runs"]) < int(min_runs):
        config["seeds"] = (config["seeds"] if isinstance(config["seeds"], int) else len(config["seeds"])) + 1
    (out / "study").mkdir(parents=True, exist_ok=True)
    (out / "study" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def check(out: Path, device: str) -> None:
    import pandas as pd

    results = out / "study" / "results"
    table = pd.read_parquet(results / "table" / "runs.parquet")
    records = [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/*/*.json"))
               if p.parent.name != "jobs"]
    problems = []
    if (table["status"] == "missing").any():
        problems.append(f"{int((table['status'] == 'missing').sum())} runs missing from the table")
    wrong = [r.get("run_id", "?") for r in records if not str(r["provenance"]["device"]).startswith(device)]
    if wrong:
        problems.append(f"{len(wrong)} records not trained on {device}")
    unsaid = [r.get("run_id", "?") for r in records
              if not {"precision", "seed_batch"} <= set(r.get("execution", {}))]
    if unsaid:
        problems.append(f"{len(unsaid)} records without precision or seed batch")
    summary = {"runs_in_table": len(table), "records": len(records),
               "status": dict(Counter(table["status"])),
               "device": dict(Counter(str(r["provenance"]["device"]) for r in records)),
               "precision": dict(Counter(r["execution"]["precision"] for r in records)),
               "seed_batch": dict(Counter(str(r["execution"]["seed_batch"]) for r in records)),
               "fits": sorted(p.parent.name for p in results.glob("analysis/*/posterior.nc")),
               "problems": problems, "ok": not problems and len(records) == len(table)}
    (out / "study_check.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    if not summary["ok"]:
        sys.exit(f"study check failed: {problems or 'records and table differ in size'}")


def hours(out: Path, device_name: str, images: int, limit: int | None = None) -> None:
    """Seconds per epoch of each (network, batch size) of config/gpu.yaml, all seeds of a
    config stacked as the study trains them, and the study's GPU-hours from those: the sum over
    its runs of epochs x (training images / IMAGES) x seconds per timed epoch / seeds stacked.
    Evaluation and job start-up are left out (docs/benchmarks.md measures them)."""
    import torch

    from whatmatters.config import read_config
    from whatmatters.design import expand
    from whatmatters.jobs import resolve_execution
    from whatmatters.study import load_study
    from whatmatters.train import train_runs

    device = torch.device(device_name)
    gpu_study = load_study(read_config(ROOT / "config" / "gpu.yaml"))
    configs = {c["config_id"]: c["levels"] for c in expand(gpu_study)["configs"]}
    seeds = gpu_study["seeds"]
    execution = resolve_execution(gpu_study["execution"], device, len(seeds))
    stack = execution.pop("seed_batch")

    def key(levels):
        return levels["architecture"]["name"], levels["schedule"]["settings"]["batch_size"]

    timed = {}
    g = torch.Generator().manual_seed(0)
    data = {"x_train": torch.randn(images, *CIFAR, generator=g).to(device),
            "y_train": torch.randint(0, 10, (images,), generator=g).to(device),
            "x_test": torch.randn(64, *CIFAR, generator=g).to(device),
            "y_test": torch.randint(0, 10, (64,), generator=g).to(device), "num_classes": 10, "input_shape": CIFAR}
    for levels in configs.values():
        if key(levels) in timed or len(timed) == limit:
            continue
        # this network and batch size, the other factors' levels as in the first config
        base = dict(next(iter(configs.values())))
        base.update(architecture=levels["architecture"], schedule=levels["schedule"])
        train_runs(data, base, seeds[:stack], 1, **execution)   # warm-up: kernels, autotuning
        seconds = {}
        for epochs in (1, 2):   # the difference is one epoch, evaluation and set-up left out
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_runs(data, base, seeds[:stack], epochs, **execution)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[epochs] = time.perf_counter() - start
        timed[key(levels)] = max(seconds[2] - seconds[1], 1e-9)
        print(f"  {key(levels)[0]:14s} batch {key(levels)[1]:4d}: {timed[key(levels)]:.3f} s per epoch of "
              f"{images} images, {stack} seeds stacked")
    total, estimated = 0.0, 0
    for ds in gpu_study["datasets"]:
        n = ds["variant"]["subsample"] or TRAIN_IMAGES[ds["kind"]]
        for levels in configs.values():
            if key(levels) in timed:
                total += ds["budget"]["epochs"] * n / images * timed[key(levels)] * len(seeds) / stack
                estimated += len(seeds)
    result = {"device": str(device), "images_timed": images, "seeds_stacked": stack, "execution": execution,
              "seconds_per_epoch": {f"{a} batch {b}": s for (a, b), s in timed.items()},
              "runs": len(configs) * len(gpu_study["datasets"]) * len(seeds), "runs_estimated": estimated,
              "estimated_gpu_hours": total / 3600, "goal_gpu_hours": 3.0}
    (out / "gpu_hours.json").write_text(json.dumps(result, indent=1))
    print(f"config/gpu.yaml: {estimated} of {result['runs']} runs, estimated {result['estimated_gpu_hours']:.2f} "
          f"{'GPU' if device.type == 'cuda' else 'CPU'}-hours on this device (goal <= 3 GPU-hours on one H100)")


def report(out: Path) -> None:
    """One JSON with every part, one Markdown with the figures that the goals speak of."""
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "gpu_acceptance"}
    (out / "gpu_acceptance.json").write_text(json.dumps(parts, indent=1))
    env = parts.get("environment", {})
    lines = ["# GPU acceptance", "", f"{env.get('date', '')}: {env.get('device', '?')}, driver {env.get('driver', '?')}, "
             f"torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}, Python {env.get('python', '?')}, "
             f"mode {env.get('mode', '?')}", "", "| part | figure | value |", "| --- | --- | --- |"]
    for w in parts.get("train_speed", {}).get("speed", []):
        for k, v in w["runs_per_hour"].items():
            lines.append(f"| train_speed {w['workload']} | {k} runs/hour | {v:.1f} |")
        for k, v in w["ratios"].items():
            lines.append(f"| train_speed {w['workload']} | {k} | {v:.2f} |")
    for k in ("status", "device", "precision", "seed_batch", "fits", "ok"):
        if k in parts.get("study_check", {}):
            lines.append(f"| end-to-end study | {k} | {parts['study_check'][k]} |")
    for k, v in parts.get("startup_share", {}).items():
        lines.append(f"| start-up share | {k} | {v} |")
    for k, v in parts.get("gpu_hours", {}).get("seconds_per_epoch", {}).items():
        lines.append(f"| epoch time ({parts['gpu_hours']['images_timed']} images) | {k} | {v:.3f} s |")
    if "gpu_hours" in parts:
        h = parts["gpu_hours"]
        lines.append(f"| config/gpu.yaml | estimated hours, {h['runs_estimated']} of {h['runs']} runs "
                     f"| {h['estimated_gpu_hours']:.2f} |")
    for k, v in parts.get("sections", {}).items():
        lines.append(f"| section | {k} | {v} |")
    (out / "gpu_acceptance.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpu_acceptance.json'} and {out / 'gpu_acceptance.md'}")


if __name__ == "__main__":
    command, out, *rest = sys.argv[1:]
    out = Path(out)
    {"study": lambda: study(out, *rest), "check": lambda: check(out, *rest),
     "hours": lambda: hours(out, rest[0], *map(int, rest[1:])), "report": lambda: report(out)}[command]()
