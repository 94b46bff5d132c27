"""Per-job start-up share of a finished study's training: how much of each training job's
wall time is not training (Python start, imports, data load, exit).

Reads the Snakemake `benchmark:` files of the train rule (job wall time, s) and the job
manifests (seconds spent training runs). Run after `make run`:

    .venv/bin/python benchmarks/startup_share.py [results] [--json OUT.json]
"""

import json
import sys
from pathlib import Path

import pandas as pd


def startup_share(results: Path) -> pd.DataFrame:
    rows = []
    for bench in sorted(results.glob("benchmarks/train/*/*.tsv")):
        dataset, job = bench.parent.name, bench.stem
        manifest = json.loads((results / "runs" / dataset / "jobs" / f"{job}.json").read_text())
        wall = pd.read_csv(bench, sep="\t")["s"].iloc[-1]
        rows.append({"dataset": dataset, "job": job, "wall_s": wall, "train_s": manifest["timing"]["train_seconds"],
                     "runs_trained": manifest["trained"],
                     "in_process_startup_s": manifest["timing"]["startup_seconds"],
                     "load_s": manifest["timing"]["load_seconds"]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    args = sys.argv[1:]
    json_out = args.pop(args.index("--json") + 1) if "--json" in args else None
    args = [a for a in args if a != "--json"]
    results = Path(args[0] if args else "results")
    jobs = startup_share(results)
    if jobs.empty:
        sys.exit(f"no train benchmarks under {results}/benchmarks/train: run the study first")
    overhead = jobs["wall_s"] - jobs["train_s"]
    print(jobs.round(2).to_string(index=False))
    print(f"\n{len(jobs)} training jobs, {int(jobs['runs_trained'].sum())} runs trained")
    print(f"job wall time   {jobs['wall_s'].sum():8.1f} s")
    print(f"training        {jobs['train_s'].sum():8.1f} s")
    print(f"start-up/exit   {overhead.sum():8.1f} s  = {overhead.sum() / jobs['train_s'].sum():.1%} of training time "
          f"({overhead.sum() / jobs['wall_s'].sum():.1%} of job wall time); "
          f"{overhead.mean():.1f} s per job")
    if json_out:
        Path(json_out).write_text(json.dumps({
            "jobs": len(jobs), "runs_trained": int(jobs["runs_trained"].sum()),
            "job_wall_s": float(jobs["wall_s"].sum()), "train_s": float(jobs["train_s"].sum()),
            "overhead_share_of_wall": float(overhead.sum() / jobs["wall_s"].sum()),
            "overhead_s_per_job": float(overhead.mean())}, indent=1))
