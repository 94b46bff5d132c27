"""One run table fitted by two revisions of the code: time, ranks and non-additivity.

For the honest-ranks change (docs/benchmarks.md): the default study's run table fitted by
the code before it (`--before`, a git revision, checked out in a temporary worktree) and
by this checkout, alternately (`--repeats` rounds, so both see the same machine load), each
through the product's own command (`python -m whatmatters fit`). Prints and writes, per
revision: fit wall time, P(rank = 1) and the expected rank of every factor per scope, and
this checkout's non-additivity ratio and share per dataset; beside them the model-free
ratio of the issue: per dataset, the residual variance of the config means around their
least-squares additive fit over the within-config variance / seeds.

    .venv/bin/python benchmarks/before_after.py --before d9ad1ce --interactions \
        --table results/table/runs.parquet --out benchmarks/results/before_after.json
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from whatmatters import outcomes, posterior, summarize  # noqa: E402
from whatmatters.analysis_spec import analysis_spec  # noqa: E402
from whatmatters.config import read_config  # noqa: E402
from whatmatters.io import provenance, write_json  # noqa: E402
from whatmatters.study import load_study  # noqa: E402


def model_free_ratio(table: pd.DataFrame, spec: dict) -> dict[str, float]:
    """Per dataset: var of config means around the LS additive fit / (mean within-config var / seeds)."""
    y = outcomes.response(table, spec["outcome"])[0]
    out = {}
    for d in spec["datasets"]:
        mine = (table["dataset"] == d).to_numpy()
        levels = np.column_stack([pd.factorize(table.loc[mine, f])[0] for f in spec["factors"]])
        cells, cell, m = np.unique(levels, axis=0, return_inverse=True, return_counts=True)
        cell = cell.ravel()
        means = np.bincount(cell, weights=y[mine]) / m
        within = np.bincount(cell, weights=(y[mine] - means[cell]) ** 2) / np.maximum(m - 1, 1)
        x = np.hstack([np.ones((len(cells), 1))] + [(cells[:, [i]] == np.unique(cells[:, i])[None, 1:]).astype(float)
                                                    for i in range(cells.shape[1])])
        resid = means - x @ np.linalg.lstsq(x, means, rcond=None)[0]
        residual_var = (resid ** 2).sum() / (len(cells) - np.linalg.matrix_rank(x))
        out[d] = float(residual_var / (within[m > 1].mean() / m.mean()))
    return out


def fit(code: Path, table: Path, spec: dict, out: Path) -> float:
    env = {"PYTHONPATH": str(code / "workflow"), "PATH": str(ROOT / ".venv/bin"), "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "whatmatters", "fit", "--table", str(table), "--spec", json.dumps(spec),
                    "--out", str(out)], check=True, env=env, cwd=code, capture_output=True)
    return time.perf_counter() - start


def ranks(idata) -> dict:
    table = summarize.rank_probabilities(idata)
    expected = {scope: summarize.expected_ranks(idata, scope).round(2).to_dict()
                for scope in posterior.importance_by_scope(idata)}
    first = table[table["rank"] == 1].set_index(["dataset", "factor"])["probability"].round(3)
    return {"expected_rank": expected,
            "p_first": {scope: first.xs(scope).to_dict() for scope in expected}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision of the code before the change")
    ap.add_argument("--table", type=Path, default=ROOT / "results/table/runs.parquet")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument("--outcome", default="test_accuracy")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--interactions", action="store_true", help="also fit this checkout with interactions on")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/before_after.json")
    args = ap.parse_args()
    study = load_study(read_config(args.config))
    spec = analysis_spec(study, args.outcome)
    table = pd.read_parquet(args.table)
    work = Path(tempfile.mkdtemp())
    old = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.before], check=True)
    try:
        with_pairs = {**spec, "model": {**spec["model"], "interactions": True}}
        variants = [("before", old, spec), ("after", ROOT, spec)] + (
            [("after_interactions", ROOT, with_pairs)] if args.interactions else [])
        seconds = {name: [] for name, _, _ in variants}
        for _ in range(args.repeats):
            for name, code, settings in variants:
                seconds[name].append(round(fit(code, args.table.resolve(), settings, work / f"{name}.nc"), 1))
                print(name, seconds[name][-1], "s", flush=True)
        result = {"provenance": provenance(step="benchmark before_after", before=args.before, table=str(args.table),
                                           outcome=args.outcome),
                  "model_free_ratio": model_free_ratio(table, spec), "seconds": seconds}
        for name in seconds:
            idata = posterior.load(work / f"{name}.nc")
            result[name] = ranks(idata)
            result[name]["fit_provenance"] = {k: posterior.provenance_of(idata).get(k)
                                              for k in ("sampling_seconds", "sampler_used", "runs", "form")}
            result[name]["diagnostics"] = {k: summarize.diagnostics(idata)[k] for k in ("divergences", "max_rhat")}
            if name != "before":
                result[name]["non_additivity"] = summarize.non_additivity(idata)[0]
            if name == "after_interactions":
                result[name]["interactions"] = summarize.interactions_table(idata).round(3).to_dict("records")
        write_json(args.out, result)
        print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
