"""Aggregation: every run of the design, gathered into one table (one row per run).

Columns: run_id, dataset, config_id, seed, job, one column per factor (its level name),
status, the outcomes (accuracies, losses and their counts), timings, and the run's key
and code revision. A design run with no readable record is named in the error: the
analysis never runs silently on a hole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from whatmatters.errors import RunTableError
from whatmatters.io import atomic_path, provenance, write_json

OUTCOME_COLUMNS = [
    "status", "test_accuracy", "test_loss", "n_test", "n_test_correct", "ece",
    "train_accuracy", "train_loss", "n_train", "n_train_correct", "train_objective",
    "shifted_accuracy", "n_shift", "n_shift_correct",
    "steps", "total_steps", "diverged_at_step", "train_seconds",
]


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        return {r["run_id"]: r for r in manifest["runs"]}
    except FileNotFoundError:
        raise RunTableError(f"missing training output {path}; rerun snakemake to train it") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunTableError(f"unreadable training output {path} ({e}); delete it and rerun snakemake") from None


def collect(design_path: str | Path, runs_dir: str | Path) -> pd.DataFrame:
    """The run table for the design at `design_path` from the job manifests under `runs_dir`."""
    design = pd.read_csv(design_path, sep="\t", dtype={"seed": int})
    records = {}
    for dataset, job in design[["dataset", "job"]].drop_duplicates().itertuples(index=False):
        records.update(_read_manifest(Path(runs_dir) / dataset / "jobs" / f"{job}.json"))
    missing = [r for r in design["run_id"] if r not in records]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise RunTableError(f"{len(missing)} design runs have no record: {shown}")
    rows = []
    for run_id in design["run_id"]:
        r = records[run_id]
        rows.append({c: r.get(c) for c in OUTCOME_COLUMNS}
                    | {"key": r["key"], "code_revision": r["provenance"]["code_revision"],
                       "device": r["provenance"]["device"]})
    table = pd.concat([design.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    return table


def aggregate(design_path, runs_dir, out_parquet) -> pd.DataFrame:
    """Write the run table as Parquet and CSV (same stem) plus a provenance sidecar, atomically."""
    table = collect(design_path, runs_dir)
    out_parquet = Path(out_parquet)
    with atomic_path(out_parquet) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out_parquet.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    write_json(out_parquet.with_name("provenance.json"),
               provenance(design=str(design_path), n_runs=len(table),
                          code_revisions=sorted(table["code_revision"].unique())))
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:
        raise RunTableError(f"unreadable run table {path} ({e}); rerun the aggregate rule") from None
