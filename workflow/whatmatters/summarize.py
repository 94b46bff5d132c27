"""From a fitted posterior to the published numbers: importance, rank probabilities,
hypothesis probabilities and sampler diagnostics.

Every function here is pure: it reads an `az.InferenceData` whose posterior holds

    importance         (chain, draw, factor, dataset)   s_{f,d}, see `whatmatters.estimands`
    importance_pooled  (chain, draw, factor)            s_f = mean_d s_{f,d}

and returns plain tables or dicts, per scope (`whatmatters.posterior`). Only
`write_summaries` and `write_outcome_comparison` touch the disk.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from whatmatters import hypotheses as H
from whatmatters import ppc
from whatmatters.errors import WhatmattersError
from whatmatters.estimands import describe, present, rank_agreement
from whatmatters.io import atomic_path, provenance, write_json
from whatmatters.outputs import SUMMARIES
from whatmatters.posterior import (ATTR_FREE, INTERVAL, POOLED, hdi, importance_by_scope, interaction_names,
                                   provenance_of, spec_of)

log = logging.getLogger(__name__)

MAX_RHAT = 1.01          # Vehtari et al. (2021): above this, chains have not mixed
MIN_ESS_PER_CHAIN = 100  # ... and below 100 per chain, tail quantiles are unreliable
NONADDITIVE_SHARE = 0.2  # config residual above this share of config-to-config variance: say so
DOMINANT_SHARE = 0.5     # above this, interactions dominate the main effects (docs/validation.md)
PPC_P_VALUE = 0.02       # config means scatter beyond what the model expects below this p-value


def ranks(importance: xr.DataArray) -> xr.DataArray:
    """Rank of each factor within each draw, 1 = most important.

    Args:
      importance: (..., factor) draws of importance.
    Returns:
      int DataArray of the same dims; along `factor` each draw is a permutation of 1..F.
      Exact ties (measure zero for a real posterior) go to the factor listed first.
    """
    arr = importance.transpose(..., "factor")
    order = np.argsort(-arr.values, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable") + 1
    return arr.copy(data=rank)


def importance_table(idata: az.InferenceData) -> pd.DataFrame:
    """Posterior summary of each factor's importance, per scope.

    Returns:
      long DataFrame, one row per (dataset, factor), pooled rows first, factors in study
      order; columns `factor`, `dataset` ("pooled" or a dataset name), `mean`, `sd`,
      `hdi_5`, `hdi_95` (90% highest-density interval), `p_rank_1` (P(factor ranks first)).
    """
    rows = []
    for scope, imp in importance_by_scope(idata).items():
        first = (ranks(imp) == 1).mean(("chain", "draw"))
        for f in imp["factor"].values:
            draws = imp.sel(factor=f).values
            low, high = hdi(draws, INTERVAL)
            rows.append({"factor": str(f), "dataset": scope, "mean": float(draws.mean()),
                         "sd": float(draws.std(ddof=1)) if draws.size > 1 else 0.0,
                         "hdi_5": low, "hdi_95": high,
                         "p_rank_1": float(first.sel(factor=f))})
    return pd.DataFrame(rows, columns=["factor", "dataset", "mean", "sd", "hdi_5", "hdi_95", "p_rank_1"])


def interactions_table(idata: az.InferenceData) -> pd.DataFrame:
    """Each factor pair's interaction importance (`whatmatters.estimands`), strongest first,
    beside the main-effect importances of its two factors (pooled); empty (header only)
    when the fit had interactions off.

    Returns columns `pair`, `mean`, `sd`, `hdi_5`, `hdi_95`, `importance_a`,
    `importance_b` (pooled posterior means of the two factors' importance),
    `p_above_smaller` (P(the pair's importance > the smaller of the two main effects)).
    """
    columns = ["pair", "mean", "sd", "hdi_5", "hdi_95", "importance_a", "importance_b", "p_above_smaller"]
    post = idata.posterior
    if "pair_importance" not in post:
        return pd.DataFrame(columns=columns)
    rows = []
    for pair in post["pair"].values:
        f, g = str(pair).split(":")
        draws = post["pair_importance"].sel(pair=pair).values.ravel()
        a, b = (post["importance_pooled"].sel(factor=h).values.ravel() for h in (f, g))
        low, high = hdi(draws, INTERVAL)
        rows.append({"pair": str(pair), "mean": float(draws.mean()), "sd": float(draws.std(ddof=1)),
                     "hdi_5": low, "hdi_95": high, "importance_a": float(a.mean()), "importance_b": float(b.mean()),
                     "p_above_smaller": float((draws > np.minimum(a, b)).mean())})
    return pd.DataFrame(rows, columns=columns).sort_values("mean", ascending=False, ignore_index=True)


def rank_probabilities(idata: az.InferenceData) -> pd.DataFrame:
    """P(rank(factor) = k), per scope: the headline output.

    Returns:
      long DataFrame with columns `factor`, `dataset` ("pooled" or a name), `rank`
      (1 = most important .. F), `probability`; all F x F cells per scope, zeros included.
      Per scope the F x F table is doubly stochastic: each factor's probabilities sum to 1
      over ranks and each rank's sum to 1 over factors.
    """
    rows = []
    for scope, imp in importance_by_scope(idata).items():
        r = ranks(imp)
        n_factors = r.sizes["factor"]
        for f in r["factor"].values:
            rf = r.sel(factor=f).values.ravel()
            counts = np.bincount(rf, minlength=n_factors + 1)[1:] / rf.size
            rows += [{"factor": str(f), "dataset": scope, "rank": k + 1, "probability": float(p)}
                     for k, p in enumerate(counts)]
    return pd.DataFrame(rows, columns=["factor", "dataset", "rank", "probability"])


def expected_ranks(idata: az.InferenceData, scope: str = POOLED) -> pd.Series:
    """Posterior mean rank of each factor in `scope`, ascending (most important first)."""
    r = ranks(importance_by_scope(idata)[scope])
    return r.mean(("chain", "draw")).to_series().sort_values(kind="stable")


def hypothesis_probabilities(idata: az.InferenceData, hypotheses: list[dict]) -> dict:
    """Posterior support for each stated hypothesis, in every scope.

    Args:
      hypotheses: [{"name", "order": [factor, ...], "text"?}], most important first; a
        subset (>= 2) of the factors is a partial claim: only those are compared.
    Returns:
      {name: {"order", "text", "scopes": {scope: {"p_holds", "pairs", "kendall_tau"}}}}
      (see `whatmatters.hypotheses.evaluate`), scopes "pooled" then each dataset.
    Raises:
      WhatmattersError: an order names an unknown factor, repeats one, or has < 2 factors.
    """
    scopes = importance_by_scope(idata)
    known = [str(f) for f in scopes[POOLED]["factor"].values]
    for h in hypotheses:
        order = list(h["order"])
        if len(set(order)) != len(order) or len(order) < 2:
            raise WhatmattersError(f"hypothesis {h.get('name')!r}: order {order} must list >= 2 distinct "
                                   f"factors from {known}")
    by_scope = {scope: H.evaluate(imp, hypotheses) for scope, imp in scopes.items()}
    out = {}
    for h in hypotheses:
        first = by_scope[POOLED][h["name"]]
        out[h["name"]] = {"order": first["order"], "text": first["text"], "scopes": {
            scope: {k: v for k, v in results[h["name"]].items() if k not in ("order", "text")}
            for scope, results in by_scope.items()}}
    return out


def hypotheses_table(idata: az.InferenceData, hypotheses: list[dict]) -> pd.DataFrame:
    """One row per (hypothesis, scope): p_holds and Kendall's tau (`hypotheses.table`)."""
    return H.table({scope: H.evaluate(imp, hypotheses) for scope, imp in importance_by_scope(idata).items()})


def estimands_table(idata: az.InferenceData) -> pd.DataFrame:
    """Every estimand's posterior summary and rank, per scope and factor.

    Returns:
      long DataFrame: `estimand`, `unit`, `factor`, `dataset`, `mean`, `hdi_5`, `hdi_95`,
      `expected_rank` (posterior mean rank, 1 = most important), `rank_hdi_5`,
      `rank_hdi_95`, `p_rank_1`.
    """
    outcome = spec_of(idata).get("outcome")
    rows = []
    for name in present(idata.posterior):
        for scope, imp in importance_by_scope(idata, name).items():
            r = ranks(imp)
            for f in imp["factor"].values:
                draws, rank_draws = imp.sel(factor=f).values, r.sel(factor=f).values
                low, high = hdi(draws, INTERVAL)
                rlow, rhigh = np.quantile(rank_draws, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2],
                                          method="inverted_cdf")
                rows.append({"estimand": name, "unit": describe(name, outcome)[1], "factor": str(f), "dataset": scope,
                             "mean": float(draws.mean()), "hdi_5": low, "hdi_95": high,
                             "expected_rank": float(rank_draws.mean()), "rank_hdi_5": int(rlow),
                             "rank_hdi_95": int(rhigh), "p_rank_1": float((rank_draws == 1).mean())})
    return pd.DataFrame(rows)


def classical_check(idata: az.InferenceData, table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The Bayesian ranks beside fixed-effects ANOVA eta^2 on the same run table
    (`whatmatters.classical`), per scope; `agrees` is False where the classical rank falls
    outside the central 90% posterior rank interval."""
    from whatmatters import classical   # statsmodels: imported only by the step that needs it

    bayes = {scope: ranks(imp) for scope, imp in importance_by_scope(idata).items()}
    return classical.compare(bayes, classical.eta_squared(table, spec), interval=INTERVAL,
                             additivity=classical.lack_of_fit(table, spec))


def non_additivity(idata: az.InferenceData) -> tuple[dict, list[str]]:
    """How far the table is from additive, per dataset, and what to say about it.

    Returns ({dataset: {"ratio", "ratio_hdi", "share", "share_hdi", "ppc_p_value"}}, findings):
    `ratio` and `share` are the posterior means of `nonadditivity` and `nonadditive_share`
    (`whatmatters.estimands`), `ppc_p_value` the posterior predictive check of the spread of
    config means around the additive fit (`whatmatters.ppc.config_spread`); `findings` are
    messages for the ones that cross NONADDITIVE_SHARE, DOMINANT_SHARE or PPC_P_VALUE.
    """
    post = idata.posterior
    if "nonadditivity" not in post:
        return {}, []
    spread = (ppc.config_spread(idata) if "constant_data" in idata.groups()
              and "run_level" in idata.constant_data else {})
    interactions = bool(interaction_names(post))        # the pairs the fit modelled
    out, findings = {}, []
    for d in post["dataset"].values:
        ratio, share = (post[v].sel(dataset=d).values.ravel() for v in ("nonadditivity", "nonadditive_share"))
        p = spread.get(str(d), {}).get("p_value")
        out[str(d)] = {"ratio": float(ratio.mean()), "ratio_hdi": list(hdi(ratio, INTERVAL)),
                       "share": float(share.mean()), "share_hdi": list(hdi(share, INTERVAL)), "ppc_p_value": p}
        where = f"dataset {d}: config means scatter {ratio.mean():.0f}x what seed noise explains"
        advice = ("run more configs" if interactions
                  else "run more configs, or set analysis.interactions: true to model pairs")
        if share.mean() > DOMINANT_SHARE:
            findings.append(f"INTERACTIONS DOMINATE on {where} and {share.mean():.0%} of the config-to-config "
                            f"variance is not main effects: the main-effect ranks describe little; {advice}")
        elif share.mean() > NONADDITIVE_SHARE:
            findings.append(f"non-additive: {where}, {share.mean():.0%} of the config-to-config variance; "
                            f"the rank intervals are widened for it; {advice} to narrow them")
        if p is not None and p < PPC_P_VALUE:
            findings.append(f"posterior predictive check, dataset {d}: the config means scatter around the "
                            f"additive fit more than the model expects (p = {p:.2f}); {advice}")
    return out, findings


def no_variation(idata: az.InferenceData) -> list[str]:
    """A line per dataset where every run's count sits at one end (k = n, or k = 0): for
    `trained`, every run trained (or none did). Nothing varies there, so the fit stands but
    that dataset's ranks rest on the prior alone."""
    if "constant_data" not in idata.groups() or "run_successes" not in idata.constant_data:
        return []
    data = idata.constant_data
    k, n, d = (data[v].values for v in ("run_successes", "run_trials", "run_dataset"))
    label = spec_of(idata).get("outcome", {}).get("label", "the outcome")
    lines = []
    for i, name in enumerate(idata.posterior["dataset"].values):
        mine = d == i
        for end, at in (("k = n", k[mine] == n[mine]), ("k = 0", k[mine] == 0)):
            if mine.any() and at.all():
                lines.append(f"dataset {name}: all {int(mine.sum())} runs have {end} for {label} (for the trained outcome: "
                             f"{'every run trained' if end == 'k = n' else 'no run trained'}): nothing varies, so "
                             f"its ranks for {label} rest on the prior alone")
    return lines


def diagnostics(idata: az.InferenceData) -> dict:
    """Sampler health: divergences, R-hat, bulk and tail ESS.

    The worst values are taken over the model's free variables (their names are stored by
    the fit, ATTR_FREE; without them, over every posterior variable but the importances, or over
    all if that leaves none), and reported again per importance (factor x scope).

    Returns:
      {"ok": divergences == 0 and max_rhat <= 1.01, "problems": [why not ok],
       "warnings": [low ESS; `no_variation`], "model_check": [`non_additivity` findings],
       "non_additivity": {dataset: ...}, "verdict": "healthy" or the first named problem,
       "chains", "draws", "divergences", "max_rhat",
       "worst_rhat_variable", "min_ess_bulk", "min_ess_tail", "thresholds",
       "importance": [{"factor", "dataset", "rhat", "ess_bulk", "ess_tail"}, ...]}
    """
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    stored = post.attrs.get(ATTR_FREE)
    names = [v for v in json.loads(stored) if v in post] if stored else [
        v for v in post.data_vars if not str(v).startswith("importance")]
    free = post[names or list(post.data_vars)]

    problems, warnings = [], []
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        divergences = int(idata.sample_stats["diverging"].sum())
        if divergences:
            problems.append(f"{divergences} divergent transition(s) in {chains * draws} draws: "
                            "the posterior is not trustworthy")
    else:
        divergences = None
        problems.append("no sample_stats.diverging: divergences unknown")

    worst_var, max_rhat = _worst(az.rhat(free), max)
    _, min_bulk = _worst(az.ess(free, method="bulk"), min)
    _, min_tail = _worst(az.ess(free, method="tail"), min)
    if chains < 2 or max_rhat is None:
        problems.append("R-hat needs >= 2 chains: convergence cannot be checked")
    elif max_rhat > MAX_RHAT:
        problems.append(f"max R-hat {max_rhat:.3f} > {MAX_RHAT} (worst: {worst_var}): chains disagree")
    min_ess = MIN_ESS_PER_CHAIN * chains
    for kind, value in (("bulk", min_bulk), ("tail", min_tail)):
        if value is not None and value < min_ess:
            warnings.append(f"min {kind} ESS {value:.0f} < {min_ess}: intervals are noisy")

    per_importance = []
    for scope, imp in importance_by_scope(idata).items():
        ds = imp.to_dataset(name="i")
        rh, eb, et = (az.rhat(ds)["i"], az.ess(ds, method="bulk")["i"], az.ess(ds, method="tail")["i"])
        for f in imp["factor"].values:
            per_importance.append({"factor": str(f), "dataset": scope,
                                   "rhat": _num(rh.sel(factor=f)), "ess_bulk": _num(eb.sel(factor=f)),
                                   "ess_tail": _num(et.sel(factor=f))})
    warnings += no_variation(idata)
    nonadditive, model_check = non_additivity(idata)
    verdict = (problems[0] if problems else model_check[0] if model_check else "healthy")
    return {
        "ok": not problems, "problems": problems, "warnings": warnings, "model_check": model_check,
        "non_additivity": nonadditive, "verdict": verdict,
        "chains": int(chains), "draws": int(draws), "divergences": divergences,
        "max_rhat": max_rhat, "worst_rhat_variable": worst_var,
        "min_ess_bulk": min_bulk, "min_ess_tail": min_tail,
        "thresholds": {"max_rhat": MAX_RHAT, "min_ess": min_ess},
        "importance": per_importance,
    }


def write_summaries(idata: az.InferenceData, spec: dict, out_dir, table: pd.DataFrame | None = None,
                    missing: list[str] | None = None) -> dict[str, Path]:
    """Write the files of `whatmatters.outputs.SUMMARIES` (classical.csv only when the run
    `table` is given) into `out_dir`, each atomically; log a loud warning if sampling was
    unhealthy and where the classical check disagrees. `missing`: run_ids of design runs
    the fit went without (analysis.allow_missing), counted and named in diagnostics.json.
    Returns {file name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(step="summarize", outcome=spec["outcome"]["name"],
                      fit=provenance_of(idata))
    diag = diagnostics(idata)
    if not diag["ok"]:
        log.warning("!!! SAMPLING UNHEALTHY for outcome %r: %s. Do not trust these rankings; "
                    "see diagnostics.json.", prov["outcome"], "; ".join(diag["problems"]))
    for w in diag["warnings"]:
        log.warning("sampling: %s", w)
    for w in diag["model_check"]:
        log.warning("model check for outcome %r: %s", prov["outcome"], w)
    missing = list(missing or [])
    diag["missing_runs"] = {"count": len(missing), "run_ids": missing}
    if missing:
        diag["warnings"].append(f"{len(missing)} design run(s) missing (training failed), fitted without them: "
                                + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        log.warning("%s", diag["warnings"][-1])

    paths = {key: out / name for key, name in SUMMARIES.items() if key != "classical" or table is not None}
    _write_csv(paths["importance"], importance_table(idata))
    _write_csv(paths["ranks"], rank_probabilities(idata))
    _write_csv(paths["estimands"], estimands_table(idata))
    _write_csv(paths["agreement"], rank_agreement(idata.posterior))
    _write_csv(paths["interactions"], interactions_table(idata))
    _write_csv(paths["hypotheses_table"], hypotheses_table(idata, spec["hypotheses"]))
    if table is not None:
        check = classical_check(idata, table, spec)
        for row in check.loc[~check["agrees"]].itertuples():
            log.warning("classical check disagrees on %s (%s): ANOVA eta^2 rank %d, Bayesian 90%% rank "
                        "interval [%d, %d]", row.factor, row.dataset, row.classical_rank,
                        row.bayes_rank_low, row.bayes_rank_high)
        for row in check.loc[check["contradicts"]].itertuples():
            log.warning("classical check CONTRADICTS the posterior on %s (%s): ANOVA ranks it above %s, an "
                        "order the posterior gives P < 0.05%s", row.factor, row.dataset, row.contradicted,
                        "" if row.additive else " (the additive model is rejected here, lack-of-fit "
                        f"p = {row.lack_of_fit_p:.2g}: both rankings are unreliable; run more configs)")
        for scope, p in check.loc[~check["additive"]].groupby("dataset")["lack_of_fit_p"].first().items():
            diag["model_check"].append(f"classical lack-of-fit test rejects the additive model on {scope} "
                                       f"(p = {p:.2g}): ANOVA and main-effect ranks are both less reliable there")
        _write_csv(paths["classical"], check)
    write_json(paths["hypotheses"], {
        "hypotheses": hypothesis_probabilities(idata, spec["hypotheses"]), "provenance": prov})
    write_json(paths["diagnostics"], {**diag, "provenance": prov})
    write_json(paths["provenance"], prov)
    return {path.name: path for path in paths.values()}


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _worst(stat: xr.Dataset, pick) -> tuple[str | None, float | None]:
    """(variable, value) of the worst finite value over every variable of `stat`."""
    best = (None, None)
    for name, arr in stat.data_vars.items():
        values = arr.values[np.isfinite(arr.values)]
        if values.size:
            v = float(pick(values))
            if best[1] is None or pick(v, best[1]) == v:
                best = (str(name), v)
    return best


def _num(arr) -> float | None:
    v = float(arr)
    return v if math.isfinite(v) else None


# Pairs of outcomes whose contrast answers a question of its own: (a, b, what a low rank under
# a but a high rank under b means).
CONTRASTS = [
    ("train_accuracy", "test_accuracy", "optimization vs generalization"),
    ("test_accuracy", "shifted_accuracy", "in-distribution vs shifted test"),
    ("trained", "test_accuracy_trained", "whether training works vs generalization when it does"),
]


def compare_outcomes(posteriors: dict[str, az.InferenceData], interval: float = INTERVAL) -> tuple[pd.DataFrame,
                                                                                                   pd.DataFrame]:
    """Pooled importance ranks of every outcome side by side, and the contrasts of CONTRASTS.

    Args:
      posteriors: outcome name -> its fitted InferenceData (same factors).
    Returns:
      (ranks, contrasts). ranks: one row per (outcome, factor): `expected_rank`, `rank_lo`,
      `rank_hi` (central `interval` rank interval), `p_rank_1`, `importance` (posterior mean,
      logit or log scale). contrasts: one row per (contrast, factor) for the pairs present:
      `rank_a`, `rank_b` (expected ranks), `shift` = rank_b - rank_a (> 0: the factor
      matters more for a than for b), `p_more_for_a` = P(rank under a < rank under b),
      pairing draws of the two fits as independent (they are separate posteriors of the
      same runs, so read it as a comparison of two marginal rankings).
    """
    rows, draws = [], {}
    for outcome, idata in posteriors.items():
        imp = importance_by_scope(idata)[POOLED]
        r = ranks(imp)
        draws[outcome] = r
        for f in imp["factor"].values:
            rd = r.sel(factor=f).values.ravel()
            lo, hi = np.quantile(rd, [(1 - interval) / 2, (1 + interval) / 2], method="inverted_cdf")
            rows.append({"outcome": outcome, "factor": str(f), "expected_rank": float(rd.mean()),
                         "rank_lo": int(lo), "rank_hi": int(hi), "p_rank_1": float((rd == 1).mean()),
                         "importance": float(imp.sel(factor=f).mean())})
    table = pd.DataFrame(rows)
    contrasts = []
    for a, b, meaning in CONTRASTS:
        if a not in draws or b not in draws:
            continue
        ra, rb = (draws[o].stack(sample=("chain", "draw")).transpose("factor", "sample") for o in (a, b))
        n = min(ra.sizes["sample"], rb.sizes["sample"])
        for f in ra["factor"].values:
            x, y = ra.sel(factor=f).values[:n], rb.sel(factor=f).values[:n]
            contrasts.append({"contrast": f"{a} vs {b}", "meaning": meaning, "factor": str(f),
                              "rank_a": float(x.mean()), "rank_b": float(y.mean()),
                              "shift": float(y.mean() - x.mean()), "p_more_for_a": float((x < y).mean())})
    return table, pd.DataFrame(contrasts, columns=["contrast", "meaning", "factor", "rank_a", "rank_b", "shift",
                                                   "p_more_for_a"])


def write_outcome_comparison(posteriors: dict[str, az.InferenceData], out_csv, contrasts_csv) -> None:
    """`compare_outcomes` written as two CSV files, atomically."""
    table, contrasts = compare_outcomes(posteriors)
    for frame, path in ((table, out_csv), (contrasts, contrasts_csv)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
