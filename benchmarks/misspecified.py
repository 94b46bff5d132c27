"""Validation under misspecification: run tables from processes that are not the model.

Each study draws a `whatmatters.simulation.Scenario` (7 factors of 3-5 levels, 2-3
datasets, a balanced random design of 32-60 configs x 3 seeds, 1,000-2,000 test examples
per run), fits it with `whatmatters.fitting.fit` (the collapsed method, main effects and
the config residual unless --interactions) and compares the posterior with the truth,
computed model-free over the full factorial (docs/model.md): per dataset, the sd over
levels of the main effects of the expected logit accuracy, failures included; pooled, its
mean over datasets.

Per class (`SCENARIOS`), over every scope (pooled and each dataset):
  coverage       the 90% HDI of each factor's importance (the published interval) holds the
                 truth (goal 0.85-0.95); coverage_central: the same for the central interval
  calls          pairs (f, g) with P(f > g) >= 0.9: the share right (goal >= 0.9)
  top            where the true top factor leads the second by >= 25%: mean and min of
                 P(true top ranks first) (goals >= 0.6 and never < 0.1)
  flagged        the share of studies whose diagnostics name non-additivity

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/misspecified.py --studies 20 \
        --out benchmarks/results/misspecified.json
    ... --classes interactions --interactions --out benchmarks/results/misspecified_interactions.json
    ... --classes interactions --budget 180 --splits 60x3 90x2 180x1 --out benchmarks/results/design_split.json
    ... --quick          # smoke test: 2 classes x 1 small study

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

import whatmatters  # noqa: E402,F401  (one BLAS thread, set before numpy loads)
import numpy as np  # noqa: E402

from whatmatters.io import provenance, write_json  # noqa: E402

GOALS = {"coverage": (0.85, 0.95), "calls_right": 0.9, "top_mean": 0.6, "top_min": 0.1}
LEAD = 1.25          # the true top factor leads the second by this factor for the top-factor goals
CALL = 0.9           # a pairwise call: P(f > g) >= CALL


def one_study(kind: str, index: int, configs: int | None, seeds: int, interactions: bool, sampler: dict) -> dict:
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from whatmatters import fitting, summarize
    from whatmatters.simulation import Scenario

    scenario = Scenario(kind, seed=10_000 + 97 * index + 13 * len(kind))
    rng = np.random.default_rng(index)
    n_configs = configs or int(rng.integers(32, 61))
    table = scenario.table(n_configs, seeds, rng)
    spec = {**scenario.spec(), "model": {"method": "collapsed", "interactions": interactions},
            "sampler": {**sampler, "seed": index}, "hypotheses": []}
    start = time.perf_counter()
    idata = fitting.fit(table, spec)
    seconds = time.perf_counter() - start
    diag = summarize.diagnostics(idata)
    return {"kind": kind, "index": index, "configs": n_configs, "seeds": seeds, "datasets": len(scenario.datasets),
            "interactions": interactions, "seconds": round(seconds, 1), "divergences": diag["divergences"],
            "max_rhat": diag["max_rhat"], "model_check": diag["model_check"],
            "non_additivity": {d: {k: v[k] for k in ("ratio", "share", "ppc_p_value")}
                               for d, v in diag["non_additivity"].items()},
            "scopes": against_truth(idata, scenario.truth)}


def against_truth(idata, truth_of: dict) -> dict:
    """Per scope (pooled and each dataset): the posterior of every factor's importance
    against its true value (`truth_of`: {factor: {dataset: value}}; pooled: the mean over
    datasets): 90% HDI and central interval, whether each holds the truth, the pairwise
    calls, the true top factor's lead and P(it ranks first)."""
    from whatmatters.posterior import hdi, importance_by_scope

    scopes = {}
    for scope, imp in importance_by_scope(idata).items():
        draws = imp.transpose("chain", "draw", "factor").values.reshape(-1, imp.sizes["factor"])
        factors = [str(f) for f in imp["factor"].values]
        truth = np.array([np.mean(list(truth_of[f].values())) if scope == "pooled"
                          else truth_of[f][scope] for f in factors])
        hdis = [hdi(draws[:, i], 0.9) for i in range(len(factors))]
        central = np.quantile(draws, [0.05, 0.95], axis=0).T
        covered = [bool(lo <= t <= hi) for t, (lo, hi) in zip(truth, hdis)]
        covered_central = [bool(lo <= t <= hi) for t, (lo, hi) in zip(truth, central)]
        calls = []
        for i in range(len(factors)):
            for j in range(len(factors)):
                p = float((draws[:, i] > draws[:, j]).mean())
                if i != j and p >= CALL:
                    calls.append(bool(truth[i] > truth[j]))
        order = np.argsort(-truth)
        first = (draws.argmax(axis=1) == order[0]).mean()
        scopes[scope] = {"truth": truth.tolist(), "mean": draws.mean(axis=0).tolist(), "covered": covered,
                         "covered_central": covered_central, "hdi": [list(h) for h in hdis],
                         "central": central.tolist(),
                         "calls": calls, "lead": float(truth[order[0]] / max(truth[order[1]], 1e-12)),
                         "p_true_top_first": float(first)}
    return scopes


