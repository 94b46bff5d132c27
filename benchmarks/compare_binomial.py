"""The collapsed model against the exact Binomial model on a finished study's run table.

Fits both (`analysis.method: collapsed` and `binomial`) with the study's own analysis
settings on `results/table/runs.parquet` and prints, per outcome and scope, each factor's
posterior mean importance and expected rank under both, the largest differences in
P(rank = k), the hypotheses' probabilities and the fit times. Run after `make run`:

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/compare_binomial.py \
        [--config config.yaml] [--outcome test_accuracy] [--out benchmarks/results/compare_binomial.json]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import whatmatters  # noqa: E402,F401  (thread and BLAS settings before pymc loads)
from whatmatters import summarize as S  # noqa: E402
from whatmatters.posterior import importance_by_scope  # noqa: E402
from whatmatters.aggregate import read_table  # noqa: E402
from whatmatters.analysis_spec import analysis_spec  # noqa: E402
from whatmatters.config import read_config  # noqa: E402
from whatmatters.fitting import fit  # noqa: E402
from whatmatters.io import write_json  # noqa: E402
from whatmatters.study import load_study  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--table", default="results/table/runs.parquet")
    p.add_argument("--outcome", default="test_accuracy")
    p.add_argument("--out", default="benchmarks/results/compare_binomial.json")
    args = p.parse_args()

    study = load_study(read_config(args.config))
    table = read_table(args.table)
    fits = {}
    for method in ("collapsed", "binomial"):
        spec = analysis_spec(study, args.outcome)
        spec["model"]["method"], spec["sampler"]["nuts"] = method, "pymc"
        start = time.perf_counter()
        idata = fit(table, spec)
        fits[method] = {"idata": idata, "seconds": round(time.perf_counter() - start, 1), "spec": spec}

    rows, result = [], {"runs": len(table), "outcome": args.outcome, "methods": {}}
    for method, fit in fits.items():
        diag = S.diagnostics(fit["idata"])
        result["methods"][method] = {
            "seconds": fit["seconds"], "divergences": diag["divergences"], "max_rhat": diag["max_rhat"],
            "min_ess_bulk": diag["min_ess_bulk"],
            "hypotheses": {name: h["scopes"]["pooled"]["p_holds"] for name, h in
                           S.hypothesis_probabilities(fit["idata"], fit["spec"]["hypotheses"]).items()},
        }
    tables = {m: S.importance_table(f["idata"]).set_index(["dataset", "factor"]) for m, f in fits.items()}
    ranks = {m: S.rank_probabilities(f["idata"]).set_index(["dataset", "factor", "rank"])["probability"]
             for m, f in fits.items()}
    for scope in dict.fromkeys(tables["collapsed"].index.get_level_values("dataset")):
        expected = {m: S.ranks(importance_by_scope(f["idata"])[scope]).mean(("chain", "draw")).to_series()
                    for m, f in fits.items()}
        for factor in expected["collapsed"].sort_values().index:
            rows.append({"dataset": scope, "factor": factor,
                         **{f"{m}_importance": round(float(tables[m].loc[(scope, factor), "mean"]), 3) for m in fits},
                         **{f"{m}_expected_rank": round(float(expected[m][factor]), 2) for m in fits},
                         "max_abs_diff_p_rank": round(float((ranks["collapsed"].loc[(scope, factor)]
                                                             - ranks["binomial"].loc[(scope, factor)]).abs().max()), 3)})
    result["factors"] = rows
    write_json(Path(args.out), result)

    print(f"{len(table)} runs, outcome {args.outcome}")
    for m, r in result["methods"].items():
        print(f"{m}: {r['seconds']} s, {r['divergences']} divergences, max R-hat {r['max_rhat']:.3f}, "
              f"min bulk ESS {r['min_ess_bulk']:.0f}, P(hypotheses) {r['hypotheses']}")
    print("| scope | factor | importance (collapsed / binomial) | expected rank (collapsed / binomial) "
          "| max abs diff in P(rank = k) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['factor']} | {r['collapsed_importance']} / {r['binomial_importance']} | "
              f"{r['collapsed_expected_rank']} / {r['binomial_expected_rank']} | {r['max_abs_diff_p_rank']} |")


if __name__ == "__main__":
    main()
