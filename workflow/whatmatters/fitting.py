"""The fit of one outcome: the run table checked, the study's method sampled, the
estimands added, and the posterior file (`whatmatters.posterior`) assembled with its
provenance.

Each method is one module with the same entry point, `fit(runs, spec) -> (idata, details)`:
the sampled variables of its model and what it adds to the fit's provenance. A new method
is one entry in METHODS (and in `whatmatters.study.METHODS`, which the study checks).
"""

from __future__ import annotations

import json
import time

import arviz as az
import pandas as pd
import xarray as xr

from whatmatters import binomial, blas, collapsed, estimands, outcomes, runtable
from whatmatters.errors import WhatmattersError
from whatmatters.io import provenance
from whatmatters.posterior import ATTR_PROVENANCE, ATTR_SAMPLER, ATTR_SPEC

METHODS = {   # analysis.method -> its fit(runs, spec) -> (idata, details)
    "collapsed": collapsed.fit,   # every level effect integrated out: fast, the default
    "binomial": binomial.fit,     # the exact Binomial likelihood, one latent per run
}


def fit(table: pd.DataFrame, spec: dict) -> az.InferenceData:
    """Sample the posterior of one outcome and add the importance estimands.

    `spec` is the analysis spec (`whatmatters.analysis_spec`): `spec["model"]` holds
    `method` (a key of METHODS) and `interactions` (collapsed only); `spec["sampler"]`
    holds chains, draws, tune, target_accept, seed (one seed for every chain), cores and
    `nuts` ("auto": nutpie when installed and the model allows, else PyMC's NUTS; "nutpie";
    "pymc").

    Returns:
      InferenceData whose posterior holds the scales, `alpha`, `beta_<f>`, `gamma_<f>`
      (D > 1), `interaction_<f>__<g>` (interactions on) and every estimand of
      `whatmatters.estimands` (`importance` (chain, draw, factor, dataset),
      `importance_pooled` (chain, draw, factor), ..., `nonadditivity` and
      `nonadditive_share` (chain, draw, dataset)); `constant_data` holds the runs
      (`run_dataset`, `run_level` (run, factor), and `run_successes`, `run_trials` (binomial)
      or `run_value` (continuous outcomes));
      `posterior.attrs` holds the spec, the provenance and the free variables' names as
      JSON strings (they survive `posterior.save`/`load`).
    """
    with blas.one_thread():
        return _fit(table, spec)


def _fit(table: pd.DataFrame, spec: dict) -> az.InferenceData:
    s, method = spec["sampler"], spec["model"]["method"]
    runs = runtable.checked(table, spec)
    level_codes, dataset_codes = runtable.codes(runs, spec)
    if method not in METHODS:
        raise WhatmattersError(f"analysis.method: {method!r} is not valid; choose one of: {', '.join(METHODS)}")
    start = time.perf_counter()
    idata, details = METHODS[method](runs, spec)
    seconds = time.perf_counter() - start

    estimands.add_estimands(idata.posterior, spec, level_codes, dataset_codes, seed=int(s["seed"]))
    outcome = spec["outcome"]
    estimands.add_nonadditivity(idata.posterior, level_codes, dataset_codes, outcomes.response(runs, outcome)[1])
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
    idata.posterior.attrs[ATTR_PROVENANCE] = json.dumps(provenance(
        step="fit", model=dict(spec["model"]), sampler=dict(s), method=method, runs=int(len(runs)),
        sampling_seconds=round(seconds, 1), sampler_used=idata.posterior.attrs.get(ATTR_SAMPLER), **details,
    ))
    return idata
