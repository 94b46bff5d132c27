r"""A classical cross-check of the Bayesian ranking: fixed-effects ANOVA eta-squared.

For the runs r of one scope (one dataset, or all of them: "pooled"), with k_r successes
out of n_r trials, the response is the empirical logit

    y_r = log((k_r + 1/2) / (n_r - k_r + 1/2))

(or the log of a continuous outcome's value: `whatmatters.outcomes.response`), and the model is ordinary least squares with a main effect of every factor,

    y_r = mu + sum_f beta_f[l_f(r)] + e_r               (per dataset)
    y_r = mu + delta_{d(r)} + sum_f beta_f[l_f(r)] + e_r  (pooled)

Importance of factor f is its share of the variance of y (Type II sums of squares: SS_f
is what f adds once every other main effect is in the model):

    eta^2_f         = SS_f / SS_total                 SS_total = sum_r (y_r - mean(y))^2
    partial eta^2_f = SS_f / (SS_f + SS_resid)

In an unbalanced design Type II SS do not add up to SS_total, but sum_f eta^2_f <= 1 for
main effects. Pooled eta^2 shares SS_total with the dataset effect delta, which is not
reported: it is what is measured, not a choice being compared.

No random effects and no shrinkage: a factor with few runs per level gets an eta^2 as
noisy as its cell means. That is the point of a cross-check; `compare` sets it beside
the posterior rank distribution of `whatmatters.summarize.ranks`.

Both rankings rest on main effects. `lack_of_fit` tests them per scope with the classical
lack-of-fit F test: the config means' deviations from the additive fit against the
seed-to-seed (pure error) variance within configs. Where it rejects, the ANOVA's eta^2
counts interaction as noise and the Bayesian model leans on its config residual: a
disagreement there says the design cannot settle the order, not which method is wrong.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.stats
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from whatmatters import outcomes, runtable
from whatmatters.errors import WhatmattersError
from whatmatters.posterior import POOLED

_DATASET = "dataset_"   # alias of the dataset column inside formulas
LACK_OF_FIT_ALPHA = 0.01   # lack-of-fit p-value below which the additive model is rejected
CONTRADICTION_P = 0.05     # the posterior gives the ANOVA's order of a pair less than this


def empirical_logit(successes, trials) -> np.ndarray:
    """log((k + 0.5) / (n - k + 0.5)) elementwise; (R,) counts -> (R,) floats: the same
    response the collapsed model fits."""
    return outcomes.empirical_logit(successes, trials)[0]


def eta_squared(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """ANOVA eta^2 of every factor, per dataset and pooled (see the module docstring).

    Args:
      table: one row per run (R rows); needs `dataset`, one column per factor in
        `spec["factors"]` holding level names, and the outcome's `successes` and `trials`
        count columns. A level of the spec need not appear in every dataset; a factor
        with a single level in a scope explains nothing there (eta^2 = 0).
      spec: the analysis spec (`factors` with `levels`, `datasets`, `outcome`).

    Returns:
      long DataFrame, one row per (scope, factor), pooled rows first then datasets in spec
      order, factors in spec order; columns `factor`, `dataset` ("pooled" or a name),
      `eta_sq`, `partial_eta_sq`, `rank` (1 = largest eta_sq in the scope; ties go to
      the factor listed first).

    Raises:
      WhatmattersError: a column is missing, a level or dataset is not in the spec, counts
        are missing or impossible, or a scope has no more runs than model parameters or
        its factors are confounded (the message names the scope).
    """
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    runs = _checked_table(table, spec)
    # Formulas see aliases f0, f1, ... holding integer-coded levels: any factor name (`class`,
    # `lambda`, `a-b`) or level name is safe, and patsy builds the design ~25% faster than from strings.
    alias = {f: f"f{i}" for i, f in enumerate(factors)}
    frame = pd.DataFrame({alias[f]: _coded(runs[f]) for f in factors})
    frame[_DATASET] = _coded(runs["dataset"])
    frame["y"] = outcomes.response(runs, spec["outcome"])[0]

    dataset = runs["dataset"].astype(str).to_numpy()
    scopes = {POOLED: frame, **{d: frame[dataset == d] for d in datasets}}
    parts = []
    for scope, data in scopes.items():
        terms = [_DATASET] if scope == POOLED else []
        ss = _type2_sums_of_squares(data, terms + [alias[f] for f in factors], scope)
        ss_total = float(((data["y"] - data["y"].mean()) ** 2).sum())
        ss_f = np.array([ss[alias[f]] for f in factors])
        part = pd.DataFrame({
            "factor": factors, "dataset": scope,
            # SS_total = 0 only if every run has the same y: then nothing matters.
            "eta_sq": ss_f / ss_total if ss_total > 0 else 0.0,
            "partial_eta_sq": _ratio(ss_f, ss_f + ss["Residual"]),
        })
        part["rank"] = part["eta_sq"].rank(ascending=False, method="first").astype(int)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def lack_of_fit(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The lack-of-fit F test of the main-effects model, per dataset and pooled.

    F = (SS_lof / (C - p)) / (SS_pe / (R - C)), SS_lof = sum_c m_c (ybar_c - fitted_c)^2 the
    config means' deviation from the least-squares additive fit (p its parameters),
    SS_pe = sum_r (y_r - ybar_c(r))^2 the seed-to-seed variation within configs. Pooled:
    the sums and degrees of freedom of the datasets added (each dataset keeps its own main
    effects, as the Bayesian model's dataset deviations do).

    Returns one row per scope: `dataset`, `f_stat`, `df_lof`, `df_pe`, `p_value` (NaN where
    no config has two seeds or the design leaves no lack-of-fit degrees of freedom) and
    `additive` (False where p_value < LACK_OF_FIT_ALPHA).
    """
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    runs = _checked_table(table, spec)
    y = outcomes.response(runs, spec["outcome"])[0]
    dataset = runs["dataset"].astype(str).to_numpy()
    sums = {}
    for scope in datasets:
        mine = dataset == scope
        codes = np.column_stack([pd.factorize(runs.loc[mine, f].astype(str))[0] for f in factors])
        cells, cell, m = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        cell = cell.ravel()
        ybar = np.bincount(cell, weights=y[mine]) / m
        x = np.hstack([np.ones((len(cells), 1))] + [
            (cells[:, [i]] == np.unique(cells[:, i])[None, 1:]).astype(float) for i in range(cells.shape[1])])
        w = np.sqrt(m)[:, None]
        coef = np.linalg.lstsq(x * w, ybar * w[:, 0], rcond=None)[0]
        sums[scope] = (float((m * (ybar - x @ coef) ** 2).sum()), float(((y[mine] - ybar[cell]) ** 2).sum()),
                       len(cells) - np.linalg.matrix_rank(x), int(mine.sum()) - len(cells))
    sums = {POOLED: tuple(map(sum, zip(*sums.values()))), **sums}
    rows = []
    for scope, (ss_lof, ss_pe, df_lof, df_pe) in sums.items():
        if df_lof > 0 and df_pe > 0 and ss_pe > 0:
            f = (ss_lof / df_lof) / (ss_pe / df_pe)
            p = float(scipy.stats.f.sf(f, df_lof, df_pe))
        else:
            f, p = np.nan, np.nan
        rows.append({"dataset": scope, "f_stat": f, "df_lof": int(df_lof), "df_pe": int(df_pe), "p_value": p,
                     "additive": not (p < LACK_OF_FIT_ALPHA)})
    return pd.DataFrame(rows)


