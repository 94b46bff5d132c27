"""A training job: its runs trained or reused, its manifest written, and what a failure does.

A Snakemake job (`rule train`) trains all seeds of a few configs on one dataset
(`whatmatters.design.job_spec`). Each finished run is written at once to
results/runs/{dataset}/{config}/{seed}.json with a key of everything that determines it
(`run_key`); a rerun reuses every stored run whose key is unchanged (`run_store`) and
trains the rest (`train_job`). When the job fails, `run_job` names the runs it leaves
without a record so that Snakemake retries it, or, on the last attempt of a study with
analysis.allow_missing, records them as missing in the manifest (`whatmatters.aggregate`
reads it).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from whatmatters import data as datasets
from whatmatters import train
from whatmatters.aggregate import listed
from whatmatters.design import run_id
from whatmatters.errors import PermanentError, WhatmattersError
from whatmatters.io import provenance, write_json, write_text
from whatmatters.runstore import cannot_retry_path, code_fingerprint, run_key  # noqa: F401  (read from here too)


# Execution: where and how the job's runs train

def resolve_device(name: str) -> torch.device:
    """The training device of `execution.device` (auto: a GPU if this job sees one)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise PermanentError(
            "execution.device: cuda, but this job sees no CUDA device "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}, torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); run it on a GPU node or set execution.device: auto")
    return torch.device(name)


def resolve_execution(execution: dict, device: torch.device, n_seeds: int) -> dict:
    """The study's `execution` choices made concrete for this device.

    precision auto: bf16 autocast on a GPU that supports it, else fp32. memory_format auto:
    channels_last on a GPU (it applies to image data and single seeds). seed_batch auto:
    every seed of a config together on a GPU, one at a time on a CPU (no faster there,
    see docs/benchmarks.md).
    """
    cuda = device.type == "cuda"
    precision = execution["precision"]
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    layout = execution["memory_format"]
    if layout == "auto":
        layout = "channels_last" if cuda else "contiguous"
    seed_batch = execution["seed_batch"]
    if seed_batch == "auto":
        seed_batch = n_seeds if cuda else 1
    return {"precision": precision, "channels_last": layout == "channels_last", "seed_batch": seed_batch}


# The run store: a run's key, and the stored runs a job reuses

def _stored(path: Path, key: str) -> dict | None:
    """The stored record at `path` if it is complete and made with `key`, else None; an
    unreadable one (truncated, corrupt) is named in the job's log, and then retrained."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"whatmatters train: stored run {path} is unreadable ({type(e).__name__}: {e}); retraining it",
              file=sys.stderr, flush=True)
        return None
    if not isinstance(record, dict):
        print(f"whatmatters train: stored run {path} is not a run record; retraining it", file=sys.stderr, flush=True)
        return None
    return record if record.get("key") == key else None


def run_store(spec: dict, run_dir: str, fingerprint: str, precision: str) -> tuple[dict, list]:
    """A job's runs split into those stored with their current key, {run_id: record},
    which a (re)run reuses, and those it must train, [(config, seed, key)]."""
    stored, todo = {}, []
    for config in spec["configs"]:
        for seed in spec["seeds"]:
            key = run_key(spec["dataset"], config["levels"], seed, fingerprint, precision)
            record = _stored(Path(run_dir) / config["config_id"] / f"{seed}.json", key)
            if record is None:
                todo.append((config, seed, key))
            else:
                stored[run_id(spec["dataset"]["name"], config["config_id"], seed)] = record
    return stored, todo


# The job

class RunsFailed(WhatmattersError):
    """Some of a job's runs raised; the others were trained and stored (tracebacks in the log)."""


def _train_group(data: dict, levels: dict, seeds: list[int], epochs: int, execution: dict) -> list[dict]:
    """train_runs, falling back to one seed at a time when the stacked seeds do not fit in
    the device's memory."""
    try:
        return train.train_runs(data, levels, seeds, epochs, **execution)
    except torch.OutOfMemoryError:
        if len(seeds) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [r for seed in seeds for r in train.train_runs(data, levels, [seed], epochs, **execution)]


