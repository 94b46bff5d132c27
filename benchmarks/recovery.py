"""Recovery of planted importances: does the model find the order and cover the truth?

Each simulated study draws a run table from the model's own generative process
(`whatmatters.simulation.simulate_table`) with planted importances, fits it with
`whatmatters.fitting.fit` (the collapsed model, PyMC's NUTS) and compares the posterior
with the truth:

  (a) order: is the modal full order of the pooled importances over the draws the planted
      one; P(true top factor ranks first); Spearman rho of expected ranks vs true ranks;
  (b) calibration: does the central (equal-tailed) 50% / 90% interval of each factor's
      importance, pooled and per dataset, hold the true value;
  (c) a sweep over the ratio between consecutive planted importances (the closer, the
      harder to order).

A study: 7 factors of 3-6 levels, 1-4 datasets (cycled), 100-400 configs x 2-3 seeds per
dataset, 300-2000 test examples per run, seed noise sd 0.05-0.25, 2-5% of runs diverged
at random to 10% accuracy, and in the main studies one random level of one random factor
diverging up to 10 points more often (an unstable learning rate). Diverged runs are data:
the truth is the estimand, the sd of the main effects of a run's expected logit accuracy,
failures included (`simulate_table`'s truth["importance"]), not the converged runs'
planted sd, which random divergence dilutes. Planted importances: the top one uniform in [0.4, 1.0] logits, the next
ones each `ratio` times smaller, randomly permuted over the factors. The main studies
draw the ratio log-uniformly in [1.1, 2.0]; the sweep fixes it.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/recovery.py \
        --studies 60 --sweep-studies 12 --out benchmarks/results/recovery.json
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/recovery.py --quick     # smoke test

The JSON holds every study's record (settings, truth, posterior summaries, sampler health)
and the summary; it is rewritten after each finished study, so an interrupted run keeps
what it has. Results: docs/validation.md.
"""

import argparse
import json
import logging
import math
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import whatmatters  # noqa: E402,F401  (one BLAS thread, set before numpy loads)
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from whatmatters.io import provenance, write_json  # noqa: E402

FACTORS = ["optimizer", "learning_rate", "batch_size", "init", "augmentation", "weight_decay", "schedule"]
SWEEP_RATIOS = [2.0, 1.5, 1.25, 1.1]     # consecutive planted importances differ by this factor
SIM = {   # how a study is drawn; (low, high) = uniform unless said otherwise
    "levels": (3, 6),                     # levels per factor, integer
    "datasets": (1, 4),                   # cycled over studies, not drawn: every count equally often
    "top_importance": (0.4, 1.0),         # logit sd of the top factor's level effects
    "ratio": (1.1, 2.0),                  # main studies, log-uniform
    "configs": (100, 300),                # distinct configs per dataset, integer
    "seeds": (2, 3),                      # seeds per config, integer
    "trials": (300, 2000),                # test examples per run, per dataset, integer
    "accuracy": (0.6, 0.92),              # mean accuracy per dataset
    "dataset_deviation": (0.1, 0.4),      # per-dataset deviation relative to the pooled effect
    "seed_sd": (0.05, 0.25),              # seed-to-seed sd of logit accuracy
    "diverged_fraction": (0.02, 0.05),    # runs that diverge at random ...
    "diverged_accuracy": 0.1,             # ... to chance level of a 10-class task
    "unstable_extra": (0.0, 0.1),         # extra divergence probability of one random non-baseline
}                                         # level of one random factor (main studies only)
QUICK = {"configs": (60, 100), "seeds": (2, 2), "trials": (300, 800)}
MODEL = {"method": "collapsed", "interactions": False}
SAMPLER = {"chains": 2, "draws": 500, "tune": 500,   # 2,000 steps: ~25 s (D=1) .. ~60 s (D=4) a fit
           "target_accept": 0.9, "cores": 1, "nuts": "pymc"}
