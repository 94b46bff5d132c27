r"""The hierarchical model of a run table: which factors move the outcome, and by how much.

For run r on dataset d = d(r), with level l_f(r) of every factor f, n_r trials and
k_r successes (e.g. test examples and correctly classified ones):

    k_r           ~ Binomial(n_r, logistic(eta_r))                       # Likelihood
    eta_r         = mu_r + u_c(r) + eps_r
    mu_r          = alpha_d + sum_f (beta_f[l_f(r)] + gamma_f[d, l_f(r)])

    alpha_d       ~ Normal(logit(pooled accuracy of d), 1.5)            # Priors
    sigma_f       ~ HalfNormal(1)
    tau_f         ~ HalfNormal(0.5)
    sigma_seed_d  ~ HalfNormal(0.5)
    sigma_config_d ~ HalfNormal(1)
    beta_f        ~ ZeroSumNormal(sigma_f)              over levels
    gamma_f       ~ ZeroSumNormal(sigma_f * tau_f)      over datasets and levels
    u_c           ~ Normal(0, sigma_config_d)           per cell c (a config on a dataset)
    eps_r         ~ Normal(0, sigma_seed_d)

For a 0/1 outcome (`trained`: did the run train, n_r = 1; the outcome's `seed_noise` is
False) eps_r is left out: one Bernoulli per run cannot tell a run's own noise from its
cell's probability (it only moves E[logistic(eta + eps)], which mu_c + u_c already is), so
the runs of a cell are exchangeable and their k_c of m_c seeds is exactly

    k_c           ~ Binomial(m_c, logistic(mu_c + u_c))                  # Likelihood, per cell

and logistic(mu_c + u_c) is the config's probability of training, the estimand's scale.

beta_f is the pooled effect of each level of f, gamma_f its dataset-specific deviation
(left out when the study has one dataset), u_c the config residual (what the additive
prediction misses about a config: interactions, failures that need two factors; every
seed of the config shares it; `whatmatters.collapsed` explains it), eps_r the
seed-to-seed noise that makes the binomial overdispersed. Diverged runs are data like any other: they enter through eps_r.

Sampler coordinates. The factor effects are non-centred (beta_f = sigma_f * z_f with
z_f standard, the same for gamma_f): a handful of levels per factor say little about
sigma_f, and the centred form would sample a funnel. The run effects are centred
(eta_r ~ Normal(mu_r, sigma_seed_d) is the free variable): each run's hundreds of test
examples pin eta_r down far more tightly than sigma_seed_d does, the regime in which the
centred form samples well and the non-centred one needs deep trees. On the default study
(192 runs, 7 factors x 4 levels, 2 datasets) this samples with no divergences and
R-hat <= 1.01 in about two minutes on 2 cores (docs/benchmarks.md).

gamma_f sums to zero over datasets as well as over levels. Then beta_f is exactly the
average over the studied datasets of the per-dataset effects beta_f + gamma_f[d], so
"pooled effect" has one meaning, and there is no ridge along which beta_f and the
dataset mean of gamma_f trade off against each other (with two datasets that ridge is
identified by the prior alone and slows the sampler). The price: for two datasets the
deviations are mirror images, gamma_f[d1] = -gamma_f[d2], which is what "deviation
from the average of two" means anyway.

Importance of factor f on dataset d, per posterior draw, is the finite-population
standard deviation of its level effects (Gelman 2005):

    s_{f,d} = sd_l(beta_f[l] + gamma_f[d, l])         (ddof = 1)
    s_f     = mean_d s_{f,d}                          (pooled importance)

Ranking the factors by s within each draw gives P(rank(f) = k), see `summarize`. The
priors are `whatmatters.priors`; `fit` is this model's entry point for
`whatmatters.fitting` (`analysis.method: binomial`).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import scipy.linalg
import xarray as xr

from whatmatters import outcomes, population, priors
from whatmatters.errors import WhatmattersError
from whatmatters.outcomes import pooled_logit
from whatmatters.posterior import level_dim
from whatmatters.priors import zero_sum_basis
from whatmatters.runtable import checked, codes
from whatmatters.sampling import sample


def build_model(table: pd.DataFrame, spec: dict) -> pm.Model:
    """The model of the module docstring for one outcome of a run table.

    Args:
      table: one row per run (R rows); needs `run_id`, `dataset`, one column per factor in
        `spec["factors"]` holding level names, and the outcome's `successes` and `trials`
        integer columns. Diverged runs stay in: they are data.
      spec: the analysis spec (`factors` with `levels`, `datasets`, `outcome`).

    Returns:
      An unsampled `pm.Model` with coords `factor` (F), `dataset` (D), `run` (R),
      `level_<factor>` (L_f) for each factor, `contrast` (sum_f (L_f - 1)) and
      `dataset_contrast` (D - 1). Free variables: `alpha` (dataset), `sigma` (factor),
      `tau` (factor), `sigma_seed` (dataset), `beta_tilde` (contrast), `gamma_tilde`
      (dataset_contrast, contrast), `sigma_config` (dataset), `config_tilde` (cell),
      `eta` (run); `tau` and `gamma_tilde` only if
      D > 1. Deterministics, the ones to read: `beta_<f>` (level_<f>) and `gamma_<f>`
      (dataset, level_<f>). Observed: `<outcome successes column>` (run). Without seed
      noise (the outcome's `seed_noise` False) there is no `sigma_seed` nor `eta`, and the
      observed counts are per cell (cell): k_c of m_c.

    Raises:
      WhatmattersError: a needed column is missing, a level or dataset is not in the spec,
        a spec dataset has no runs, run ids repeat, or counts are missing or impossible.
    """
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    seed_noise = spec["outcome"].get("seed_noise", True)
    runs = checked(table, spec)
    successes = runs[spec["outcome"]["successes"]].to_numpy(dtype="int64")
    trials = runs[spec["outcome"]["trials"]].to_numpy(dtype="int64")
    dataset_of_run = pd.Categorical(runs["dataset"], categories=datasets).codes
    multi = len(datasets) > 1

    # Level effects of all factors stacked in one axis of sum_f L_f levels ("stacked level").
    n_levels = [len(spec["factors"][f]["levels"]) for f in factors]
    first = np.concatenate([[0], np.cumsum(n_levels)[:-1]])                  # each factor's first stacked level
    basis = scipy.linalg.block_diag(*[zero_sum_basis(n) for n in n_levels])   # (sum L, sum (L-1))
    factor_of_contrast = np.repeat(np.arange(len(factors)), [n - 1 for n in n_levels])
    level_codes, _ = codes(runs, spec)                                          # (R, F)
    cells = dataset_of_run[:, None] * sum(n_levels) + first + level_codes     # (R, F) into (D, sum L)
    # config cells: runs on one dataset with the same levels (they differ in the seed only)
    cell_keys, cell_of_run = np.unique(np.column_stack([dataset_of_run, level_codes]), axis=0,
                                       return_inverse=True)

    coords = {
        "factor": factors, "dataset": datasets, "run": runs["run_id"].astype(str).tolist(),
        **{level_dim(f): list(spec["factors"][f]["levels"]) for f in factors},
        "contrast": [f"{f}[{k}]" for f, n in zip(factors, n_levels) for k in range(1, n)],
        "dataset_contrast": [f"dataset[{k}]" for k in range(1, len(datasets))],
        "cell": np.arange(len(cell_keys)),
    }
    with pm.Model(coords=coords) as model:
        # Data
        dataset_idx = pm.Data("dataset_idx", dataset_of_run, dims="run")
        cell = pm.Data("cell", cells, dims=("run", "factor"))
        n = pm.Data("trials", trials, dims="run")

        # Priors
        alpha = pm.Normal("alpha", mu=pooled_logit(successes, trials, dataset_of_run, len(datasets)),
                          sigma=priors.ALPHA_SD, dims="dataset")
        scales = priors.scales(multi, seed_noise=seed_noise)
        sigma, sigma_seed = scales.sigma, scales.sigma_seed

        # beta_f ~ ZeroSumNormal(sigma_f): L_f - 1 iid Normal(0, sigma_f) contrasts on an
        # orthonormal basis of the zero-sum levels. Stacking all factors keeps the graph
        # small (a tenth of the per-factor form's nodes, the gradient ~3x faster).
        beta_tilde = pm.Normal("beta_tilde", mu=0.0, sigma=1.0, dims="contrast")   # non-centred
        beta = _dot(basis, sigma[factor_of_contrast] * beta_tilde)                # (sum L,)
        effect = beta[None, :]                                                   # (1, sum L)
        if multi:
            # gamma_f ~ ZeroSumNormal(sigma_f tau_f) over datasets and levels, the same way
            tau = scales.tau
            gamma_tilde = pm.Normal("gamma_tilde", mu=0.0, sigma=1.0, dims=("dataset_contrast", "contrast"))
            gamma = _dot(_dot(zero_sum_basis(len(datasets)), (sigma * tau)[factor_of_contrast] * gamma_tilde),
                         basis.T)                                                # (D, sum L)
            effect = effect + gamma                                              # (D, sum L)
        for f, start, size in zip(factors, first, n_levels):
            pm.Deterministic(f"beta_{f}", beta[start:start + size], dims=level_dim(f))
            if multi:
                pm.Deterministic(f"gamma_{f}", gamma[:, start:start + size], dims=("dataset", level_dim(f)))

        # u_c ~ Normal(0, sigma_config_d), non-centred (a few seeds say little about it)
        config_tilde = pm.Normal("config_tilde", mu=0.0, sigma=1.0, dims="cell")
        config_residual = pm.Deterministic(
            "config_residual", scales.sigma_config[cell_keys[:, 0]] * config_tilde, dims="cell")

        if not seed_noise:
            # Likelihood: k_c ~ Binomial(m_c, logistic(mu_c + u_c)), the runs of a cell pooled
            first_run = np.unique(cell_of_run.ravel(), return_index=True)[1]          # one run per cell
            mu_cell = (alpha[cell_keys[:, 0]] + effect.flatten()[cells[first_run]].sum(axis=1)
                       + config_residual)                                            # (cell,)
            pm.Binomial(spec["outcome"]["successes"],
                        n=np.bincount(cell_of_run.ravel(), weights=trials).astype("int64"),
                        logit_p=mu_cell, observed=np.bincount(cell_of_run.ravel(), weights=successes).astype("int64"),
                        dims="cell")
            return model

        # mu_r = alpha_d + sum_f (beta_f + gamma_f)[d, l_f(r)] + u_c(r)
        mu = (alpha[dataset_idx] + effect.flatten()[cell].sum(axis=1)
              + config_residual[cell_of_run.ravel()])                              # (R,)

        # Likelihood: eta_r = mu_r + eps_r, eps_r ~ Normal(0, sigma_seed_d), centred: with
        # hundreds of test examples per run the data pin each eta_r down far more tightly
        # than sigma_seed_d does, which is where the centred form samples well.
        eta = pm.Normal("eta", mu=mu, sigma=sigma_seed[dataset_idx], dims="run")
        pm.Binomial(spec["outcome"]["successes"], n=n, logit_p=eta, observed=successes, dims="run")
    return model


def fit(runs: pd.DataFrame, spec: dict) -> tuple[az.InferenceData, dict]:
    """Sample this model's posterior for a checked run table (`whatmatters.fitting.fit`).

    Returns (idata, details): the sampled variables (see `build_model`; nutpie when it is
    installed and `nuts` is auto) and what the fit's provenance adds (nothing).

    Raises:
      WhatmattersError: the outcome is not counts, or interactions are asked for.
    """
    outcome = spec["outcome"]
    if outcomes.resolve(outcome)["kind"] != "binomial":
        raise WhatmattersError(f"analysis.method: binomial models counts only; outcome {outcome['name']!r} "
                               "is a continuous measurement: use method: collapsed")
    if spec["model"]["interactions"] is True:      # "auto": main effects, the only model here
        raise WhatmattersError("analysis.interactions: true needs analysis.method: collapsed; "
                               "the binomial model has main effects only")
    model = build_model(runs, spec)
    # 0/1 outcomes (no seed noise) sample from PyMC's own start: their posterior mode sits
    # where the scales collapse (a few Bernoulli draws per cell say little), and a mass
    # matrix from the Laplace approximation there sent NUTS into hundreds of divergences and
    # R-hat ~2 on 7-factor studies (benchmarks/trained.py), against none and 1.02 without it.
    seed_noise = spec["outcome"].get("seed_noise", True)
    idata = sample(model, spec["sampler"], nutpie_ok=True, laplace_ok=seed_noise)
    # the config residuals' means over the study's population, per level (`whatmatters.population`)
    datasets, factors = list(spec["datasets"]), list(spec["factors"])
    level_codes, dataset_codes = codes(runs, spec)
    cell_keys = np.unique(np.column_stack([dataset_codes, level_codes]), axis=0)
    residual = idata.posterior["config_residual"].transpose("chain", "draw", "cell").values
    config_sd = idata.posterior["sigma_config"].transpose("chain", "draw", "dataset").values
    n_levels = [len(spec["factors"][f]["levels"]) for f in factors]
    rng = np.random.default_rng(int(spec["sampler"]["seed"]))
    means = population.residual_level_means(residual, cell_keys[:, 1:], cell_keys[:, 0], config_sd, n_levels, rng)
    for f, value in zip(factors, means):
        idata.posterior[f"residual_level_{f}"] = xr.DataArray(
            value, dims=("chain", "draw", "dataset", level_dim(f)),
            coords={"dataset": datasets, level_dim(f): list(spec["factors"][f]["levels"])})
    return idata, {"cells": int(len(cell_keys))}


def _dot(a, b):
    """a @ b for a constant (m, k) matrix `a` and a (k,) or (k, n) tensor `b`, as a
    broadcast product and sum: for matrices this small one fused elementwise loop beats
    a BLAS call and its gradient's reshapes."""
    if b.ndim == 1:
        return (a * b[None, :]).sum(axis=1)
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)
