r"""The hierarchical model of a run table: which factors move the outcome, and by how much.

For run r on dataset d = d(r), with level l_f(r) of every factor f, n_r trials and
k_r successes (e.g. test examples and correctly classified ones):

    k_r           ~ Binomial(n_r, logistic(eta_r))                       # Likelihood
    eta_r         = mu_r + eps_r
    mu_r          = alpha_d + sum_f (beta_f[l_f(r)] + gamma_f[d, l_f(r)])

    alpha_d       ~ Normal(logit(pooled accuracy of d), 1.5)            # Priors
    sigma_f       ~ HalfNormal(1)
    tau_f         ~ HalfNormal(0.5)
    sigma_seed_d  ~ HalfNormal(0.5)
    beta_f        ~ ZeroSumNormal(sigma_f)              over levels
    gamma_f       ~ ZeroSumNormal(sigma_f * tau_f)      over datasets and levels
    eps_r         ~ Normal(0, sigma_seed_d)

beta_f is the pooled effect of each level of f, gamma_f its dataset-specific deviation
(left out when the study has one dataset), eps_r the seed-to-seed noise that makes the
binomial overdispersed. Diverged runs are data like any other: they enter through eps_r.

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

Ranking the factors by s within each draw gives P(rank(f) = k), see `summarize`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg
import xarray as xr

from whatmatters import outcomes
from whatmatters.collapsed import zero_sum_basis
from whatmatters.outcomes import pooled_logit
from whatmatters.errors import WhatmattersError
from whatmatters.io import atomic_path, provenance
from whatmatters.posterior import (ATTR_FREE, ATTR_PROVENANCE, ATTR_SPEC, interaction_names, level_dim,
                                   level_effects, spec_of)

log = logging.getLogger(__name__)

LAPLACE_MAX_DIM = 200   # free dimensions up to which NUTS starts from the Laplace approximation

# Priors, on the logit scale of the outcome (logit(0.9) - logit(0.8) = 0.81).
ALPHA_SD = 1.5        # dataset intercept around its pooled observed logit: 1.5 spans ~50%..97% from 85%
SIGMA_SCALE = 1.0     # sd of a factor's level effects; 95% below 2 logits, yet a level that halves
                      # accuracy stays reachable, and ~300 runs x ~1000 trials outweigh the prior
TAU_SCALE = 0.5       # dataset deviation relative to the pooled effect: datasets mostly agree,
                      # but a factor that matters on one dataset only (tau ~ 1) is not excluded
SEED_SD_SCALE = 0.5   # seed-to-seed sd of logit accuracy: typically 0.05..0.3; the tail admits
                      # runs that diverged on one seed only



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
      (dataset_contrast, contrast), `eta` (run); `tau` and `gamma_tilde` only if
      D > 1. Deterministics, the ones to read: `beta_<f>` (level_<f>) and `gamma_<f>`
      (dataset, level_<f>). Observed: `<outcome successes column>` (run).

    Raises:
      WhatmattersError: a needed column is missing, a level or dataset is not in the spec,
        a spec dataset has no runs, run ids repeat, or counts are missing or impossible.
    """
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    runs = _checked_table(table, spec)
    successes = runs[spec["outcome"]["successes"]].to_numpy(dtype="int64")
    trials = runs[spec["outcome"]["trials"]].to_numpy(dtype="int64")
    dataset_of_run = pd.Categorical(runs["dataset"], categories=datasets).codes
    multi = len(datasets) > 1

    # Level effects of all factors stacked in one axis of sum_f L_f levels ("stacked level").
    n_levels = [len(_levels(spec, f)) for f in factors]
    first = np.concatenate([[0], np.cumsum(n_levels)[:-1]])                  # each factor's first stacked level
    basis = scipy.linalg.block_diag(*[_zero_sum_basis(n) for n in n_levels])  # (sum L, sum (L-1))
    factor_of_contrast = np.repeat(np.arange(len(factors)), [n - 1 for n in n_levels])
    level_codes = np.column_stack([pd.Categorical(runs[f], categories=_levels(spec, f)).codes
                                   for f in factors])                          # (R, F)
    cells = dataset_of_run[:, None] * sum(n_levels) + first + level_codes     # (R, F) into (D, sum L)

    coords = {
        "factor": factors, "dataset": datasets, "run": runs["run_id"].astype(str).tolist(),
        **{level_dim(f): _levels(spec, f) for f in factors},
        "contrast": [f"{f}[{k}]" for f, n in zip(factors, n_levels) for k in range(1, n)],
        "dataset_contrast": [f"dataset[{k}]" for k in range(1, len(datasets))],
    }
    with pm.Model(coords=coords) as model:
        # Data
        dataset_idx = pm.Data("dataset_idx", dataset_of_run, dims="run")
        cell = pm.Data("cell", cells, dims=("run", "factor"))
        n = pm.Data("trials", trials, dims="run")

        # Priors
        alpha = pm.Normal("alpha", mu=pooled_logit(successes, trials, dataset_of_run, len(datasets)),
                          sigma=ALPHA_SD, dims="dataset")
        sigma = pm.HalfNormal("sigma", sigma=SIGMA_SCALE, dims="factor")
        sigma_seed = pm.HalfNormal("sigma_seed", sigma=SEED_SD_SCALE, dims="dataset")

        # beta_f ~ ZeroSumNormal(sigma_f): L_f - 1 iid Normal(0, sigma_f) contrasts on an
        # orthonormal basis of the zero-sum levels. Stacking all factors keeps the graph
        # small (a tenth of the per-factor form's nodes, the gradient ~3x faster).
        beta_tilde = pm.Normal("beta_tilde", mu=0.0, sigma=1.0, dims="contrast")   # non-centred
        beta = _dot(basis, sigma[factor_of_contrast] * beta_tilde)                # (sum L,)
        effect = beta[None, :]                                                   # (1, sum L)
        if multi:
            # gamma_f ~ ZeroSumNormal(sigma_f tau_f) over datasets and levels, the same way
            tau = pm.HalfNormal("tau", sigma=TAU_SCALE, dims="factor")
            gamma_tilde = pm.Normal("gamma_tilde", mu=0.0, sigma=1.0, dims=("dataset_contrast", "contrast"))
            gamma = _dot(_dot(_zero_sum_basis(len(datasets)), (sigma * tau)[factor_of_contrast] * gamma_tilde),
                         basis.T)                                                # (D, sum L)
            effect = effect + gamma                                              # (D, sum L)
        for f, start, size in zip(factors, first, n_levels):
            pm.Deterministic(f"beta_{f}", beta[start:start + size], dims=level_dim(f))
            if multi:
                pm.Deterministic(f"gamma_{f}", gamma[:, start:start + size], dims=("dataset", level_dim(f)))

        # mu_r = alpha_d + sum_f (beta_f + gamma_f)[d, l_f(r)]
        mu = alpha[dataset_idx] + effect.flatten()[cell].sum(axis=1)              # (R,)

        # Likelihood: eta_r = mu_r + eps_r, eps_r ~ Normal(0, sigma_seed_d), centred: with
        # hundreds of test examples per run the data pin each eta_r down far more tightly
        # than sigma_seed_d does, which is where the centred form samples well.
        eta = pm.Normal("eta", mu=mu, sigma=sigma_seed[dataset_idx], dims="run")
        pm.Binomial(spec["outcome"]["successes"], n=n, logit_p=eta, observed=successes, dims="run")
    return model


