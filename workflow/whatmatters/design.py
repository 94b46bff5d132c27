"""Designs expand a study into configs (one level per factor) and runs (config x dataset x seed).

Ids are content hashes, so they are stable: a config keeps its id however the design
around it changes, and editing a level's settings gives the configs that use it new ids.
Runs are grouped into training jobs of about `execution.runs_per_job` runs (all seeds of
a few configs on one dataset) so per-job start-up is amortised.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np

from whatmatters.errors import StudyError


def config_id(levels: dict[str, dict]) -> str:
    """Stable id of a config: a hash of every factor's resolved level (name, kind, settings)."""
    canonical = json.dumps(levels, sort_keys=True, separators=(",", ":"))
    return "c" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


def run_id(dataset: str, config: str, seed: int) -> str:
    """Stable id of a run: its dataset, config id and seed, e.g. 'digits-c1a2b3c4d5e-0'."""
    return f"{dataset}-{config}-{seed}"


def _full(factors: dict) -> list[dict[str, str]]:
    names = {f: list(spec["levels"]) for f, spec in factors.items()}
    return [dict(zip(names, combo)) for combo in itertools.product(*names.values())]


def _one_at_a_time(factors: dict) -> list[dict[str, str]]:
    baseline = {f: spec["baseline"] for f, spec in factors.items()}
    configs = [baseline]
    for f, spec in factors.items():
        configs += [{**baseline, f: lv} for lv in spec["levels"] if lv != spec["baseline"]]
    return configs


def _random(factors: dict, n: int, seed: int) -> list[dict[str, str]]:
    """n distinct configs; each factor's levels appear as equally often as possible
    (counts differ by at most one), in a seeded random arrangement."""
    total = math.prod(len(spec["levels"]) for spec in factors.values())
    if n > total:
        raise StudyError(f"design.n_configs: {n} exceeds the {total} distinct configs the factors allow")
    rng = np.random.default_rng(seed)
    columns = {}
    for f, spec in factors.items():
        names = list(spec["levels"])
        column = [names[i % len(names)] for i in range(n)]  # balanced counts
        columns[f] = [column[i] for i in rng.permutation(n)]
    # Repair duplicate configs by swapping one factor's values between rows: counts are kept.
    for _ in range(100 * n):
        rows = [tuple(columns[f][i] for f in factors) for i in range(n)]
        seen, dup = set(), None
        for i, row in enumerate(rows):
            if row in seen:
                dup = i
                break
            seen.add(row)
        if dup is None:
            return [dict(zip(factors, row)) for row in rows]
        f = list(factors)[rng.integers(len(factors))]
        j = int(rng.integers(n))
        columns[f][dup], columns[f][j] = columns[f][j], columns[f][dup]
    raise StudyError(f"design.n_configs: could not draw {n} distinct balanced configs; lower n_configs")


def expand(study: dict) -> dict:
    """The study's configs, runs and training jobs.

    Returns {configs: [{config_id, levels: {factor: level}}] in design order,
             runs: [{run_id, dataset, config_id, seed, job}],
             jobs: {(dataset, job): [config_id, ...]}}.
    """
    factors, design = study["factors"], study["design"]
    if design["kind"] == "full":
        chosen = _full(factors)
    elif design["kind"] == "one_at_a_time":
        chosen = _one_at_a_time(factors)
    else:
        chosen = _random(factors, design["n_configs"], design["seed"])
    configs = []
    for names in chosen:
        levels = {f: factors[f]["levels"][lv] for f, lv in names.items()}
        configs.append({"config_id": config_id(levels), "levels": levels})

    per_job = max(1, study["execution"]["runs_per_job"] // len(study["seeds"]))
    runs, jobs = [], {}
    for ds in study["datasets"]:
        for k in range(0, len(configs), per_job):
            job = f"job{k // per_job:04d}"
            jobs[(ds["name"], job)] = [c["config_id"] for c in configs[k:k + per_job]]
            for c in configs[k:k + per_job]:
                for seed in study["seeds"]:
                    runs.append({"run_id": run_id(ds["name"], c["config_id"], seed), "dataset": ds["name"],
                                 "config_id": c["config_id"], "seed": seed, "job": job})
    return {"configs": configs, "runs": runs, "jobs": jobs}


def job_spec(study: dict, expanded: dict, dataset: str, job: str) -> dict:
    """Everything a training job needs, self-contained (JSON-ready): the dataset spec,
    its configs with resolved levels, the seeds and execution settings."""
    by_id = {c["config_id"]: c for c in expanded["configs"]}
    return {
        "dataset": next(d for d in study["datasets"] if d["name"] == dataset),
        "configs": [by_id[cid] for cid in expanded["jobs"][(dataset, job)]],
        "seeds": study["seeds"],
        "execution": study["execution"],
    }


def write_design_tsv(study: dict, expanded: dict, path) -> None:
    """results/design/runs.tsv: one row per run, with its stable id and one column per factor."""
    from whatmatters.io import write_text

    by_id = {c["config_id"]: c for c in expanded["configs"]}
    factors = list(study["factors"])
    lines = ["\t".join(["run_id", "dataset", "config_id", "seed", "job", *factors])]
    for r in expanded["runs"]:
        levels = by_id[r["config_id"]]["levels"]
        lines.append("\t".join([r["run_id"], r["dataset"], r["config_id"], str(r["seed"]), r["job"],
                                *(levels[f]["name"] for f in factors)]))
    write_text(path, "\n".join(lines) + "\n")