QUICK_SAMPLER = {"draws": 300, "tune": 300}
PROBS = (0.5, 0.9)                        # central interval probabilities checked in (b)


def draw_study(study_seed: int, n_datasets: int, ratio: float | None, sim: dict) -> dict:
    """The settings of one simulated study (everything `simulate_table` and `fit` need)."""
    rng = np.random.default_rng(study_seed)
    sweep_ratio = ratio
    u = lambda key: float(rng.uniform(*sim[key]))                       # noqa: E731
    i = lambda key: int(rng.integers(sim[key][0], sim[key][1] + 1))     # noqa: E731
    if ratio is None:
        ratio = float(np.exp(rng.uniform(*np.log(sim["ratio"]))))
    top = u("top_importance")
    planted = top / ratio ** np.arange(len(FACTORS))                    # (F,) descending
    importance = dict(zip(FACTORS, rng.permutation(planted).tolist()))
    datasets = [f"data{k + 1}" for k in range(n_datasets)]
    levels = {f: i("levels") for f in FACTORS}
    unstable = None
    if sweep_ratio is None:            # the sweep keeps divergence config-independent: a clean ratio
        f = FACTORS[int(rng.integers(len(FACTORS)))]
        unstable = [f, int(rng.integers(1, levels[f])), u("unstable_extra")]
    return {
        "seed": study_seed, "ratio": ratio, "top_importance": top, "importance": importance,
        "levels": levels, "datasets": datasets, "unstable": unstable,
        "configs": i("configs"), "seeds": i("seeds"),
        "trials": {d: i("trials") for d in datasets}, "accuracy": {d: u("accuracy") for d in datasets},
        "dataset_deviation": u("dataset_deviation"), "seed_sd": u("seed_sd"),
        "diverged_fraction": u("diverged_fraction"), "diverged_accuracy": sim["diverged_accuracy"],
    }


def run_study(study: dict, sampler: dict) -> dict:
    """Simulate, fit and score one study. Returns its record (JSON-ready)."""
    logging.getLogger("pymc").setLevel(logging.ERROR)
    from whatmatters import summarize
    from whatmatters.fitting import fit
    from whatmatters.simulation import simulate_table
    from whatmatters.posterior import importance_by_scope

    spec = {
        "factors": {f: {"levels": [f"{f}_{k}" for k in range(n)], "baseline": f"{f}_0"}
                    for f, n in study["levels"].items()},
        "datasets": study["datasets"],
        "outcome": {"name": "test_accuracy", "successes": "n_test_correct", "trials": "n_test"},
        "hypotheses": [],
        "model": MODEL,
        "sampler": {**sampler, "seed": study["seed"]},
        "allow_missing": False,
    }
    table, truth = simulate_table(
        spec, study["importance"], configs=study["configs"], seeds=study["seeds"], trials=study["trials"],
        accuracy=study["accuracy"], dataset_deviation=study["dataset_deviation"], seed_sd=study["seed_sd"],
        diverged_fraction=study["diverged_fraction"], diverged_accuracy=study["diverged_accuracy"],
        unstable=tuple(study["unstable"]) if study["unstable"] else None, random_seed=study["seed"])
    start = time.perf_counter()
    idata = fit(table, spec)
    fit_seconds = time.perf_counter() - start
    diag = summarize.diagnostics(idata)

    true_fd = np.array([[truth["importance"][f][d] for d in study["datasets"]] for f in FACTORS])   # (F, D)
    scopes = {"pooled": true_fd.mean(axis=1), **{d: true_fd[:, k] for k, d in enumerate(study["datasets"])}}
    post = importance_by_scope(idata)                          # scope -> (chain, draw, factor)
    intervals = []
    for scope, true in scopes.items():
        draws = post[scope].sel(factor=FACTORS).values.reshape(-1, len(FACTORS))   # (S, F)
        for j, f in enumerate(FACTORS):
            row = {"scope": scope, "factor": f, "truth": float(true[j]), "mean": float(draws[:, j].mean()),
                   "pit": float((draws[:, j] < true[j]).mean())}      # P(draw < truth): uniform if calibrated
            for p in PROBS:
                low, high = np.quantile(draws[:, j], [(1 - p) / 2, (1 + p) / 2])
                row[f"covered_{round(100 * p)}"] = bool(low <= true[j] <= high)
            intervals.append(row)

    pooled = post["pooled"].sel(factor=FACTORS)
    rank = summarize.ranks(pooled).values.reshape(-1, len(FACTORS))     # (S, F), 1 = most important
    true_rank = np.argsort(np.argsort(-scopes["pooled"])) + 1           # (F,)
    modal, modal_count = Counter(map(tuple, rank)).most_common(1)[0]
    top = int(np.argmin(true_rank))
    expected = rank.mean(axis=0)
    return {
        "study": study, "runs": int(len(table)), "diverged_runs": int((table["status"] == "diverged").sum()),
        "true_importance": truth["importance"], "planted_importance": truth["planted"],
        "true_pooled_rank": dict(zip(FACTORS, true_rank.tolist())),
        "modal_order_correct": bool(np.array_equal(np.array(modal), true_rank)),
        "p_modal_order": modal_count / len(rank),
        "p_true_order": float((rank == true_rank).all(axis=1).mean()),
        "p_true_top_first": float((rank[:, top] == 1).mean()),
        "spearman_expected_rank": float(spearmanr(expected, true_rank).statistic),
        "expected_rank": dict(zip(FACTORS, expected.round(3).tolist())),
        "intervals": intervals,
        "sampling": {"fit_seconds": round(fit_seconds, 1), "divergences": diag["divergences"],
                     "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
                     "min_ess_tail": diag["min_ess_tail"], "ok": diag["ok"]},
    }