def compare(bayes_ranks: dict, classical: pd.DataFrame, interval: float = 0.9,
            additivity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Set the classical ranks beside the posterior rank distributions.

    Args:
      bayes_ranks: {scope: int DataArray (chain, draw, factor)} of ranks, 1 = most
        important, e.g. `summarize.ranks(imp)` for each `summarize.importance_by_scope`.
      classical: the table of `eta_squared`; must cover every scope and factor of
        `bayes_ranks`.
      interval: probability mass of the central rank interval, in (0, 1).

    Returns:
      long DataFrame, one row per (scope, factor), scopes in `bayes_ranks` order and
      factors in `classical` order; columns `factor`, `dataset`, `bayes_mean_rank`,
      `bayes_rank_low`, `bayes_rank_high` (the (1 - interval)/2 and (1 + interval)/2
      quantiles of the rank draws, both ranks that occur), `classical_rank`, `eta_sq`,
      `agrees` (low <= classical_rank <= high) and `kendall_tau` (per scope, between
      the posterior mean ranks and the classical ranks; repeated on each row of a scope,
      NaN when either is constant), `contradicts` (the ANOVA puts this factor above some
      factor g where the posterior gives that order a probability below CONTRADICTION_P:
      the two cannot both be right), `contradicted` (those g) and, with `additivity` (the
      table of `lack_of_fit`), `additive` and `lack_of_fit_p` of the scope: where the
      additive model is rejected, both rankings describe main effects of a non-additive
      table and a disagreement is a sign the design cannot settle the order.
    """
    if not 0 < interval < 1:
        raise WhatmattersError(f"compare: interval must be in (0, 1), got {interval}")
    q_low, q_high = (1 - interval) / 2, (1 + interval) / 2
    parts = []
    for scope, ranks in bayes_ranks.items():
        rows = classical[classical["dataset"] == scope]
        bayes_factors = [str(f) for f in ranks["factor"].values]
        if rows.empty or set(rows["factor"]) != set(bayes_factors):
            raise WhatmattersError(
                f"compare: scope {scope!r} has factors {sorted(bayes_factors)} in the posterior "
                f"but {sorted(rows['factor'])} in the classical table")
        part = rows[["factor", "dataset"]].copy()
        draws = [ranks.sel(factor=f).values.ravel() for f in part["factor"]]
        part["bayes_mean_rank"] = [float(r.mean()) for r in draws]
        # inverted_cdf keeps the bounds on ranks that were drawn (no 1.5-th place).
        part["bayes_rank_low"] = [int(np.quantile(r, q_low, method="inverted_cdf")) for r in draws]
        part["bayes_rank_high"] = [int(np.quantile(r, q_high, method="inverted_cdf")) for r in draws]
        part["classical_rank"] = rows["rank"].astype(int).to_numpy()
        part["eta_sq"] = rows["eta_sq"].to_numpy()
        part["agrees"] = part["classical_rank"].between(part["bayes_rank_low"], part["bayes_rank_high"])
        tau = scipy.stats.kendalltau(part["bayes_mean_rank"], part["classical_rank"]).statistic
        part["kendall_tau"] = float(tau)
        classical_rank = dict(zip(part["factor"], part["classical_rank"]))
        against = [[g for g, rg in zip(part["factor"], draws)
                    if classical_rank[f] < classical_rank[g] and float((rf < rg).mean()) < CONTRADICTION_P]
                   for f, rf in zip(part["factor"], draws)]
        part["contradicts"] = [bool(a) for a in against]
        part["contradicted"] = [" ".join(a) for a in against]
        if additivity is not None:
            row = additivity.set_index("dataset").loc[scope]
            part["additive"], part["lack_of_fit_p"] = bool(row["additive"]), float(row["p_value"])
        parts.append(part)
    columns = ["factor", "dataset", "bayes_mean_rank", "bayes_rank_low", "bayes_rank_high",
               "classical_rank", "eta_sq", "agrees", "kendall_tau", "contradicts", "contradicted",
               *(["additive", "lack_of_fit_p"] if additivity is not None else [])]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _type2_sums_of_squares(data: pd.DataFrame, terms: list[str], scope: str) -> dict[str, float]:
    """{term: Type II SS, ..., "Residual": SS_resid} of y ~ main effects of `terms`.

    A term with one level in `data` is constant: it has SS 0 and stays out of the fit.
    """
    # Levels absent from this scope would be all-zero design columns: keep the observed ones.
    data = data.assign(**{t: data[t].cat.remove_unused_categories() for t in terms})
    varying = [t for t in terms if len(data[t].cat.categories) > 1]
    n_params = 1 + sum(len(data[t].cat.categories) - 1 for t in varying)
    if len(data) <= n_params:
        raise WhatmattersError(
            f"eta_squared: scope {scope!r} has {len(data)} runs but its main-effects model has "
            f"{n_params} parameters; it needs more runs than parameters")
    formula = "y ~ " + (" + ".join(f"C({t})" for t in varying) or "1")
    with warnings.catch_warnings():                   # rank deficiency gets the clearer error below
        warnings.simplefilter("ignore", SingularMatrixWarning)
        fit = smf.ols(formula, data).fit()
    if fit.model.rank < n_params:                      # rank from the fit's own pseudo-inverse
        raise WhatmattersError(
            f"eta_squared: in scope {scope!r} some factors are confounded (their levels "
            f"determine each other across the {len(data)} runs), so their effects cannot be separated")
    ss = {t: 0.0 for t in terms}
    ss["Residual"] = float(fit.ssr)
    if varying:
        table = anova_lm(fit, typ=2)
        ss.update({t: float(table.loc[f"C({t})", "sum_sq"]) for t in varying})
    return ss


def _coded(column: pd.Series) -> pd.Categorical:
    """Level names as a categorical of integer codes (only SS per factor is read back)."""
    return pd.Categorical(pd.factorize(column.astype(str).to_numpy(), sort=True)[0])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den = 0 (no residual and no effect: nothing to explain)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _checked_table(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """`table` checked as the fit checks it (`whatmatters.runtable.checked`); a table without
    run ids names its runs by row."""
    if "run_id" not in table.columns:
        table = table.assign(run_id=[f"row {i}" for i in range(len(table))])
    try:
        return runtable.checked(table, spec)
    except WhatmattersError as e:
        raise WhatmattersError(f"eta_squared: {e}") from None