def fit(table: pd.DataFrame, spec: dict) -> az.InferenceData:
    """Sample the posterior of one outcome and add the importance estimands.

    `spec["sampler"]` holds chains, draws, tune, target_accept, seed (one seed for every
    chain), cores, and optionally `method` ("collapsed", the default: `whatmatters.collapsed`;
    or "binomial": `build_model`), `interactions` (collapsed only) and `sampler` ("auto":
    nutpie when installed, else PyMC's NUTS; "nutpie"; "pymc").

    Returns:
      InferenceData whose posterior holds the scales, `alpha`, `beta_<f>`, `gamma_<f>`
      (D > 1), `interaction_<f>__<g>` (interactions on) and every estimand of
      `whatmatters.estimands` (`importance` (chain, draw, factor, dataset),
      `importance_pooled` (chain, draw, factor), ...); `constant_data` holds the runs
      (`run_dataset`, `run_level` (run, factor), and `run_successes`, `run_trials` (binomial)
      or `run_value` (continuous outcomes));
      `posterior.attrs` holds the spec, the provenance and the free variables' names as
      JSON strings (they survive `posterior.save`/`load`).
    """
    with _one_blas_thread():
        return _fit(table, spec)


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread in this process and in the chain processes it starts.

    The model's algebra is many small (< 300 x 300) problems where OpenBLAS threads only
    contend (a 21 x 21 triangular solve: 7.7 ms threaded, 30 us with one thread, on a busy
    2-core machine); the fit's parallelism is one chain per process. Snakemake exports
    OPENBLAS_NUM_THREADS = the rule's threads (the chain count) to every job, which made
    the default study's fit ~6x slower, so this overrides it for the fit's duration.
    """
    from threadpoolctl import threadpool_limits

    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"          # read by the chain processes at start
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def _fit(table: pd.DataFrame, spec: dict) -> az.InferenceData:
    from whatmatters import collapsed, estimands

    s = spec["sampler"]
    method = s.get("method", "collapsed")
    runs = _checked_table(table, spec)
    level_codes, dataset_codes = collapsed.codes(runs, spec)
    outcome = spec["outcome"]
    start = time.perf_counter()
    extra = {}
    if method == "binomial":
        if outcomes.resolve(outcome)["kind"] != "binomial":
            raise WhatmattersError(f"analysis.method: binomial models counts only; outcome {outcome['name']!r} "
                                   "is a continuous measurement: use method: collapsed")
        if s.get("interactions"):
            raise WhatmattersError("analysis.interactions: true needs analysis.method: collapsed; "
                                   "the binomial model has main effects only")
        model = build_model(runs, spec)
        idata = _sample(model, s, nutpie_ok=True)
    elif method == "collapsed":
        y, v = outcomes.response(runs, outcome)
        c = collapsed.prepare(level_codes, dataset_codes, y, v,
                              [len(_levels(spec, f)) for f in spec["factors"]], list(spec["factors"]),
                              list(spec["datasets"]), interactions=bool(s.get("interactions")),
                              centre=outcomes.centre(runs, outcome, dataset_codes, len(spec["datasets"])))
        model = collapsed.build_model(c)
        idata = _sample(model, s)
        effects = collapsed.draw_effects(c, idata.posterior, seed=int(s["seed"]))
        effects = effects.assign_coords({"chain": idata.posterior["chain"], "draw": idata.posterior["draw"],
                                         "dataset": list(spec["datasets"]),
                                         **{level_dim(f): _levels(spec, f) for f in spec["factors"]}})
        idata.posterior = idata.posterior.merge(effects)
        extra = {"cells": int(c.group_of_cell.size), "weight_groups": int(c.variance.size),
                 "max_variance_shift": round(c.max_variance_shift, 4), "theta_columns": c.n_columns}
    else:
        raise WhatmattersError(f"analysis.method: {method!r} is not valid; choose one of: collapsed, binomial")
    seconds = time.perf_counter() - start

    estimands.add_estimands(idata.posterior, spec, level_codes, dataset_codes, seed=int(s["seed"]))
    measured = ({"run_successes": ("run", runs[outcome["successes"]].to_numpy(dtype="int64")),
                 "run_trials": ("run", runs[outcome["trials"]].to_numpy(dtype="int64"))}
                if outcomes.resolve(outcome)["kind"] == "binomial"
                else {"run_value": ("run", runs[outcome["column"]].to_numpy(dtype=float))})
    runs_data = xr.Dataset({
        "run_dataset": ("run", dataset_codes), "run_level": (("run", "factor"), level_codes), **measured,
    }, coords={"run": runs["run_id"].astype(str).tolist(), "factor": list(spec["factors"])})
    if "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.merge(runs_data)
    else:
        idata.add_groups(constant_data=runs_data)
    idata.posterior.attrs[ATTR_SPEC] = json.dumps(spec)
    idata.posterior.attrs[ATTR_FREE] = json.dumps([v.name for v in model.free_RVs])
    idata.posterior.attrs[ATTR_PROVENANCE] = json.dumps(provenance(
        step="fit", sampler=dict(s), method=method, runs=int(len(runs)),
        sampling_seconds=round(seconds, 1), sampler_used=idata.posterior.attrs.get("sampler_used"), **extra,
    ))
    return idata


def _sample(model: pm.Model, s: dict, nutpie_ok: bool = False) -> az.InferenceData:
    """NUTS on `model` with the study's settings: nutpie when asked for, or when installed,
    `sampler` is "auto" and the model is a plain PyTensor graph (`nutpie_ok`); otherwise
    PyMC's own NUTS. The collapsed model's likelihood is a numpy Op that nutpie's numba
    backend can only run in object mode: 163 s against PyMC's 48 s on a 20,000-run table."""
    choice = s.get("sampler", "auto")
    use_nutpie = choice == "nutpie" or (choice == "auto" and nutpie_ok and _nutpie_available())
    if choice == "nutpie" and not _nutpie_available():
        raise WhatmattersError("analysis.sampler: nutpie is not installed; `pip install nutpie` "
                               "or choose sampler: auto or pymc")
    if use_nutpie:
        import nutpie

        compiled = nutpie.compile_pymc_model(model)
        idata = nutpie.sample(compiled, draws=int(s["draws"]), tune=int(s["tune"]), chains=int(s["chains"]),
                              cores=int(s.get("cores", 1)), seed=int(s["seed"]),
                              target_accept=float(s.get("target_accept", 0.9)), progress_bar=False)
    else:
        kwargs = {"target_accept": float(s.get("target_accept", 0.9))}
        if sum(int(np.prod(model.initial_point()[v.name].shape)) for v in model.value_vars) <= LAPLACE_MAX_DIM:
            kwargs = _laplace_start(model, int(s["chains"]), float(s.get("target_accept", 0.9)), int(s["seed"]))
        with model:
            idata = pm.sample(
                draws=int(s["draws"]), tune=int(s["tune"]), chains=int(s["chains"]),
                cores=int(s.get("cores", 1)), random_seed=int(s["seed"]), progressbar=False,
                compute_convergence_checks=False, **kwargs,
            )
    idata.posterior.attrs["sampler_used"] = "nutpie" if use_nutpie else "pymc"
    return idata


