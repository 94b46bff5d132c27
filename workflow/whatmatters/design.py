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
    return "c" + hashlib.sha256(_canonical(levels).encode()).hexdigest()[:10]


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


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
    """n distinct configs, in a seeded random order, in which each factor's levels appear
    equally often (counts differ by at most one): a balanced fraction of the full factorial.

    n equal to the grid is the full factorial. Such a design exists for every n up to the
    grid; it is drawn at random and its duplicates repaired (`_balanced_rows`), which is
    quick while at most half the grid is drawn. Beyond half, the complement of a balanced
    design of grid - n configs is drawn instead: every level fills exactly grid / levels
    cells of the full grid, so what is left of it is balanced too.
    """
    names = [list(spec["levels"]) for spec in factors.values()]
    sizes = [len(levels) for levels in names]
    total = math.prod(sizes)
    if n > total:
        raise StudyError(f"design.n_configs: {n} exceeds the {total} distinct configs the factors allow; "
                         f"choose at most {total} (which is kind: full)")
    if n == total:
        return _full(factors)
    rng = np.random.default_rng(seed)
    if 2 * n <= total:
        rows = _balanced_rows(sizes, n, rng)
    else:   # total - n < total / 2, so total <= 2 n: small enough to list
        left_out = _balanced_rows(sizes, total - n, rng)
        radix = np.cumprod([1, *sizes[:-1]])
        codes = np.ones(total, dtype=bool)
        codes[np.asarray(left_out, dtype=np.int64) @ radix] = False
        kept = np.flatnonzero(codes)
        rows = (kept[:, None] // radix[None, :]) % np.asarray(sizes)[None, :]
        rows = rows[rng.permutation(len(rows))].tolist()
    return [{f: names[k][row[k]] for k, f in enumerate(factors)} for row in rows]


def _balanced_rows(sizes: list[int], n: int, rng) -> list[tuple[int, ...]]:
    """n distinct rows of level indices (n <= half the grid), each column balanced: columns
    of balanced counts in random order, then each repeated row repaired by swapping one
    factor's level with another row's when both rows come out new (counts are kept)."""
    columns = [rng.permutation(np.arange(n) % k) for k in sizes]
    rows = [list(r) for r in zip(*(c.tolist() for c in columns))]
    count: dict[tuple, int] = {}
    for r in rows:
        count[tuple(r)] = count.get(tuple(r), 0) + 1
    repeated = [i for i, r in enumerate(rows) if count[tuple(r)] > 1]
    varied = [k for k, size in enumerate(sizes) if size > 1]
    tries = 0
    for i in repeated:
        while count[tuple(rows[i])] > 1:
            tries += 1
            if tries > 1000 * (len(repeated) + 10):
                raise StudyError(f"design.n_configs: no balanced set of {n} distinct configs found "
                                 f"(grid {' x '.join(map(str, sizes))}); choose another n_configs")
            k, j = varied[rng.integers(len(varied))], int(rng.integers(n))
            a, b = rows[i], rows[j]
            if a[k] == b[k]:
                continue
            new_a, new_b = list(a), list(b)
            new_a[k], new_b[k] = b[k], a[k]
            if count.get(tuple(new_a), 0) or count.get(tuple(new_b), 0):
                continue
            for old in (a, b):
                count[tuple(old)] -= 1
            for new in (new_a, new_b):
                count[tuple(new)] = 1
            rows[i], rows[j] = new_a, new_b
    return [tuple(r) for r in rows]


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
    # config_id's canonical JSON, put together from each level's (serialised once, not per config)
    pieces = {f: {name: f"{json.dumps(f)}:{_canonical(lv)}" for name, lv in spec["levels"].items()}
              for f, spec in factors.items()}
    order = sorted(factors)
    configs = []
    for names in chosen:
        canonical = "{" + ",".join(pieces[f][names[f]] for f in order) + "}"
        configs.append({"config_id": "c" + hashlib.sha256(canonical.encode()).hexdigest()[:10],
                        "levels": {f: factors[f]["levels"][lv] for f, lv in names.items()}})

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
