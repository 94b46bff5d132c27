"""How far a study has got: runs done / total per dataset, failures, and the time left.

Read from the run store alone (results/runs/: each run's record, each job's manifest), so it
answers the same on a workstation, during a SLURM run (on any node that sees the shared
filesystem), and after one: `python -m whatmatters status [STUDY]`. Standard library only.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from whatmatters.runstore import cannot_retry_path, code_fingerprint, manifest_path, run_key, run_path

RECENT_SECONDS = 600   # the rate of the last 10 minutes estimates the time left


def study_status(study: dict, expanded: dict, runs_root: str | Path = "results/runs", now: float | None = None) -> dict:
    """{datasets: {name: {total, done, diverged, failed_jobs: {job: error}}}, run_seconds: [s per
    done run], finished_at: [mtime of each done run], now}. A run is done when its record is
    stored under its current key (a record from older code or settings will be retrained)."""
    now = time.time() if now is None else now
    fingerprint = code_fingerprint()
    by_id = {c["config_id"]: c for c in expanded["configs"]}
    out = {"datasets": {}, "run_seconds": [], "finished_at": [], "now": now}
    for ds in study["datasets"]:
        out["datasets"][ds["name"]] = {"total": 0, "done": 0, "diverged": 0, "failed_jobs": {}}
    for (dataset, job), config_ids in expanded["jobs"].items():
        spec = next(d for d in study["datasets"] if d["name"] == dataset)
        counts = out["datasets"][dataset]
        run_dir = Path(runs_root) / dataset
        failure = _failure(run_dir, job)
        if failure:
            counts["failed_jobs"][job] = failure
        for config_id in config_ids:
            for seed in study["seeds"]:
                counts["total"] += 1
                path = run_path(run_dir, config_id, seed)
                record = _record(path)
                keys = {run_key(spec, by_id[config_id]["levels"], seed, fingerprint, p) for p in ("fp32", "bf16")}
                if record is None or record.get("key") not in keys:
                    continue
                counts["done"] += 1
                counts["diverged"] += record.get("status") == "diverged"
                if isinstance(record.get("train_seconds"), (int, float)):
                    out["run_seconds"].append(record["train_seconds"])
                out["finished_at"].append(path.stat().st_mtime)
    return out


def _record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _failure(run_dir: Path, job: str) -> str | None:
    """The error of a job whose last attempt failed (recorded in its manifest with
    analysis.allow_missing) or that met an error a retry cannot fix; else None."""
    marker = cannot_retry_path(manifest_path(run_dir, job))
    if marker.exists():
        return marker.read_text(errors="replace").strip()
    manifest = _record(manifest_path(run_dir, job))
    if manifest and isinstance(manifest.get("failed"), dict):
        return str(manifest["failed"].get("error", "failed"))
    return None


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h} h {rest // 60:02d} min" if h else (f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s")


def status_text(status: dict) -> str:
    """The status as lines for a terminal."""
    lines, done, total = [], 0, 0
    width = max(len(name) for name in status["datasets"])
    for name, c in status["datasets"].items():
        done, total = done + c["done"], total + c["total"]
        line = f"{name:<{width}}  {c['done']:>6} / {c['total']} runs done"
        if c["diverged"]:
            line += f" ({c['diverged']} diverged: results, not failures)"
        lines.append(line)
        for job, error in c["failed_jobs"].items():
            lines.append(f"{'':<{width}}  failed: {job}: {error}")
    left = total - done
    lines.append(f"{'all':<{width}}  {done:>6} / {total} runs done ({100 * done / max(total, 1):.0f}%), {left} left")
    seconds = status["run_seconds"]
    if left == 0:
        lines.append("training is complete")
    elif not seconds:
        lines.append("time left: unknown until the first run finishes")
    else:
        per_run = statistics.median(seconds)
        line = f"measured: {per_run:.1f} s per run (median of {len(seconds)}); {_duration(left * per_run)} of training left"
        recent = [t for t in status["finished_at"] if t >= status["now"] - RECENT_SECONDS]
        if len(recent) >= 2:
            rate = len(recent) / RECENT_SECONDS
            line += f"; at the last 10 minutes' rate ({60 * rate:.1f} runs/min): about {_duration(left / rate)} left"
        else:
            line += " on one worker; nothing finished in the last 10 minutes"
        lines.append(line)
    return "\n".join(lines) + "\n"
