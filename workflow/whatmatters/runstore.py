"""The run store: where a job's stored runs live, the key a stored run is reused under, and
which runs changed after their job finished.

Standard library only: the Snakefile asks this at every start and `whatmatters status`
while a study runs, neither of which should pay for torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def code_fingerprint() -> str:
    """Hash of the source that determines a run's result (training, data, factors)."""
    here = Path(__file__).parent
    files = [here / "train.py", here / "data.py", *sorted((here / "factors").glob("*.py"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def run_key(dataset: dict, levels: dict, seed: int, fingerprint: str, precision: str = "fp32") -> str:
    """What determines a run's result; a stored run is reused only if its key matches.
    (How many seeds trained beside it does not: stacking changes results only by
    floating-point rounding, see `train.train_runs`.)"""
    payload = {"dataset": dataset, "levels": levels, "seed": seed, "code": fingerprint, "precision": precision}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def run_path(run_dir: str | Path, config_id: str, seed: int) -> Path:
    """results/runs/{dataset}/{config_id}/{seed}.json: one stored run."""
    return Path(run_dir) / config_id / f"{seed}.json"


def manifest_path(run_dir: str | Path, job: str) -> Path:
    """results/runs/{dataset}/jobs/{job}.json: a finished job's manifest."""
    return Path(run_dir) / "jobs" / f"{job}.json"


def cannot_retry_path(out_path: str | Path) -> Path:
    """Where a job's attempt records an error a retry cannot fix (no GPU, unreadable data,
    bad settings), beside its manifest: the retry Snakemake makes anyway reads it and stops
    at once, before loading torch."""
    return Path(f"{out_path}.cannot-retry")


def stored_after_manifest(run_dir: str | Path, job: str, config_ids: list[str], seeds: list[int]) -> list[str]:
    """The stored runs of a finished job written after its manifest: a job writes each run
    before its manifest, so a later one was changed by something else (truncated by a full
    disk, edited, copied over). [] for a job that has not finished. One stat per run."""
    try:
        finished = os.stat(manifest_path(run_dir, job)).st_mtime
    except OSError:
        return []
    changed = []
    for config_id in config_ids:
        for seed in seeds:
            path = run_path(run_dir, config_id, seed)
            try:
                if os.stat(path).st_mtime > finished:
                    changed.append(str(path))
            except OSError:
                pass   # absent: nothing to name; the manifest keeps the record
    return changed


def changed_jobs(runs_root: str | Path, jobs: dict, seeds: list[int]) -> dict[str, list[str]]:
    """{manifest path: [its stored runs changed after it]} over a design's jobs
    ({(dataset, job): [config_id, ...]}, design.expand), for the jobs that have any."""
    changed = {}
    for (dataset, job), config_ids in jobs.items():
        runs = stored_after_manifest(Path(runs_root) / dataset, job, config_ids, seeds)
        if runs:
            changed[str(manifest_path(Path(runs_root) / dataset, job))] = runs
    return changed


# Snakemake options under which nothing is trained: a changed run is then only named.
_INSPECTING = ("--dry-run", "--dryrun", "--summary", "--detailed-summary", "--report", "--unlock", "--lint",
               "--list-rules", "--list", "--dag", "--rulegraph", "--filegraph", "--touch", "--list-changes",
               "--cleanup-metadata", "--list-input-changes", "--list-params-changes", "--list-code-changes")


def forget_jobs_with_changed_runs(runs_root: str | Path, jobs: dict, seeds: list[int], argv: list[str]) -> list[str]:
    """Remove the manifest of every job with a stored run changed after it (changed_jobs),
    so that Snakemake reruns the job, which names each unreadable run and retrains it; the
    manifest only repeats the stored runs, which stay. Under an option that trains nothing
    (a dry run, --report, ...) nothing is removed. Returns one line per such job."""
    changed = changed_jobs(runs_root, jobs, seeds)
    inspecting = any(a in _INSPECTING or a.startswith(("--list", "--report")) or
                     (len(a) <= 5 and a[:1] == "-" and a[1:].isalpha() and "n" in a[1:]) for a in argv[1:])
    lines = []
    for manifest, runs in changed.items():
        named = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        if inspecting:
            lines.append(f"stored runs changed after {manifest} was written ({named}): a run of snakemake "
                         "retrains them")
        else:
            Path(manifest).unlink(missing_ok=True)
            lines.append(f"stored runs changed after {manifest} was written ({named}): rerunning that job")
    return lines
