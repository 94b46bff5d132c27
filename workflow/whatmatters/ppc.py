"""The posterior predictive check's draws: run tables replicated from a fitted posterior,
and the one statistic the additive model is most likely to miss, the spread of config
means around the additive fit.

`plots.ppc_figure` sets the observed runs beside them and `summarize.diagnostics` reads
`config_spread`; a feature of the data the replicates do not reproduce is one the model
misses.
"""

from __future__ import annotations

import arviz as az
import numpy as np

from whatmatters import outcomes
from whatmatters.posterior import interaction_names, level_dim, level_effects, spec_of


def replicate(idata: az.InferenceData, n_draws: int = 100, seed: int = 0) -> np.ndarray:
    """Posterior predictive outcomes: (n_draws, R) replicated runs from the model's
    generative process (accuracies k_r / n_r with k_r ~ Binomial(n_r, logistic(mu_r + u_c + eps_r)),
    or values exp(mu_r + u_c + eps_r) of a continuous outcome), one row per posterior draw
    (drawn evenly over chains and draws), the runs of `constant_data`. The config residual
    u_c is drawn afresh per config and dataset (Normal(0, sigma_config_d), shared by the
    config's seeds): the replicates say what spread of config means the model expects."""
    rng = np.random.default_rng(seed)
    post = idata.posterior.stack(sample=("chain", "draw"))
    pick = np.linspace(0, post.sizes["sample"] - 1, min(n_draws, post.sizes["sample"])).astype(int)
    post = post.isel(sample=pick)
    data = idata.constant_data
    d = data["run_dataset"].values
    levels = data["run_level"].transpose("run", "factor").values
    factors = [str(f) for f in data["factor"].values]
    mu = post["alpha"].transpose("sample", "dataset").values[:, d]                      # (S, R)
    for i, f in enumerate(factors):
        e = level_effects(idata.posterior, f).stack(sample=("chain", "draw")).isel(sample=pick)
        mu = mu + e.transpose("sample", "dataset", level_dim(f)).values[:, d, levels[:, i]]
    for (f, g), name in interaction_names(idata.posterior).items():
        delta = post[name].transpose("sample", level_dim(f), level_dim(g)).values
        mu = mu + delta[:, levels[:, factors.index(f)], levels[:, factors.index(g)]]
    if "sigma_config" in post:
        _, cell = np.unique(np.column_stack([d, levels]), axis=0, return_inverse=True)
        cell = cell.ravel()
        cell_data = np.zeros(cell.max() + 1, dtype=np.int64)
        cell_data[cell] = d
        config_sd = post["sigma_config"].transpose("sample", "dataset").values[:, cell_data]   # (S, C)
        mu = mu + (rng.normal(size=config_sd.shape) * config_sd)[:, cell]
    eta = mu
    if "sigma_seed" in post:                       # a 0/1 outcome (`trained`) has no seed noise
        eta = mu + rng.normal(size=mu.shape) * post["sigma_seed"].transpose("sample", "dataset").values[:, d]
    outcome = spec_of(idata)["outcome"]
    trials = data["run_trials"].values if "run_trials" in data else None
    return outcomes.replicate(outcome, eta, trials, rng)


def additive_misfit(y: np.ndarray, levels: np.ndarray) -> float:
    """The rms deviation of the config means of `y` (R,) from their least-squares additive
    (main-effects) fit; `levels` (R, F) level codes. Configs are weighted equally."""
    cells, cell = np.unique(levels, axis=0, return_inverse=True)
    cell = cell.ravel()
    means = np.bincount(cell, weights=y) / np.bincount(cell)
    columns = [np.ones((len(cells), 1))] + [
        (cells[:, [i]] == np.unique(cells[:, i])[None, 1:]).astype(float) for i in range(cells.shape[1])]
    x = np.hstack(columns)
    fitted = x @ np.linalg.lstsq(x, means, rcond=None)[0]
    dof = max(len(cells) - np.linalg.matrix_rank(x), 1)
    return float(np.sqrt(((means - fitted) ** 2).sum() / dof))


def config_spread(idata: az.InferenceData, n_draws: int = 100, seed: int = 0) -> dict[str, dict]:
    """The posterior predictive check of non-additivity, per dataset: the observed
    `additive_misfit` of the config means (on the model's scale) against the same statistic
    of `n_draws` replicated tables.

    Returns {dataset: {"observed", "replicated" (list), "p_value": P(T_rep >= T_obs)}};
    a p-value near 0 means the config means scatter around the additive fit more than the
    model expects (interactions it does not capture).
    """
    data = idata.constant_data
    outcome = outcomes.resolve(spec_of(idata)["outcome"])
    d = data["run_dataset"].values
    levels = data["run_level"].transpose("run", "factor").values
    trials = data["run_trials"].values if "run_trials" in data else None

    def scale(values):                                    # the model's scale of a run's outcome
        if outcome["kind"] == "binomial":
            return outcomes.empirical_logit(np.rint(values * trials), trials)[0]
        return np.log(np.maximum(values, outcomes.LOG_FLOOR))

    get = lambda name: data[name].values if name in data else None       # noqa: E731
    observed = scale(outcomes.observed(outcome, get("run_successes"), trials, get("run_value")))
    replicated = np.array([scale(row) for row in replicate(idata, n_draws=n_draws, seed=seed)])
    out = {}
    for i, name in enumerate(idata.posterior["dataset"].values):
        mine = d == i
        obs = additive_misfit(observed[mine], levels[mine])
        rep = [additive_misfit(row[mine], levels[mine]) for row in replicated]
        out[str(name)] = {"observed": obs, "replicated": rep, "p_value": float(np.mean(np.array(rep) >= obs))}
    return out