def _laplace_start(model: pm.Model, chains: int, target_accept: float, seed: int) -> dict:
    """NUTS started at the posterior mode, its mass matrix at the Laplace approximation.

    For small models (the collapsed one: ~20 log-scales). PyMC's default starts from the
    prior's centre with a unit mass matrix; when the data pin some scales down to a
    hundredth of their prior width (sigma_seed on 20,000 runs), early warm-up then runs
    trees of depth 8-10 until the mass matrix catches up, most of the fit's time. Here the
    mode is found by L-BFGS, the Hessian by central differences of the gradient, and the
    diagonal of its inverse seeds the usual adaptation (weight of 10 draws), so warm-up
    starts near where it ends. Returns `pm.sample` keyword arguments (`step`, `initvals`).
    """
    import scipy.optimize
    from pymc.blocking import DictToArrayBijection, RaveledVars
    from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt

    value_vars = model.continuous_value_vars
    start = model.initial_point()
    logp_dlogp = model.logp_dlogp_function(value_vars, ravel_inputs=True)
    logp_dlogp.set_extra_values({})
    x0 = DictToArrayBijection.map({v.name: start[v.name] for v in value_vars})

    def negative(x):
        logp, grad = logp_dlogp(x)
        return (-logp, -grad) if np.isfinite(logp) else (np.inf, np.zeros_like(x))

    mode = scipy.optimize.minimize(negative, x0.data, jac=True, method="L-BFGS-B").x
    step = 1e-4
    hessian = np.array([(negative(mode + step * e)[1] - negative(mode - step * e)[1]) / (2 * step)
                        for e in np.eye(mode.size)])
    hessian = (hessian + hessian.T) / 2
    try:
        cov = np.linalg.inv(hessian)
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:     # not a clean maximum (a scale at its boundary): diagonal only
        cov = np.diag(np.clip(1 / np.abs(np.diag(hessian)), 1e-8, 10.0))
    variance = np.diag(cov)

    rng = np.random.default_rng(seed)
    to_rv = {model.rvs_to_values[rv].name: rv for rv in model.free_RVs}
    initvals = []
    for _ in range(chains):   # each chain starts at its own draw from the Laplace approximation
        x = mode + rng.normal(size=mode.size) * np.sqrt(variance)
        point = DictToArrayBijection.rmap(RaveledVars(x, x0.point_map_info))
        initvals.append({to_rv[k].name: _constrained(model, to_rv[k], v) for k, v in point.items()})
    potential = QuadPotentialFullAdapt(mode.size, mode, cov, 10)
    return {"step": pm.NUTS(value_vars, model=model, potential=potential, target_accept=target_accept),
            "initvals": initvals}


