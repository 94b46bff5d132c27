"""Aggregation: every run of the design, gathered into one table (one row per run).

Columns: run_id, dataset, config_id, seed, job, one column per factor (its level name),
status, the outcomes (accuracies, losses and their counts), timings, and the run's key
and code revision. A design run with no readable record is named in the error: the
analysis never runs silently on a hole. A job manifest or run record that is truncated or
corrupted is named and refused, never half-read. With `allow_missing` (the study's
`analysis.allow_missing`), runs whose training failed (a job that failed its last attempt
records them in its manifest, see `whatmatters.jobs.run_job`) become rows with status
"missing" and no outcomes; `present_runs` drops them for the fit, or refuses them.
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
STATUSES = ("ok", "diverged")   # what a trained run can be; both are data (DESIGN.md)
MISSING = "missing"             # a design run with no record: its training failed
COUNTS = ("n_test", "n_train", "n_shift")   # each with its n_*_correct


def _corrupt(path: Path, what: str) -> RunTableError:
    return RunTableError(f"corrupted training output {path}: {what}; delete it and rerun snakemake "
                         "(finished runs are reused)")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_record(path: Path, i: int, r) -> None:
    """A run record is whole: its id, status, counts (0 <= correct <= n) and accuracies,
    or RunTableError naming the file and the run."""
    if not isinstance(r, dict) or not isinstance(r.get("run_id"), str):
        raise _corrupt(path, f"runs[{i}] is not a run record")
    where = f"run {r['run_id']}"
    if r.get("status") not in STATUSES:
        raise _corrupt(path, f"{where} has status {r.get('status')!r}; expected one of {', '.join(STATUSES)}")
    for n in COUNTS:
        if n == "n_shift" and n not in r:
            continue   # records made before shifted test sets existed
        total, correct = r.get(n), r.get(f"{n}_correct")
        if not (isinstance(total, int) and isinstance(correct, int) and 0 <= correct <= total and total > 0):
            raise _corrupt(path, f"{where} has {n}={total!r}, {n}_correct={correct!r}")
    for acc in ("test_accuracy", "train_accuracy"):
        if not (_is_number(r.get(acc)) and 0 <= r[acc] <= 1):
            raise _corrupt(path, f"{where} has {acc}={r.get(acc)!r}")
    prov = r.get("provenance")
    if not isinstance(r.get("key"), str) or not isinstance(prov, dict) or not {"code_revision", "device"} <= set(prov):
        raise _corrupt(path, f"{where} lacks its key or provenance")


def _read_manifest(path: Path) -> tuple[dict, dict | None]:
    """({run_id: record}, failure or None) of a job manifest; RunTableError naming a bad file."""
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunTableError(f"missing training output {path}; rerun snakemake to train it") from None
    except (OSError, ValueError) as e:
        # Removed, so that the next snakemake run retrains its job (reusing its intact stored runs).
        path.unlink(missing_ok=True)
        raise RunTableError(f"unreadable training output {path} ({e}); removed it: rerun snakemake to retrain "
                            "its job (its finished runs are reused)") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise _corrupt(path, "no list of runs")
    for i, r in enumerate(manifest["runs"]):
        _check_record(path, i, r)
    return {r["run_id"]: r for r in manifest["runs"]}, manifest.get("failed")


def listed(ids: list[str], n: int = 10) -> str:
    """The first `n` ids, comma-separated, and how many more there are."""
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def collect(design_path: str | Path, runs_dir: str | Path, allow_missing: bool = False) -> pd.DataFrame:
    """The run table for the design at `design_path` from the job manifests under `runs_dir`.

    A design run without a record (its job failed, or its manifest is absent) raises
    RunTableError naming it and the remedy, unless `allow_missing`: then it is a row with
    status "missing" and no outcomes.
    """
    design = pd.read_csv(design_path, sep="\t", dtype={"seed": int})
    records, failed, absent = {}, {}, []
    for dataset, job in design[["dataset", "job"]].drop_duplicates().itertuples(index=False):
        path = Path(runs_dir) / dataset / "jobs" / f"{job}.json"
        if allow_missing and not path.exists():
            absent.append(str(path))
            continue
        runs, failure = _read_manifest(path)
        records.update(runs)
        if failure:
            failed[str(path)] = failure.get("error", "unknown error")
    missing = [r for r in design["run_id"] if r not in records]
    if missing and not allow_missing:
        why = "".join(f"; training failed in {p}: {e}" for p, e in failed.items())
        rerun = " ".join(failed) or "train"
        raise RunTableError(
            f"{len(missing)} of {len(design)} design runs have no record: {listed(missing)}{why}. "
            f"Fix the cause and retrain them (finished runs are reused): snakemake --forcerun {rerun}; "
            "or set analysis.allow_missing: true to analyse without them")
    rows = []
    for run_id in design["run_id"]:
        r = records.get(run_id)
        if r is None:
            rows.append({c: None for c in OUTCOME_COLUMNS} | {"status": MISSING, "key": None,
                                                             "code_revision": None, "device": None})
            continue
        rows.append({c: r.get(c) for c in OUTCOME_COLUMNS}
                    | {"key": r["key"], "code_revision": r["provenance"]["code_revision"],
                       "device": r["provenance"]["device"]})
    table = pd.concat([design.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    table.attrs["missing"] = missing
    table.attrs["failed"] = failed | {p: "no manifest" for p in absent}
    return table


def missing_message(missing: list[str], total: int) -> str:
    """'3 of 32 runs are missing (training failed): a, b, c'."""
    return f"{len(missing)} of {total} runs are missing (training failed): {listed(missing)}"


def present_runs(table: pd.DataFrame, allow_missing: bool) -> tuple[pd.DataFrame, list[str]]:
    """(the rows that have outcomes, the run_ids of the missing ones). Missing runs raise
    RunTableError naming them unless `allow_missing`. Count columns come back as integers."""
    gone = table["status"] == MISSING
    missing = table.loc[gone, "run_id"].astype(str).tolist()
    if missing and not allow_missing:
        raise RunTableError(f"{missing_message(missing, len(table))}; the fit refuses a table with holes. "
                            "Retrain them (see the aggregate log), or set analysis.allow_missing: true "
                            "to fit without them")
    present = table.loc[~gone].reset_index(drop=True)
    for n in COUNTS:
        for col in (n, f"{n}_correct"):
            if col in present and present[col].notna().all():
                present[col] = present[col].astype("int64")
    return present, missing


def aggregate(design_path, runs_dir, out_parquet, allow_missing: bool = False) -> pd.DataFrame:
    """Write the run table as Parquet and CSV (same stem) plus a provenance sidecar, atomically.
    The sidecar names the missing runs (allow_missing) and the jobs whose training failed."""
    table = collect(design_path, runs_dir, allow_missing)
    missing, failed = table.attrs.pop("missing"), table.attrs.pop("failed")
    out_parquet = Path(out_parquet)
    with atomic_path(out_parquet) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out_parquet.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    write_json(out_parquet.with_name("provenance.json"),
               provenance(design=str(design_path), n_runs=len(table),
                          code_revisions=sorted(table["code_revision"].dropna().unique()),
                          missing_runs=missing, failed_jobs=failed))
    table.attrs["missing"] = missing
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:
        raise RunTableError(f"unreadable run table {path} ({e}); rerun the aggregate rule") from None
