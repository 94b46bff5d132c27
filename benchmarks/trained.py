"""Validation of the `trained` outcome: run tables whose runs fail to train with planted rates.

Each study draws `whatmatters.simulation.simulate_trained` on the 7 factors of the
misspecification scenarios (3-5 levels, `SCENARIO_FACTORS`), 2 datasets of 10 classes, a
balanced random design of --configs configs x --seeds seeds: per config, the logit of
P(trained) is a baseline rate (50-90%) plus planted main effects (the top factor's sd
0.8-2.0 logits, each next one 1.1-2x smaller, in random order) and a two-factor failure
(two random factors at their last levels together: -1 to -3 logits). A run that did not
train diverged or is stuck near chance. The `trained` outcome is fitted as the study would
(the exact per-cell Binomial, `whatmatters.binomial`) and compared with the model-free
truth (docs/model.md, "The estimand": the sd over a factor's levels of the marginal means
of logit P(trained) over the full factorial; pooled: the mean over datasets).

Reported over every scope (pooled and each dataset), as `benchmarks/misspecified.py`
does: coverage of the 90% HDI and central interval of each factor's importance (goal
0.85-0.95), pairwise calls with P >= 0.9 that are right, and P(true top factor ranks first)
where it leads the second by >= 25%.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/trained.py --studies 20 \
        --out benchmarks/results/trained.json
    ... --report          # the Markdown table of --out
    ... --quick           # smoke test: 1 small study

The JSON is rewritten after each finished study, so an interrupted run keeps what it has.
Results: docs/validation.md.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import whatmatters  # noqa: E402,F401  (one BLAS thread, set before numpy loads)
import numpy as np  # noqa: E402

from misspecified import GOALS, against_truth, markdown, summarize_class  # noqa: E402
from whatmatters.io import provenance, write_json  # noqa: E402

CLASSES = 10   # every simulated dataset: chance 0.1


def planted(index: int) -> dict:
    """The study's planted failure process: trained-rate effects, the two-factor failure, the baseline rate."""
    from whatmatters.simulation import SCENARIO_FACTORS

    rng = np.random.default_rng(20_000 + index)
    factors = list(SCENARIO_FACTORS)
    top = float(rng.uniform(0.8, 2.0))
    sds = top / np.concatenate([[1.0], np.cumprod(np.exp(rng.uniform(np.log(1.1), np.log(2.0), len(factors) - 1)))])
    sds = sds[rng.permutation(len(factors))]
    f, g = rng.choice(len(factors), 2, replace=False)
    return {"trained": dict(zip(factors, sds.tolist())), "pair": (factors[f], factors[g], float(rng.uniform(1.0, 3.0))),
            "trained_rate": float(rng.uniform(0.5, 0.9))}


def one_study(index: int, configs: int, seeds: int, sampler: dict) -> dict:
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from whatmatters import fitting, outcomes, summarize
    from whatmatters.simulation import SCENARIO_FACTORS, simulate_trained

    plant = planted(index)
    datasets = ["data0", "data1"]
    spec = {"factors": {f: {"levels": [f"{f}{j}" for j in range(n)], "baseline": f"{f}0"}
                        for f, n in SCENARIO_FACTORS.items()},
            "datasets": datasets, "outcome": outcomes.spec("trained", {d: 1 / CLASSES for d in datasets}),
            "model": {"method": "binomial", "interactions": False}, "sampler": {**sampler, "seed": index},
            "hypotheses": []}
    table, truth = simulate_trained(spec, plant["trained"], pair=plant["pair"], trained_rate=plant["trained_rate"],
                                    configs=configs, seeds=seeds, classes=CLASSES, random_seed=index)
    start = time.perf_counter()
    idata = fitting.fit(table, spec)
    seconds = time.perf_counter() - start
    diag = summarize.diagnostics(idata)
    trained = outcomes.derive(table, spec["outcome"])["trained"]
    return {"kind": "trained", "index": index, "configs": configs, "seeds": seeds, "datasets": len(datasets),
            "planted": plant, "trained_share": float(trained.mean()), "truth_rate": truth["trained_rate"],
            "seconds": round(seconds, 1), "divergences": diag["divergences"], "max_rhat": diag["max_rhat"],
            "model_check": diag["model_check"], "scopes": against_truth(idata, truth["trained"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="index of the first study (resume or extend)")
    ap.add_argument("--configs", type=int, default=48)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the Markdown table of --out and stop")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/trained.json")
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads(args.out.read_text())))
        return
    sampler = {"chains": args.chains, "draws": args.draws, "tune": args.draws, "target_accept": 0.9,
               "cores": 1, "nuts": "auto"}
    if args.quick:
        args.studies, args.configs = 1, 32
        sampler.update(draws=300, tune=300)
    records, started = [], time.time()
    indices = range(args.first, args.first + args.studies)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(one_study, i, args.configs, args.seeds, sampler): i for i in indices}
        for done, future in enumerate(as_completed(futures), 1):
            try:
                records.append(future.result())
            except Exception as e:          # a failed study is recorded, not fatal
                records.append({"kind": "trained", "index": futures[future], "error": repr(e)})
            print(f"[{done}/{len(futures)}] study #{futures[future]}: "
                  f"{records[-1].get('seconds', records[-1].get('error'))} s, {time.time() - started:.0f} s in all",
                  flush=True)
            good = [r for r in records if "error" not in r]
            write_json(args.out, {"provenance": provenance(step="benchmark trained", args=vars(args) | {
                "out": str(args.out)}, sampler=sampler), "goals": GOALS, "planned": len(futures),
                "completed": len(records), "summary": {"trained": summarize_class(good)} if good else {},
                "records": records})
    print(markdown(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
