r"""The priors both models share (`whatmatters.binomial` and `whatmatters.collapsed`).

On the logit scale of the outcome (logit(0.9) - logit(0.8) = 0.81), or the log scale of a
continuous one:

    alpha_d             ~ Normal(centre_d, ALPHA_SD)        centre_d: the dataset's pooled logit
    sigma_f             ~ HalfNormal(SIGMA_SCALE)           sd of factor f's level effects
    tau_f               ~ HalfNormal(TAU_SCALE)             dataset deviation relative to sigma_f (D > 1)
    sigma_seed_d        ~ HalfNormal(SEED_SD_SCALE)         seed-to-seed sd
    sigma_config_d      ~ HalfNormal(CONFIG_SD_SCALE)       config residual: what the additive
                                                            prediction misses about a config
    sigma_interaction_p = s_int * lambda_p                   pairwise interactions, per pair (when on):
    s_int               ~ HalfNormal(INTERACTION_SCALE)     a global scale shared by the pairs, and
    lambda_p            ~ HalfStudentT(INTERACTION_LOCAL_DF, 1)   a heavy-tailed local one per pair
    beta_f              ~ ZeroSumNormal(sigma_f)            over levels: `zero_sum_basis`

`scales` declares the scales in the model being built, so the two models cannot drift apart.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pymc as pm

ALPHA_SD = 1.5        # dataset intercept around its pooled observed logit: 1.5 spans ~50%..97% from 85%
SIGMA_SCALE = 1.0     # sd of a factor's level effects; 95% below 2 logits, yet a level that halves
                      # accuracy stays reachable, and ~300 runs x ~1000 trials outweigh the prior
TAU_SCALE = 0.5       # dataset deviation relative to the pooled effect: datasets mostly agree,
                      # but a factor that matters on one dataset only (tau ~ 1) is not excluded
SEED_SD_SCALE = 0.5   # seed-to-seed sd of logit accuracy: typically 0.05..0.3; the tail admits
                      # runs that diverged on one seed only
INTERACTION_SCALE = 1.0   # global scale of the pairwise interactions: as large as a main effect a priori
                          # (learning rate x batch size moves accuracy by logits), shrunk towards 0
                          # together when the table is additive
INTERACTION_LOCAL_DF = 1  # each pair's own multiplier: heavy-tailed, so one pair can be several times
                          # the others (an optimizer that fails with one architecture) while the rest shrink
CONFIG_SD_SCALE = 1.0     # sd of the config residual: interactions unspelled-out are as large as a
                          # main effect a priori; the default study's table puts it near 0.3..0.8


class Scales(NamedTuple):
    """The scales' random variables; None where the model leaves one out."""
    sigma: object                 # (factor,)
    tau: object | None            # (factor,), only with more than one dataset
    sigma_seed: object | None     # (dataset,), None without seed noise (a 0/1 outcome)
    sigma_config: object          # (dataset,)
    sigma_interaction: object | None   # (pair,), only with interactions


def scales(multi: bool, interactions: bool = False, seed_noise: bool = True) -> Scales:
    """Declare the scales' priors in the model being built (inside `with pm.Model(...)`,
    whose coords hold `factor`, `dataset` and, with interactions, `pair`): `tau` only if
    `multi` (D > 1), `sigma_interaction` only if `interactions`, `sigma_seed` only if
    `seed_noise` (a 0/1 outcome per run cannot tell seed noise from its mean)."""
    sigma = pm.HalfNormal("sigma", sigma=SIGMA_SCALE, dims="factor")
    tau = pm.HalfNormal("tau", sigma=TAU_SCALE, dims="factor") if multi else None
    sigma_seed = pm.HalfNormal("sigma_seed", sigma=SEED_SD_SCALE, dims="dataset") if seed_noise else None
    sigma_config = pm.HalfNormal("sigma_config", sigma=CONFIG_SD_SCALE, dims="dataset")
    sigma_interaction = None
    if interactions:
        shared = pm.HalfNormal("pair_scale", sigma=INTERACTION_SCALE)
        local = pm.HalfStudentT("pair_multiplier", nu=INTERACTION_LOCAL_DF, sigma=1.0, dims="pair")
        sigma_interaction = pm.Deterministic("sigma_interaction", shared * local, dims="pair")
    return Scales(sigma, tau, sigma_seed, sigma_config, sigma_interaction)


def zero_sum_basis(n: int) -> np.ndarray:
    """(n, n-1) orthonormal basis of the vectors summing to zero (Helmert contrasts).

    With c ~ Normal(0, s) iid, basis @ c ~ ZeroSumNormal(s): the same distribution
    `pm.ZeroSumNormal` has."""
    basis = np.zeros((n, n - 1))
    for k in range(1, n):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -k
        basis[:, k - 1] /= np.sqrt(k * (k + 1))
    return basis
