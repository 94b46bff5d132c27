"""How long Snakemake takes to plan a study of ten thousand runs: `snakemake -n` on a
generated study, wall time and peak memory (RSS of snakemake and its children).

The study is a full factorial on the two datasets that need no download (mnist1d, digits):
4 x 4 x 2 x 4 x 2 x 2 x 2 = 1,024 configs x 2 datasets x 5 seeds = 10,240 runs. It is
planned twice: with the default study's 48 runs per training job (228 training jobs) and
with one config per job (2,048 training jobs: the most jobs such a study can have, and
the most a SLURM array would carry). Each case runs in a fresh working directory, so the
whole workflow is planned, and is repeated (`--repeat`, best and worst are printed).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/dryrun_scale.py [--repeat 3] \
        [--out benchmarks/results/dryrun_scale.json]

Budget (issue: SLURM and studies of ten thousand runs): at most 15 s and 1 GB on 2 cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S, BUDGET_MB = 15.0, 1024.0


def levels(*specs: dict) -> list[dict]:
    return [{"name": s.get("name", s["kind"]), **s} for s in specs]


def study(runs_per_job: int) -> dict:
    """A full factorial of 1,024 configs on mnist1d and digits with 5 seeds: 10,240 runs."""
    return {
        "datasets": [
            {"name": "mnist1d", "kind": "mnist1d", "num_samples": 4000, "budget": {"epochs": 4}},
            {"name": "digits", "kind": "digits", "budget": {"epochs": 8}},
        ],
        "factors": {
            "init": {"baseline": "default", "levels": levels(
                {"kind": "default"}, {"kind": "he"}, {"kind": "xavier"},
                {"name": "small_normal", "kind": "normal", "std": 0.01})},
            "optimizer": {"baseline": "adam", "levels": levels(
                {"kind": "sgd", "lr": 0.05}, {"kind": "nesterov", "lr": 0.05},
                {"kind": "adam", "lr": 0.002}, {"kind": "lion", "lr": 0.0003})},
            "architecture": {"baseline": "cnn", "levels": levels(
                {"kind": "mlp", "width": 128, "depth": 2}, {"kind": "cnn", "width": 16, "depth": 2})},
            "loss": {"baseline": "cross_entropy", "levels": levels(
                {"kind": "cross_entropy"}, {"kind": "brier"},
                {"kind": "label_smoothing", "smoothing": 0.1}, {"kind": "focal", "gamma": 2.0})},
            "augmentation": {"baseline": "none", "levels": levels(
                {"kind": "none"}, {"kind": "noise", "std": 0.1})},
            "schedule": {"baseline": "cosine", "levels": levels(
                {"kind": "constant", "batch_size": 128}, {"kind": "cosine", "batch_size": 128})},
            "regularization": {"baseline": "none", "levels": levels(
                {"kind": "none"}, {"kind": "weight_decay", "weight_decay": 0.0005})},
        },
        "design": {"kind": "full"},
        "seeds": 5,
        "outcomes": ["test_accuracy", "train_accuracy"],
        "execution": {"runs_per_job": runs_per_job, "device": "auto", "threads": 1},
    }


def dry_run(config: Path, workdir: Path) -> dict:
    """One `snakemake -n` in a fresh process: wall seconds, peak RSS (MB) and planned jobs."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", "2", "--dry-run", "--quiet", "rules"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # Each dry run in its own child, so RUSAGE_CHILDREN's peak is this run's peak alone.
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter()\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "s = time.perf_counter() - t\n"
             "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
             "sys.stdout.write(f'{s} {rss} {p.returncode}\\n' + p.stdout)\n"
             "sys.stderr.write(p.stderr)\n")
    result = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env,
                            check=True)
    head, _, out = result.stdout.partition("\n")
    seconds, rss_mb, rc = head.split()
    if int(rc) != 0:
        raise SystemExit(f"snakemake -n failed:\n{out[-2000:]}\n{result.stderr[-3000:]}")
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    return {"seconds": round(float(seconds), 2), "peak_rss_mb": round(float(rss_mb)), "jobs": jobs}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/dryrun_scale.json"))
    args = p.parse_args()

    results = {"cores": os.cpu_count(), "budget": {"seconds": BUDGET_S, "peak_rss_mb": BUDGET_MB}, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, runs_per_job in (("48 runs per job", 48), ("one config per job", 5)):
            config = Path(tmp) / f"study_{runs_per_job}.yaml"
            config.write_text(yaml.safe_dump(study(runs_per_job), sort_keys=False))
            trials = []
            for i in range(args.repeat):
                workdir = Path(tmp) / f"work_{runs_per_job}_{i}"
                workdir.mkdir()
                trials.append(dry_run(config, workdir))
            jobs = trials[0]["jobs"]
            case = {
                "runs": 1024 * 2 * 5, "train_jobs": jobs.get("train"), "total_jobs": jobs.get("total"),
                "seconds": [t["seconds"] for t in trials], "peak_rss_mb": [t["peak_rss_mb"] for t in trials],
            }
            case["within_budget"] = max(case["seconds"]) <= BUDGET_S and max(case["peak_rss_mb"]) <= BUDGET_MB
            results["cases"][label] = case
            print(f"{label}: {case['runs']} runs, {case['train_jobs']} training jobs, {case['total_jobs']} jobs: "
                  f"{min(case['seconds']):.1f}-{max(case['seconds']):.1f} s, "
                  f"{min(case['peak_rss_mb'])}-{max(case['peak_rss_mb'])} MB peak RSS "
                  f"({'within' if case['within_budget'] else 'OVER'} {BUDGET_S:.0f} s / {BUDGET_MB:.0f} MB)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if not all(c["within_budget"] for c in results["cases"].values()):
        sys.exit(1)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s in all)")