def summarize_class(records: list[dict]) -> dict:
    scopes = [s for r in records for s in r["scopes"].values()]
    covered = [c for s in scopes for c in s["covered"]]
    central = [c for s in scopes for c in s.get("covered_central", [])]
    calls = [c for s in scopes for c in s["calls"]]
    tops = [s["p_true_top_first"] for s in scopes if s["lead"] >= LEAD]
    out = {"studies": len(records), "scopes": len(scopes),
           "coverage": float(np.mean(covered)) if covered else None,
           "coverage_central": float(np.mean(central)) if central else None,
           "hdi_width": float(np.mean([h[1] - h[0] for s in scopes for h in s.get("hdi", [])]))
           if any("hdi" in s for s in scopes) else None,
           "calls": len(calls), "calls_right": float(np.mean(calls)) if calls else None,
           "top_scopes": len(tops), "top_mean": float(np.mean(tops)) if tops else None,
           "top_min": float(np.min(tops)) if tops else None,
           "flagged": float(np.mean([bool(r["model_check"]) for r in records])),
           "median_seconds": float(np.median([r["seconds"] for r in records])),
           "divergent_studies": int(sum(bool(r["divergences"]) for r in records))}
    cov, right = out["coverage"], out["calls_right"]
    out["meets"] = {"coverage": cov is not None and GOALS["coverage"][0] <= cov <= GOALS["coverage"][1],
                    "calls_right": right is None or right >= GOALS["calls_right"],
                    "top_mean": out["top_mean"] is None or out["top_mean"] >= GOALS["top_mean"],
                    "top_min": out["top_min"] is None or out["top_min"] >= GOALS["top_min"]}
    return out


def misses_by_rank(records: list[dict]) -> dict:
    """Where coverage is lost: per true rank (1 = the truly most important factor in its
    scope), the share of 90% HDIs holding the truth, and the misses with the truth below
    the interval (importance over-stated) and above it (under-stated)."""
    rows = {}
    for s in (s for r in records for s in r["scopes"].values()):
        order = np.argsort(-np.asarray(s["truth"]), kind="stable")
        for rank, i in enumerate(order, 1):
            lo, hi = s["hdi"][i]
            row = rows.setdefault(rank, {"n": 0, "covered": 0, "over": 0, "under": 0})
            row["n"] += 1
            row["covered"] += int(lo <= s["truth"][i] <= hi)
            row["over"] += int(s["truth"][i] < lo)
            row["under"] += int(s["truth"][i] > hi)
    return dict(sorted(rows.items()))


