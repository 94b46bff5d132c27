"""NUTS on a built model: PyMC's sampler started at the Laplace approximation, or nutpie.

`sample(model, sampler)` is what both models' `fit` call; `sampler` is the analysis spec's
`sampler` section (chains, draws, tune, target_accept, seed, cores, nuts: auto, pymc or
nutpie), as the study resolved it (`whatmatters.analysis_spec`).
"""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

from whatmatters.errors import WhatmattersError
from whatmatters.posterior import ATTR_FREE, ATTR_SAMPLER

LAPLACE_MAX_DIM = 200   # free dimensions up to which NUTS starts from the Laplace approximation
LAPLACE_WEIGHT = 10     # draws' worth of weight the Laplace covariance keeps in the mass matrix's adaptation


def sample(model: pm.Model, s: dict, nutpie_ok: bool = False, laplace_ok: bool = True) -> az.InferenceData:
    """NUTS on `model` with the study's settings: nutpie when asked for, or when installed,
    `nuts` is "auto" and the model is a plain PyTensor graph (`nutpie_ok`); otherwise
    PyMC's own NUTS, started from the Laplace approximation when the model is small and
    `laplace_ok`. The collapsed model's likelihood is a numpy Op that nutpie's numba
    backend can only run in object mode: 163 s against PyMC's 48 s on a 20,000-run table.

    Returns the InferenceData of the model's variables; `posterior.attrs` names the free
    variables (ATTR_FREE) and the sampler used (ATTR_SAMPLER).
    """
    choice = s["nuts"]
    use_nutpie = choice == "nutpie" or (choice == "auto" and nutpie_ok and _nutpie_available())
    if choice == "nutpie" and not _nutpie_available():
        raise WhatmattersError("analysis.sampler: nutpie is not installed; `pip install nutpie` "
                               "or choose sampler: auto or pymc")
    if use_nutpie:
        import nutpie

        compiled = nutpie.compile_pymc_model(model)
        idata = nutpie.sample(compiled, draws=int(s["draws"]), tune=int(s["tune"]), chains=int(s["chains"]),
                              cores=int(s["cores"]), seed=int(s["seed"]),
                              target_accept=float(s["target_accept"]), progress_bar=False)
    else:
        kwargs = {"target_accept": float(s["target_accept"])}
        if laplace_ok and sum(int(np.prod(model.initial_point()[v.name].shape))
                              for v in model.value_vars) <= LAPLACE_MAX_DIM:
            kwargs = _laplace_start(model, int(s["chains"]), float(s["target_accept"]), int(s["seed"]))
        with model:
            idata = pm.sample(
                draws=int(s["draws"]), tune=int(s["tune"]), chains=int(s["chains"]),
                cores=int(s["cores"]), random_seed=int(s["seed"]), progressbar=False,
                compute_convergence_checks=False, **kwargs,
            )
    idata.posterior.attrs[ATTR_SAMPLER] = "nutpie" if use_nutpie else "pymc"
    idata.posterior.attrs[ATTR_FREE] = json.dumps([v.name for v in model.free_RVs])
    return idata


def _laplace_start(model: pm.Model, chains: int, target_accept: float, seed: int) -> dict:
    """NUTS started at the posterior mode, its mass matrix at the Laplace approximation.

    For small models (the collapsed one: ~20 log-scales). PyMC's default starts from the
    prior's centre with a unit mass matrix; when the data pin some scales down to a
    hundredth of their prior width (sigma_seed on 20,000 runs), early warm-up then runs
    trees of depth 8-10 until the mass matrix catches up, most of the fit's time. Here the
    mode is found by L-BFGS, the Hessian by central differences of the gradient, and the
    diagonal of its inverse seeds the usual adaptation (LAPLACE_WEIGHT draws), so warm-up
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
    potential = QuadPotentialFullAdapt(mode.size, mode, cov, LAPLACE_WEIGHT)
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
