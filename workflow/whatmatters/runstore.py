"""Where a job's stored runs live, and which of them changed after the job finished.

Standard library only: the Snakefile asks this at every start, for every job.
"""

from __future__ import annotations

import os
from pathlib import Path


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
