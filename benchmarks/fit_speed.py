"""Fit speed and sampling health on a 20,000-run table, side by side in one process:

  whatmatters  `fitting.fit`: the collapsed model, NUTS from a Laplace start with a dense
               mass matrix (2 chains x 1000 draws, 1000 tune, target_accept 0.9)
  pm.sample()  the same collapsed model and table with PyMC's defaults (jitter+adapt_diag,
               1000 draws, 1000 tune, target_accept 0.8, chains = cores)
  binomial     optional (--binomial-rows N): the exact Binomial model (`binomial.build_model`,
               a latent per run) with pm.sample() defaults on N random rows

Table: 7 factors with 3-6 levels, 3 datasets, 3 seeds per config, 2000 test examples per
run, planted logit importances 0.8 .. 0.05, 3% diverged runs. Reported per variant: wall
seconds of the whole fit (compile, sampling, effect draws, estimands), divergences, max
R-hat over the free variables and over the importances, min bulk ESS of the importances.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/fit_speed.py [--binomial-rows 2000] \
        [--out benchmarks/results/fit_speed.json]
    ... --interactions      # ours only, every pairwise interaction on (not yet measured)
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import whatmatters  # noqa: E402,F401  (thread and BLAS settings before pymc loads)
import arviz as az  # noqa: E402
import pymc as pm  # noqa: E402

from whatmatters import collapsed as C  # noqa: E402
from whatmatters.outcomes import empirical_logit  # noqa: E402
from whatmatters import estimands as E  # noqa: E402
from whatmatters import binomial  # noqa: E402
from whatmatters.fitting import fit  # noqa: E402
from whatmatters.runtable import codes  # noqa: E402
from whatmatters.simulation import simulate_table  # noqa: E402
from whatmatters import summarize as S  # noqa: E402
from whatmatters.posterior import ATTR_FREE  # noqa: E402
from whatmatters.io import write_json  # noqa: E402

LEVELS = [3, 4, 5, 6, 3, 4, 5]
NAMES = ["init", "optimizer", "architecture", "loss", "augmentation", "schedule", "regularization"]
PLANTED = [0.8, 0.6, 0.45, 0.3, 0.2, 0.1, 0.05]


def make_spec(method="collapsed", interactions=False):
    return {
        "factors": {f: {"levels": [f"{f}{i}" for i in range(n)], "baseline": f"{f}0"} for f, n in zip(NAMES, LEVELS)},
        "datasets": ["d1", "d2", "d3"],
        "outcome": {"name": "test_accuracy", "successes": "n_test_correct", "trials": "n_test"},
        "hypotheses": [],
        "model": {"method": method, "interactions": interactions},
        "sampler": {"chains": 2, "draws": 1000, "tune": 1000, "target_accept": 0.9, "seed": 1, "cores": 2,
                    "nuts": "pymc"},
        "allow_missing": False,
    }


def health(idata, seconds: float, name: str) -> dict:
    d = S.diagnostics(idata)
    imp = d["importance"]
    return {"variant": name, "seconds": round(seconds, 1), "divergences": d["divergences"],
            "max_rhat_free": d["max_rhat"], "max_rhat_importance": max(r["rhat"] for r in imp),
            "min_ess_bulk_importance": min(r["ess_bulk"] for r in imp), "draws": d["chains"] * d["draws"]}


def ours(table, spec):
    start = time.perf_counter()
    idata = fit(table, spec)
    name = "whatmatters fit (collapsed, Laplace start" + (", interactions)" if spec["model"]["interactions"] else ")")
    return health(idata, time.perf_counter() - start, name), idata


def default_collapsed(table, spec):
    start = time.perf_counter()
    lc, dc = codes(table, spec)
    c = C.prepare(lc, dc, *empirical_logit(table.n_test_correct, table.n_test), LEVELS, NAMES, spec["datasets"])
    with C.build_model(c):
        idata = pm.sample(random_seed=1, progressbar=False)
    idata.posterior = idata.posterior.merge(C.draw_effects(c, idata.posterior, seed=1).assign_coords(
        chain=idata.posterior["chain"], draw=idata.posterior["draw"], dataset=spec["datasets"]))
    E.add_estimands(idata.posterior, spec, lc, dc)
    idata.posterior.attrs[ATTR_FREE] = json.dumps(["sigma", "tau", "sigma_seed", "sigma_config"])
    return health(idata, time.perf_counter() - start, "pm.sample() defaults, same collapsed model"), idata


def default_binomial(table, spec, rows):
    start = time.perf_counter()
    sub = table.sample(rows, random_state=0)      # all three datasets
    with binomial.build_model(sub, spec):
        idata = pm.sample(random_seed=1, progressbar=False)
    E.add_estimands(idata.posterior, spec, *codes(sub, spec))
    idata.posterior.attrs[ATTR_FREE] = json.dumps(["alpha", "sigma", "tau", "sigma_seed", "beta_tilde",
                                                      "gamma_tilde", "sigma_config", "config_tilde", "eta"])
    return health(idata, time.perf_counter() - start, f"pm.sample() defaults, exact Binomial model, {rows} rows"), idata


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binomial-rows", type=int, default=0, help="also time the exact Binomial model on N rows")
    p.add_argument("--only-ours", action="store_true", help="skip the pm.sample() defaults variant")
    p.add_argument("--interactions", action="store_true", help="our fit with every pairwise interaction (ours only)")
    p.add_argument("--out", default="benchmarks/results/fit_speed.json")
    args = p.parse_args()

    spec = make_spec(interactions=args.interactions)
    table, _ = simulate_table(spec, dict(zip(NAMES, PLANTED)), configs=2222, seeds=3, trials=2000,
                                random_seed=0)
    rows = [ours(table, spec)[0]] + ([] if args.only_ours or args.interactions else [default_collapsed(table, spec)[0]])
    if args.binomial_rows:
        rows.append(default_binomial(table, make_spec("binomial"), args.binomial_rows)[0])
    result = {"runs": len(table), "cores": os.cpu_count(), "variants": rows,
              "versions": {"pymc": pm.__version__, "arviz": az.__version__}}
    write_json(Path(args.out), result)
    print(f"{len(table)} runs, {os.cpu_count()} cores")
    print("| variant | seconds | divergences | max R-hat (free / importance) | min bulk ESS (importance) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']} | {r['divergences']} | {r['max_rhat_free']:.3f} / "
              f"{r['max_rhat_importance']:.3f} | {r['min_ess_bulk_importance']:.0f} |")


if __name__ == "__main__":
    main()
