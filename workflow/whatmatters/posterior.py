"""The posterior file's contract: what a fit writes and what every reader may rely on.

One fitted outcome is one ArviZ InferenceData, `results/analysis/{outcome}/posterior.nc`,
written by `whatmatters.fitting.fit` and read by the summaries, plots and estimands:

    posterior
      alpha                 (chain, draw, dataset)                 dataset intercepts
      sigma, tau, sigma_seed, sigma_interaction, ...               scales (`whatmatters.priors`)
      beta_<f>              (chain, draw, level_<f>)               pooled level effects of factor f
      gamma_<f>             (chain, draw, dataset, level_<f>)      dataset deviations (D > 1 only)
      interaction_<f>__<g>  (chain, draw, level_<f>, level_<g>)    pairwise interactions (when on)
      residual_level_<f>    (chain, draw, dataset, level_<f>)      mean config residual over the
                                                                   study's population at each level
      <estimand>            (chain, draw, factor, dataset)         `whatmatters.estimands`
      <estimand>_pooled     (chain, draw, factor)                  its mean over datasets
      level_natural_<f>     (chain, draw, dataset, level_<f>)      a level's natural-scale value
    posterior.attrs         ATTR_SPEC, ATTR_PROVENANCE, ATTR_FREE (JSON strings), ATTR_SAMPLER
    constant_data           run_dataset (run), run_level (run, factor), and run_successes,
                            run_trials (binomial outcomes) or run_value (continuous ones)
    sample_stats            the sampler's own (`diverging`, ...)

A *scope* is where importance is measured: POOLED, or one dataset's name. Everything here
is a name, a reader of those names, or the file's save and load; nothing imports a model.
"""

from __future__ import annotations

import json
import math

import arviz as az
import numpy as np
import xarray as xr

from whatmatters.io import atomic_path

POOLED = "pooled"        # the scope that averages importance over datasets
INTERVAL = 0.90          # the published intervals: hdi_5 .. hdi_95

# posterior.attrs: JSON strings (they survive NetCDF), written by `whatmatters.fitting.fit`
ATTR_SPEC = "whatmatters_spec"                  # the analysis spec the fit was made with
ATTR_PROVENANCE = "whatmatters_provenance"      # what made it: versions, settings, timings
ATTR_FREE = "whatmatters_free_variables"        # the sampler's free variables (R-hat is read on these)
ATTR_SAMPLER = "sampler_used"                   # "pymc" or "nutpie" (a plain string)


def level_dim(factor: str) -> str:
    """The dim (and coord) name of a factor's levels in the posterior, e.g. 'level_init'."""
    return f"level_{factor}"


def spec_of(idata: az.InferenceData) -> dict:
    """The analysis spec a fit was made with ({} if the InferenceData has none)."""
    raw = idata.posterior.attrs.get(ATTR_SPEC)
    return json.loads(raw) if raw else {}


def provenance_of(idata: az.InferenceData) -> dict:
    """The provenance recorded by the fit ({} if the InferenceData has none)."""
    raw = idata.posterior.attrs.get(ATTR_PROVENANCE)
    return json.loads(raw) if raw else {}


def level_effects(posterior: xr.Dataset, factor: str) -> xr.DataArray:
    """e_{f,d}[l] = beta_f[l] + gamma_f[d, l], dims (chain, draw, dataset, level_<f>)."""
    effect = posterior[f"beta_{factor}"]
    if f"gamma_{factor}" in posterior:
        return (effect + posterior[f"gamma_{factor}"]).transpose("chain", "draw", "dataset", level_dim(factor))
    return effect.expand_dims(dataset=posterior["dataset"].values).transpose("chain", "draw", "dataset", ...)


def pair_name(f: str, g: str) -> str:
    """The coord of a factor pair (dims "pair"), e.g. 'optimizer:architecture'."""
    return f"{f}:{g}"


def interaction_name(f: str, g: str) -> str:
    """The posterior variable of the pair's interaction effects."""
    return f"interaction_{f}__{g}"


def population_effects(posterior: xr.Dataset, factor: str) -> xr.DataArray:
    """The level effects on the study's population of configs (the full factorial of its
    levels): e_{f,d}[l] plus the mean config residual at level l (`residual_level_<f>`),
    centred over levels. Its sd over levels is the importance estimand (docs/model.md).
    dims (chain, draw, dataset, level_<f>)."""
    effect = level_effects(posterior, factor)
    name = f"residual_level_{factor}"
    if name not in posterior:
        return effect
    residual = posterior[name]
    residual = residual - residual.mean(level_dim(factor))
    return (effect + residual).transpose("chain", "draw", "dataset", level_dim(factor))


def interaction_names(posterior: xr.Dataset) -> dict[tuple[str, str], str]:
    """{(f, g): 'interaction_<f>__<g>'} of the pairwise interactions the posterior holds."""
    return {tuple(str(v)[len("interaction_"):].split("__")): str(v)
            for v in posterior.data_vars if str(v).startswith("interaction_")}


def importance_by_scope(idata: az.InferenceData, estimand: str = "importance") -> dict[str, xr.DataArray]:
    """{"pooled": (chain, draw, factor), <dataset>: (chain, draw, factor), ...}, pooled first,
    of one estimand (a posterior variable with a `<estimand>_pooled` twin, see
    `whatmatters.estimands`)."""
    post = idata.posterior
    scopes = {POOLED: post[f"{estimand}_pooled"]}
    for d in post[estimand]["dataset"].values:
        scopes[str(d)] = post[estimand].sel(dataset=d, drop=True)
    return {s: a.transpose("chain", "draw", "factor") for s, a in scopes.items()}


def hdi(samples, prob: float) -> tuple[float, float]:
    """Highest-density interval: the narrowest interval holding `prob` of the samples.

    Args:
      samples: array-like of draws (any shape; flattened).
    Returns:
      (low, high), both among the samples.
    """
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    n = x.size
    inside = min(n - 1, int(math.floor(prob * n)))    # index span of the interval
    widths = x[inside:] - x[: n - inside]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + inside])


def save(idata: az.InferenceData, path) -> None:
    """Write `idata` to NetCDF at `path`, atomically (whole file or the old one)."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))


def load(path) -> az.InferenceData:
    """Read an InferenceData written by `save`, fully into memory (the file is not kept open)."""
    idata = az.from_netcdf(str(path))
    idata.load()
    return idata