def coverage(records: list[dict], keep=lambda rec, row: True) -> dict:
    """Coverage of the 50% and 90% intervals over the (study, scope, factor) rows `keep` picks.

    `se_binomial` treats the rows as independent; `se_study` is the cluster (by study)
    standard error of the ratio estimate, honest about rows of one study sharing a fit.
    """
    out = {}
    for p in PROBS:
        key = f"covered_{round(100 * p)}"
        hits = np.array([sum(r[key] for r in rec["intervals"] if keep(rec, r)) for rec in records], float)
        n = np.array([sum(1 for r in rec["intervals"] if keep(rec, r)) for rec in records], float)
        total = n.sum()
        if total == 0:
            return {"n": 0}
        c = hits.sum() / total
        m = int((n > 0).sum())
        se_study = (math.sqrt(m / (m - 1) * ((hits - c * n) ** 2).sum()) / total) if m > 1 else float("nan")
        out[str(round(100 * p))] = {"coverage": c, "se_binomial": math.sqrt(c * (1 - c) / total),
                                    "se_study": se_study}
    out["n"] = int(total)
    return out


def summarize_records(records: list[dict]) -> dict:
    """Headline numbers of a group of study records."""
    if not records:
        return {"studies": 0}
    samp = [r["sampling"] for r in records]
    pooled = lambda rec, row: row["scope"] == "pooled"                    # noqa: E731
    per_dataset = lambda rec, row: row["scope"] != "pooled" and len(rec["study"]["datasets"]) > 1  # noqa: E731
    every = lambda rec, row: pooled(rec, row) or per_dataset(rec, row)   # noqa: E731  (D = 1: one scope)
    pits = np.array([row["pit"] for rec in records for row in rec["intervals"] if every(rec, row)])
    return {
        "studies": len(records),
        "modal_order_correct": float(np.mean([r["modal_order_correct"] for r in records])),
        "mean_p_true_order": float(np.mean([r["p_true_order"] for r in records])),
        "mean_p_true_top_first": float(np.mean([r["p_true_top_first"] for r in records])),
        "mean_spearman": float(np.mean([r["spearman_expected_rank"] for r in records])),
        "coverage": {
            "pooled": coverage(records, pooled),
            "per_dataset": coverage(records, per_dataset),
            "overall": coverage(records, every),
            **{f"pooled, D={d}": coverage(records, lambda rec, row, d=d: pooled(rec, row)
                                         and len(rec["study"]["datasets"]) == d) for d in range(1, 5)},
            "truth < 0.05 logit": coverage(records, lambda rec, row: every(rec, row) and row["truth"] < 0.05),
            "truth >= 0.05 logit": coverage(records, lambda rec, row: every(rec, row) and row["truth"] >= 0.05),
        },
        "pit_mean": float(pits.mean()),   # 0.5 if calibrated; < 0.5: posterior above the truth
        "pit_below_0.05": float((pits < 0.05).mean()), "pit_above_0.95": float((pits > 0.95).mean()),
        "sampling": {
            "studies_with_divergences": int(sum((s["divergences"] or 0) > 0 for s in samp)),
            "total_divergences": int(sum(s["divergences"] or 0 for s in samp)),
            "max_rhat": float(max(s["max_rhat"] for s in samp)),
            "studies_rhat_above_1.01": int(sum(s["max_rhat"] > 1.01 for s in samp)),
            "min_ess_bulk": float(min(s["min_ess_bulk"] for s in samp)),
            "median_fit_seconds": float(np.median([s["fit_seconds"] for s in samp])),
            "max_fit_seconds": float(max(s["fit_seconds"] for s in samp)),
        },
    }