def markdown_by_rank(groups: dict) -> str:
    """Coverage by true rank, per class: one row per class, 'coverage (over/under)' cells."""
    ranks = sorted({k for v in groups.values() for k in misses_by_rank(v)})
    lines = ["| class | " + " | ".join(f"rank {k}" for k in ranks) + " |", "| --- |" + " --- |" * len(ranks)]
    for kind, records in groups.items():
        rows = misses_by_rank(records)
        lines.append(f"| {kind} | " + " | ".join(
            f"{rows[k]['covered'] / rows[k]['n']:.2f} ({rows[k]['over']}/{rows[k]['under']})" if k in rows else "n/a"
            for k in ranks) + " |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The summary as a Markdown table (docs/validation.md)."""
    lines = ["| class | studies | 90% HDI coverage | central 90% coverage | mean HDI width | calls P >= 0.9 (right) | "
             "mean / min P(true top first), lead >= 25% (scopes) | flagged non-additive | median fit (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fmt = lambda v, f: "n/a" if v is None else format(v, f)     # noqa: E731
    for kind, v in result["summary"].items():
        lines.append(f"| {kind} | {v['studies']} | {fmt(v['coverage'], '.2f')} | {fmt(v.get('coverage_central'), '.2f')} "
                     f"| {fmt(v.get('hdi_width'), '.3f')} "
                     f"| {v['calls']} ({fmt(v['calls_right'], '.3f')}) | {fmt(v['top_mean'], '.2f')} / "
                     f"{fmt(v['top_min'], '.2f')} ({v['top_scopes']}) | {v['flagged']:.0%} | {v['median_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    from whatmatters.simulation import SCENARIOS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="index of the first study (resume or extend)")
    ap.add_argument("--indices", nargs="+", type=int, default=None,
                    help="these study indices instead of --first/--studies (fill the gaps of a stopped run)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--configs", type=int, default=None, help="configs per study (default 32-60 at random)")
    ap.add_argument("--budget", type=int, default=None, help="with --splits: runs per dataset")
    ap.add_argument("--splits", nargs="+", default=None, help="configs x seeds, e.g. 60x3 90x2 180x1")
    ap.add_argument("--interactions", nargs="?", const=True, default=False, choices=[True, "auto"],
                    help="fit pairwise interactions (or 'auto': as analysis.interactions: auto)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the Markdown table of --out and stop")
    ap.add_argument("--save", action="store_true",
                    help="with --report and --also: write the joined studies into --out")
    ap.add_argument("--by-rank", action="store_true",
                    help="with --report: coverage by true rank, misses over-/under-stating the importance")
    ap.add_argument("--also", nargs="*", type=Path, default=[],
                    help="with --report: more result files whose studies join --out's (runs resumed with --first)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/misspecified.json")
    args = ap.parse_args()
    if args.report:
        files = [json.loads(path.read_text()) for path in [args.out, *args.also]]
        seen, groups, kept = set(), {}, []
        for r in (r for f in files for r in f["records"] if "error" not in r):
            key = (r["kind"], r["index"], r["configs"], r["seeds"])
            if key in seen:          # a study run twice (overlapping resumed runs) counts once
                continue
            seen.add(key)
            kept.append(r)
            groups.setdefault(f"{r['kind']} {r['configs']}x{r['seeds']}" if args.splits else r["kind"], []).append(r)
        groups = dict(sorted(groups.items()))
        if args.save and args.also:  # one results file from resumed runs, every run's provenance kept
            provenances = [p for f in files for p in (f["provenance"] if isinstance(f["provenance"], list)
                                                      else [f["provenance"]])]
            notes = [f["note"] for f in files if f.get("note")]
            write_json(args.out, {"provenance": provenances, "goals": GOALS, "note": " | ".join(
                notes + [f"joined: {', '.join(str(p) for p in [args.out, *args.also])}; a study run twice counts once; "
                         "failed studies left out"]),
                "summary": {k: summarize_class(v) for k, v in groups.items()}, "records": kept})
        print(markdown_by_rank(groups) if args.by_rank else
              markdown({"summary": {k: summarize_class(v) for k, v in groups.items()}}))
        return
    sampler = {"chains": args.chains, "draws": args.draws, "tune": args.draws, "target_accept": 0.9,
               "cores": 1, "nuts": "auto"}
    if args.quick:
        args.classes, args.studies, args.configs = args.classes[:2], 1, 32
        sampler.update(draws=300, tune=300)
    splits = [tuple(map(int, s.split("x"))) for s in args.splits] if args.splits else [(args.configs, args.seeds)]
    # interleaved (study 0 of every class, then study 1, ...): a run stopped early has every
    # class about equally far along
    indices = args.indices or range(args.first, args.first + args.studies)
    jobs = [(kind, i, c, s) for i in indices for (c, s) in splits
            for kind in args.classes]
    records, started = [], time.time()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(one_study, kind, i, c, s, args.interactions, sampler): (kind, i, c, s)
                   for kind, i, c, s in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            kind, i, c, s = futures[future]
            try:
                records.append(future.result())
            except Exception as e:          # a failed study is recorded, not fatal
                records.append({"kind": kind, "index": i, "configs": c, "seeds": s, "error": repr(e)})
            print(f"[{done}/{len(jobs)}] {kind} #{i} {c}x{s}: "
                  f"{records[-1].get('seconds', records[-1].get('error'))} s, {time.time() - started:.0f} s in all",
                  flush=True)
            good = [r for r in records if "error" not in r]
            groups = {}
            for r in good:
                key = r["kind"] if not args.splits else f"{r['kind']} {r['configs']}x{r['seeds']}"
                groups.setdefault(key, []).append(r)
            write_json(args.out, {"provenance": provenance(step="benchmark misspecified", args=vars(args) | {
                "out": str(args.out)}, sampler=sampler), "goals": GOALS, "planned": len(jobs),
                "completed": len(records), "summary": {k: summarize_class(v) for k, v in sorted(groups.items())},
                "records": records})
    print(markdown(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