def train_job(spec: dict, data_path: str, run_dir: str, out_path: str, threads: int = 1,
              process_started: float | None = None, records: dict | None = None) -> dict:
    """Train (or reuse) every run of a job and write the job's manifest to `out_path`.

    spec: {dataset: {name, kind, settings, budget}, configs: [{config_id, levels}],
           seeds: [int], execution: {device, precision, memory_format, seed_batch, ...}}
           (see design.job_spec).
    records: filled as the job goes with {run_id: record} of its runs that have a record
      (reused from the store or trained now): what `run_job` knows when the job fails.
    """
    records = {} if records is None else records
    job_start = time.time()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(spec["execution"]["device"])
    execution = resolve_execution(spec["execution"], device, len(spec["seeds"]))
    seed_batch = execution.pop("seed_batch")
    dataset, epochs = spec["dataset"], spec["dataset"]["budget"]["epochs"]
    fingerprint = code_fingerprint()
    stored, todo = run_store(spec, run_dir, fingerprint, execution["precision"])
    records.update(stored)
    data = datasets.load(data_path)
    for k, v in data.items():     # every split, the shifted test set too: once per job,
        if torch.is_tensor(v):    # batches are indexed on the device
            data[k] = v.to(device)
    base = provenance(device=str(device), threads=threads, code_fingerprint=fingerprint)
    ready = time.time()

    trained, train_seconds, failed = 0, 0.0, {}   # failed: config_id -> (seeds, first error)
    total = len(stored) + len(todo)
    progress(f"{dataset['name']}: {total} runs in this job: {len(stored)} stored, {len(todo)} to train on {device}")
    by_config = {}
    for config, seed, key in todo:
        by_config.setdefault(config["config_id"], (config, []))[1].append((seed, key))
    for config, seeds in by_config.values():
        size = seed_batch if train.batchable(config["levels"]) else 1   # else: one at a time
        for i in range(0, len(seeds), size):
            group = seeds[i:i + size]
            try:
                results = _train_group(data, config["levels"], [seed for seed, _ in group], epochs, execution)
            except Exception as e:   # a crash (bug, OOM): the job's other runs still train
                traceback.print_exc()
                progress(f"{dataset['name']} {config['config_id']} seeds {[seed for seed, _ in group]}: "
                         f"raised {type(e).__name__}: {e}")
                seeds_failed, _ = failed.setdefault(config["config_id"], ([], f"{type(e).__name__}: {e}"))
                seeds_failed += [seed for seed, _ in group]
                continue
            for (seed, key), result in zip(group, results):
                record = {
                    "run_id": run_id(dataset["name"], config["config_id"], seed),
                    "dataset": dataset["name"], "config_id": config["config_id"], "seed": seed,
                    "levels": {f: lv["name"] for f, lv in config["levels"].items()},
                    **result,
                    "key": key,
                    "settings": {"dataset": dataset, "levels": config["levels"]},
                    "provenance": base,
                }
                write_json(Path(run_dir) / config["config_id"] / f"{seed}.json", record)
                records[record["run_id"]] = record
                trained += 1
                train_seconds += record["train_seconds"]
                progress(f"run {trained} of {len(todo)} trained: {dataset['name']} {config['config_id']} "
                         f"seed {seed}: {record['status']}, test accuracy {record['test_accuracy']:.4f}, "
                         f"{record['train_seconds']:.1f} s")
    if failed:
        raise RunsFailed("training raised for config " + "; ".join(
            f"{c} seeds {seeds} ({error})" for c, (seeds, error) in failed.items()) + "; the job's other runs are stored")
    runs = [records[r] for r in job_runs(spec)]

    manifest = {
        "dataset": dataset["name"],
        "runs": runs,
        "trained": trained,
        "reused": len(runs) - trained,
        "timing": {
            # process start -> job start: interpreter and imports; job start -> ready: run store, data load
            "startup_seconds": None if process_started is None else job_start - process_started,
            "load_seconds": ready - job_start,
            "train_seconds": train_seconds,  # runs trained by this job (reused ones cost nothing)
        },
        "provenance": base,
    }
    write_json(out_path, manifest)
    return manifest


def progress(line: str) -> None:
    """One line of a job's progress in its log (`whatmatters status` sums up the run store)."""
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def job_runs(spec: dict) -> list[str]:
    """The run ids of a job, in its configs' and seeds' order."""
    return [run_id(spec["dataset"]["name"], c["config_id"], seed) for c in spec["configs"] for seed in spec["seeds"]]


# When a job fails

class JobFailed(WhatmattersError):
    """A job's training failed and Snakemake should retry it (or stop the study); the
    message names the runs left without a record."""


def run_job(spec: dict, data_path: str, run_dir: str, out_path: str, *, threads: int = 1, attempt: int = 1,
            attempts: int = 1, allow_missing: bool = False, process_started: float | None = None) -> dict:
    """`train_job` under the failed-job policy: its manifest; or, if training raises,
    JobFailed naming the runs without a record (the job's log keeps a crash's traceback).
    On the last of `attempts` with `allow_missing` a failure is recorded instead: the
    manifest holds the runs that have a record and a `failed` entry (error, attempts,
    missing run ids), which `whatmatters.aggregate` reads."""
    records = {}
    try:
        return train_job(spec, data_path, run_dir, out_path, threads, process_started, records=records)
    except Exception as error:   # a crash (bug, OOM): name the runs it leaves without a record
        if not isinstance(error, WhatmattersError):
            traceback.print_exc()   # the evidence for a bug, in the job's log
        run_ids = job_runs(spec)
        missing = [r for r in run_ids if r not in records]
        what = (f"training failed on attempt {attempt} of {attempts} ({type(error).__name__}: {error}); "
                + (f"{len(missing)} of {len(run_ids)} runs of this job have no record: {listed(missing)}" if missing
                   else f"all {len(run_ids)} runs of this job have a record"))
        if isinstance(error, PermanentError) and attempt < attempts:   # the retry stops at once (cli)
            write_text(cannot_retry_path(out_path), f"{type(error).__name__}: {error}")
            raise JobFailed(what + "; a retry cannot fix this, so the job is not retried") from error
        if not (allow_missing and attempt >= attempts):
            raise JobFailed(what + ("; Snakemake retries the job" if attempt < attempts else "")) from error
        manifest = {
            "dataset": spec["dataset"]["name"], "runs": [records[r] for r in run_ids if r in records],
            "trained": 0, "reused": len(run_ids) - len(missing),
            "failed": {"error": f"{type(error).__name__}: {error}", "attempts": attempt, "missing": missing},
            "timing": None, "provenance": provenance(step="train")}
        write_json(out_path, manifest)
        print(f"whatmatters train: {what}. analysis.allow_missing is true: recorded as missing in {out_path}",
              file=sys.stderr)
        return manifest