def _constrained(model: pm.Model, rv, value):
    transform = model.rvs_to_transforms.get(rv)
    if transform is None:
        return np.asarray(value)
    return transform.backward(pt.as_tensor(np.asarray(value)), *rv.owner.inputs).eval()


def _nutpie_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nutpie") is not None


def add_importance(idata: az.InferenceData, spec: dict) -> az.InferenceData:
    """Add `importance` (chain, draw, factor, dataset) and `importance_pooled`
    (chain, draw, factor) to `idata.posterior`, in place, from `beta_<f>` and `gamma_<f>`
    (the logit-scale estimand alone; `fit` adds all of them)."""
    post = idata.posterior
    per_factor = [level_effects(post, f).std(level_dim(f), ddof=1) for f in spec["factors"]]
    importance = xr.concat(per_factor, dim=pd.Index(list(spec["factors"]), name="factor"))
    post["importance"] = importance.transpose("chain", "draw", "factor", "dataset")
    post["importance_pooled"] = post["importance"].mean("dataset")
    return idata


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


def simulate_table(spec: dict, importance: dict[str, float], *, configs: int = 50, seeds: int = 3,
                   trials: dict[str, int] | int = 1000, accuracy: dict[str, float] | float = 0.85,
                   dataset_deviation: float = 0.2, seed_sd: float = 0.15,
                   diverged_fraction: float = 0.03, diverged_accuracy: float = 0.1,
                   unstable: tuple[str, int, float] | None = None,
                   random_seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A run table drawn from the model's generative process with planted importances,
    plus diverged runs, and the true value of the importance estimand.

    Each factor's pooled level effects are a random zero-sum vector rescaled so its
    finite-population sd is exactly `importance[f]` (logit scale); each dataset adds a
    deviation of relative size `dataset_deviation`; every run adds seed noise of sd
    `seed_sd`. The same `configs` distinct random configs run on every dataset with
    `seeds` seeds. A run diverges (accuracy ~`diverged_accuracy`, status "diverged") with
    probability `diverged_fraction`, plus `extra` on the configs whose factor `f` is at
    level index `j` when `unstable = (f, j, extra)` (a learning rate that blows up).

    Diverged runs are data (DESIGN.md, "Failure is data"): the estimand is the sd of the
    level effects on a run's *expected* logit accuracy, failures included. With
    divergence probability q_c and converged logit eta_c, that expectation is
    (1 - q_c) eta_c + q_c logit(diverged_accuracy); its main effects, averaged over the
    full factorial grid, are (1 - mean q) times the planted effects for a factor that does
    not drive divergence, and (1 - q_j) e_j - q_j (a_d - logit(diverged_accuracy)),
    centred, for the factor that does. So divergence at random dilutes every importance,
    and an unstable level adds importance to its factor.

    Returns:
      (table, truth): table with the columns `build_model` expects (outcome columns
      `n_test`, `n_test_correct`, `test_accuracy`, and `train` ones); truth maps
      `beta` -> {factor: pooled planted effects}, `planted` -> {factor: {dataset: sd of the
      converged runs' effects}} and `importance` -> {factor: {dataset: the estimand's true
      value}}.
    """
    rng = np.random.default_rng(random_seed)
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    trials = trials if isinstance(trials, dict) else {d: trials for d in datasets}
    accuracy = accuracy if isinstance(accuracy, dict) else {d: accuracy for d in datasets}
    sizes = [len(spec["factors"][f]["levels"]) for f in factors]
    if unstable is not None and (unstable[0] not in factors
                                 or not 0 <= unstable[1] < sizes[factors.index(unstable[0])]):
        raise ValueError(f"unstable={unstable!r}: expected (factor, level index, extra probability) "
                         f"with a factor of {factors}")

    def zero_sum(n_levels, sd):
        v = rng.normal(size=n_levels)
        v -= v.mean()
        return v * sd / v.std(ddof=1) if sd > 0 else np.zeros(n_levels)

    def divergence(f, j):          # probability of divergence contributed by factor f at level j
        return unstable[2] if unstable is not None and (f, j) == tuple(unstable[:2]) else 0.0

    beta = {f: zero_sum(len(spec["factors"][f]["levels"]), importance.get(f, 0.0)) for f in factors}
    effect = {(f, d): beta[f] + zero_sum(len(beta[f]), dataset_deviation * importance.get(f, 0.0))
              for f in factors for d in datasets}
    picks = rng.choice(int(np.prod(sizes)), size=min(configs, int(np.prod(sizes))), replace=False)
    choices = [dict(zip(factors, np.unravel_index(i, sizes))) for i in picks]   # distinct configs
    chance = np.log(diverged_accuracy / (1 - diverged_accuracy))

    rows = []
    for d in datasets:
        for c in choices:
            config_id = hashlib.sha1(json.dumps({f: int(c[f]) for f in factors}).encode()).hexdigest()[:10]
            q = diverged_fraction + sum(divergence(f, c[f]) for f in factors)
            for seed in range(seeds):
                eta = (np.log(accuracy[d] / (1 - accuracy[d])) + rng.normal(0, seed_sd)
                       + sum(effect[f, d][c[f]] for f in factors))
                diverged = rng.random() < q
                p = diverged_accuracy if diverged else 1 / (1 + np.exp(-eta))
                n = trials[d]
                k = int(rng.binomial(n, p))
                k_train = int(rng.binomial(n, diverged_accuracy if diverged else min(1.0, p + 0.05)))
                rows.append({
                    "run_id": f"{d}/{config_id}/{seed}", "dataset": d, "config_id": config_id,
                    "seed": seed, "status": "diverged" if diverged else "ok",
                    **{f: spec["factors"][f]["levels"][c[f]] for f in factors},
                    "n_test": n, "n_test_correct": k, "test_accuracy": k / n,
                    "n_train": n, "n_train_correct": k_train, "train_accuracy": k_train / n,
                })
    table = pd.DataFrame(rows)

    def true_effects(f, d):         # main effects of the expected logit over the full grid
        q = diverged_fraction + np.array([divergence(f, j) for j in range(len(beta[f]))])   # per level of f
        others = sum(np.mean([divergence(g, j) for j in range(len(beta[g]))]) for g in factors if g != f)
        a = np.log(accuracy[d] / (1 - accuracy[d]))
        # the expectation is linear in every other factor's zero-sum effects, which average out,
        # except through q: E over the grid of q_c * e_g[c_g] is extra * e_g[j] / K_g, the same
        # for every level of f, so it drops out of f's centred effects.
        marginal = effect[f, d] - (q + others) * (a - chance + effect[f, d])
        return marginal - marginal.mean()

    truth = {
        "beta": {f: beta[f].tolist() for f in factors},
        "planted": {f: {d: float(np.std(effect[f, d], ddof=1)) for d in datasets} for f in factors},
        "importance": {f: {d: float(np.std(true_effects(f, d), ddof=1)) for d in datasets} for f in factors},
    }
    return table, truth


def _checked_table(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The table, validated against the spec; every failure names what to fix."""
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    outcome = outcomes.resolve(spec["outcome"])
    needed = ["run_id", "dataset", *factors, *outcomes.columns(outcome)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise WhatmattersError(
            f"run table lacks column(s) {missing} needed for outcome {outcome['name']!r}; "
            f"it has {sorted(map(str, table.columns))}")
    if len(table) == 0:
        raise WhatmattersError("run table is empty: nothing to fit")
    if table["run_id"].duplicated().any():
        dup = table.loc[table["run_id"].duplicated(), "run_id"].head(5).tolist()
        raise WhatmattersError(f"run table repeats run_id(s) {dup}: one row per run expected")
    unknown = sorted(set(table["dataset"].astype(str)) - set(datasets))
    if unknown:
        raise WhatmattersError(f"run table has dataset(s) {unknown} not in the spec's datasets {datasets}")
    absent = [d for d in datasets if not (table["dataset"] == d).any()]
    if absent:
        raise WhatmattersError(f"spec dataset(s) {absent} have no runs in the table; "
                               "fit a spec that lists only the datasets that were run")
    for f in factors:
        levels = list(spec["factors"][f]["levels"])
        if len(levels) < 2:
            raise WhatmattersError(f"factor {f!r} has {len(levels)} level(s); importance needs >= 2")
        extra = sorted(set(table[f].astype(str)) - set(levels))
        if extra:
            raise WhatmattersError(f"factor {f!r} has level(s) {extra} in the run table "
                                   f"that are not in the spec's levels {levels}")
    for col in outcomes.columns(outcome):
        if table[col].isna().any():
            bad = table.loc[table[col].isna(), "run_id"].head(5).tolist()
            raise WhatmattersError(f"column {col!r} is missing for run(s) {bad}; "
                                   "diverged runs need their measured values too")
    outcomes.check(table, outcome)
    return table.reset_index(drop=True)


def _levels(spec: dict, factor: str) -> list[str]:
    return list(spec["factors"][factor]["levels"])


def _dot(a, b):
    """a @ b for a constant (m, k) matrix `a` and a (k,) or (k, n) tensor `b`, as a
    broadcast product and sum: for matrices this small one fused elementwise loop beats
    a BLAS call and its gradient's reshapes."""
    if b.ndim == 1:
        return (a * b[None, :]).sum(axis=1)
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)


_zero_sum_basis = zero_sum_basis   # (n, n-1) orthonormal zero-sum basis; see whatmatters.collapsed