def summary(records: list[dict]) -> dict:
    main = [r for r in records if r["group"] == "main"]
    sweep = {str(q): summarize_records([r for r in records if r["group"] == f"ratio={q}"]) for q in SWEEP_RATIOS}
    return {"main": summarize_records(main), "sweep": sweep}


def markdown(s: dict, wall: float) -> str:
    m = s["main"]
    pct = lambda x: f"{100 * x:.1f}%"                                     # noqa: E731
    lines = [f"## (a) order, pooled scope ({m['studies']} studies, ratio log-uniform in [1.1, 2])", "",
             "| modal order = planted | mean P(planted order) | mean P(true top ranked first) | mean Spearman |",
             "| --- | --- | --- | --- |"]
    if m["studies"]:
        lines.append(f"| {pct(m['modal_order_correct'])} | {m['mean_p_true_order']:.3f} | "
                     f"{m['mean_p_true_top_first']:.3f} | {m['mean_spearman']:.3f} |")
        lines += ["", "## (b) coverage of central intervals (nominal 50% / 90%)", "",
                  "| scope | intervals | 50% (± binom. SE, ± study SE) | 90% (± binom. SE, ± study SE) |",
                  "| --- | --- | --- | --- |"]
        for name, c in m["coverage"].items():
            if c["n"]:
                cells = [f"{pct(c[k]['coverage'])} (± {100 * c[k]['se_binomial']:.1f}, ± {100 * c[k]['se_study']:.1f})"
                         for k in ("50", "90")]
                lines.append(f"| {name} | {c['n']} | {cells[0]} | {cells[1]} |")
        lines += ["", f"PIT mean {m['pit_mean']:.3f} (0.5 if calibrated); truth below the 5% quantile "
                  f"{pct(m['pit_below_0.05'])}, above the 95% quantile {pct(m['pit_above_0.95'])}"]
    lines += ["", "## (c) sweep over the ratio of consecutive planted importances", "",
              "| ratio | studies | modal order = planted | mean P(true top first) | mean Spearman | 90% coverage (all scopes) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for q, r in s["sweep"].items():
        if r["studies"]:
            lines.append(f"| {q} | {r['studies']} | {pct(r['modal_order_correct'])} | {r['mean_p_true_top_first']:.3f} "
                         f"| {r['mean_spearman']:.3f} | {pct(r['coverage']['overall']['90']['coverage'])} |")
    every = [g for g in [m, *s["sweep"].values()] if g["studies"]]
    if every:
        lines += ["", "## sampling health", "", "| group | studies | with divergences | divergences | max R-hat "
                  "| R-hat > 1.01 | min bulk ESS | median / max fit s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, g in [("main", m), *[(f"ratio={q}", r) for q, r in s["sweep"].items()]]:
            if g["studies"]:
                h = g["sampling"]
                lines.append(f"| {name} | {g['studies']} | {h['studies_with_divergences']} | {h['total_divergences']} "
                             f"| {h['max_rhat']:.3f} | {h['studies_rhat_above_1.01']} | {h['min_ess_bulk']:.0f} "
                             f"| {h['median_fit_seconds']:.0f} / {h['max_fit_seconds']:.0f} |")
    lines += ["", f"wall time {wall / 60:.1f} min"]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=60, help="main studies, for (a) and (b)")
    parser.add_argument("--sweep-studies", type=int, default=12, help="studies per ratio in (c)")
    parser.add_argument("--workers", type=int, default=2, help="parallel fits (1 chain-sequential fit each)")
    parser.add_argument("--seed", type=int, default=2026, help="base seed; study i uses seed*1000 + i")
    parser.add_argument("--quick", action="store_true", help="smoke test: 6 small main studies, no sweep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/recovery.json")
    parser.add_argument("--report", action="store_true", help="only print the summary of an existing --out")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.out.read_text())
        print(f"{saved['completed']} of {saved['planned']} studies completed")
        print(markdown(summary(saved["records"]), saved["wall_seconds"]))
        return
    sim, sampler = dict(SIM), dict(SAMPLER)
    if args.quick:
        sim.update(QUICK)
        sampler.update(QUICK_SAMPLER)
        args.studies, args.sweep_studies = 6, 0    # the test reads the main studies only

    jobs, k = [], 0
    groups = [("main", None, args.studies)] + [(f"ratio={q}", q, args.sweep_studies) for q in SWEEP_RATIOS]
    for group, ratio, n in groups:
        for i in range(n):
            jobs.append(((i + 0.5) / n, group, draw_study(args.seed * 1000 + k, 1 + i % 4, ratio, sim)))
            k += 1
    jobs = [(group, study) for _, group, study in sorted(jobs, key=lambda job: job[0])]   # groups interleaved:
                                                                                         # a cut-short run has some of each
    settings = {"studies": args.studies, "sweep_studies": args.sweep_studies, "sweep_ratios": SWEEP_RATIOS,
                "quick": args.quick, "simulation": sim, "model": MODEL, "sampler": sampler, "seed": args.seed,
                "interval": "central (equal-tailed) quantile interval over all draws", "probs": PROBS}
    made = provenance(step="recovery benchmark", settings=settings)

    start, records = time.perf_counter(), []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_study, study, sampler): group for group, study in jobs}
        for future in as_completed(futures):
            record = {"group": futures[future], **future.result()}
            records.append(record)
            done = time.perf_counter() - start
            print(f"[{len(records)}/{len(jobs)} {done / 60:5.1f} min] {record['group']} seed {record['study']['seed']} "
                  f"D={len(record['study']['datasets'])} runs={record['runs']} fit {record['sampling']['fit_seconds']}s "
                  f"div={record['sampling']['divergences']} rhat={record['sampling']['max_rhat']:.3f} "
                  f"order={'ok' if record['modal_order_correct'] else 'no'} "
                  f"P(top)={record['p_true_top_first']:.2f}", flush=True)
            records.sort(key=lambda r: r["study"]["seed"])
            write_json(args.out, {"provenance": made, "completed": len(records), "planned": len(jobs),
                                  "wall_seconds": round(done, 1), "summary": summary(records), "records": records})
    wall = time.perf_counter() - start
    print(markdown(summary(records), wall))


if __name__ == "__main__":
    main()
