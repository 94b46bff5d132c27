"""The posterior predictive check's draws: run tables replicated from a fitted posterior.

`plots.ppc_figure` sets the observed runs beside them; a feature of the data the
replicates do not reproduce is one the model misses.
"""

from __future__ import annotations

import arviz as az
import numpy as np

from whatmatters import outcomes
from whatmatters.posterior import interaction_names, level_dim, level_effects, spec_of


def replicate(idata: az.InferenceData, n_draws: int = 100, seed: int = 0) -> np.ndarray:
    """Posterior predictive outcomes: (n_draws, R) replicated runs from the model's
    generative process (accuracies k_r / n_r with k_r ~ Binomial(n_r, logistic(mu_r + eps_r)),
    or values exp(mu_r + eps_r) of a continuous outcome), one row per
    posterior draw (drawn evenly over chains and draws), the runs of `constant_data`."""
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
    eta = mu + rng.normal(size=mu.shape) * post["sigma_seed"].transpose("sample", "dataset").values[:, d]
    outcome = spec_of(idata)["outcome"]
    trials = data["run_trials"].values if "run_trials" in data else None
    return outcomes.replicate(outcome, eta, trials, rng)
