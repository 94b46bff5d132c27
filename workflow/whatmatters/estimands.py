r"""Importance estimands: four ways to say how much a factor matters, per posterior draw.

The estimand, model-free (docs/model.md): the study's *population* of configs is the full
factorial of its levels, every config equally weighted. On dataset d, the marginal mean of
level l of factor f is the mean over the population's configs with f at l of the outcome's
expected value on the model's scale (the logit of accuracy, failures included; the log of
a continuous outcome). Factor f's importance on d is the sd over its levels of those
marginal means. These are the main effects of the ANOVA decomposition of the full
factorial, whatever the interactions: a design runs a random fraction of the population and
the posterior says how well that fraction pins them down.

In model terms, e_{f,d}[l] = beta_f[l] + gamma_f[d, l] + R_{f,d}[l] (centred) is that
marginal mean less its grand mean (`whatmatters.posterior.population_effects`; R is the mean
config residual over the population at level l, `whatmatters.population`), on the logit
scale (log scale for a continuous outcome), and delta_fg are the pairwise interactions
(when the study turns them on):

  importance           sd_l e_{f,d}[l]  (ddof 1), the finite-population sd of the level
                       effects on the logit scale (Gelman 2005). The default: it is what
                       the model's scales describe, and it does not depend on where the
                       other factors sit on the accuracy curve.
  importance_natural   the same sd on the outcome's natural scale, of
                       a_{f,d}[l] = mean_c g^-1(mu_c with f set to l), the value a run
                       would have with f set to l, averaged over the design's level
                       combinations c of the other factors on dataset d (no seed noise);
                       g^-1 is logistic (accuracy, in percentage points) or exp
                       (continuous outcomes, in their unit). Accuracy saturates near 100%:
                       a factor can matter on the logit scale yet move few points on an
                       easy dataset.
  tunability           max_l a_{f,d}[l] - a_{f,d}[baseline] (min and reversed when lower
                       is better): what tuning f gains over its default (Probst, Boulesteix
                       & Bischl 2019). Zero when the baseline is already the best level.
  importance_total     sqrt(sd_l(e)^2 + L_f / (L_f - 1) sum_{g != f} mean(delta_fg^2)): the
                       logit sd of everything f touches, its interactions included (like a
                       total Sobol index; equal to `importance` without interactions).
                       Only when interactions are on.

Each has dims (chain, draw, factor, dataset), and a pooled version `<name>_pooled` (chain,
draw, factor): the mean over datasets. With interactions on, `pair_importance`
(chain, draw, pair) is each pair's own importance: the sd of delta_fg over the L_f x L_g
grid of its levels (on the logit scale, like `importance`).

Beside them, how far the additive model is from the table (`add_nonadditivity`), per
dataset (chain, draw, dataset):

  nonadditivity       sigma_config_d^2 / (mean over cells of (v_c + sigma_seed_d^2) / m_c):
                      the spread of config means around the additive prediction, in units
                      of what seed noise alone explains. 1 means a config's mean is off
                      the additive prediction by about as much as its seeds disagree.
  nonadditive_share   sigma_config_d^2 / (sigma_config_d^2 + sum_f importance_{f,d}^2): the
                      share of the config-to-config variance that no main effect explains.
                      Near 1, interactions dominate the main effects and main-effect ranks
                      describe little of what happens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import kendalltau

from whatmatters import outcomes
from whatmatters.hypotheses import kendall_tau_draws
from whatmatters.posterior import POOLED, interaction_names, level_dim, pair_name, population_effects

ESTIMANDS = {   # posterior variable -> (label, unit) for an accuracy outcome; see `describe`
    "importance": ("sd of level effects", "logit"),
    "importance_natural": ("sd of level accuracies", "pp"),
    "tunability": ("tunability: best level - baseline", "pp"),
    "importance_total": ("total sd incl. interactions", "logit"),
}


def describe(name: str, outcome: dict | None = None) -> tuple[str, str]:
    """(label, unit) of estimand `name` for `outcome` (an analysis spec's outcome)."""
    o = outcomes.resolve(outcome) if outcome else None
    if o is None or o["kind"] == "binomial":
        return ESTIMANDS[name]
    link = "log"
    return {"importance": ("sd of level effects", link),
            "importance_natural": (f"sd of level means of {o['label']}", o["unit"]),
            "tunability": ("tunability: baseline - best level" if o["better"] == "lower"
                           else "tunability: best level - baseline", o["unit"]),
            "importance_total": ("total sd incl. interactions", link)}[name]
MAX_CELLS = 200   # design cells per dataset averaged over for the accuracy scale (a seeded sample)


def add_estimands(posterior: xr.Dataset, spec: dict, level_codes: np.ndarray, dataset_codes: np.ndarray,
                  seed: int = 0) -> None:
    """Add every estimand of the module docstring (and `level_natural_<f>`, the a_{f,d}[l])
    to `posterior`, in place.

    Args:
      posterior: holds `alpha` (chain, draw, dataset), `beta_<f>`, optionally `gamma_<f>`
        and `interaction_<f>__<g>` (chain, draw, level_<f>, level_<g>).
      level_codes: (R, F) level index per run and factor (spec order); dataset_codes: (R,).
      seed: picks the design cells when a dataset has more than MAX_CELLS.
    """
    factors = list(spec["factors"])
    outcome = outcomes.resolve(spec.get("outcome"))
    higher = outcome["better"] == "higher"
    datasets = [str(d) for d in posterior["dataset"].values]
    effects = {f: population_effects(posterior, f).values for f in factors}       # (C, N, D, L_f)
    pairs = interaction_names(posterior)
    deltas = {p: posterior[name].transpose("chain", "draw", level_dim(p[0]), level_dim(p[1])).values
              for p, name in pairs.items()}
    alpha = posterior["alpha"].transpose("chain", "draw", "dataset").values        # (C, N, D)
    rng = np.random.default_rng(seed)

    sd, sd_acc, tun = (np.zeros(alpha.shape[:2] + (len(factors), len(datasets))) for _ in range(3))
    level_acc = {f: np.zeros(effects[f].shape) for f in factors}
    for d in range(len(datasets)):
        cells = np.unique(level_codes[dataset_codes == d], axis=0)                 # (K, F)
        if len(cells) > MAX_CELLS:
            cells = cells[np.sort(rng.choice(len(cells), MAX_CELLS, replace=False))]
        mu = alpha[:, :, d, None] + sum(effects[f][:, :, d][..., cells[:, i]]
                                        for i, f in enumerate(factors))           # (C, N, K)
        for (f, g), delta in deltas.items():
            mu = mu + delta[:, :, cells[:, factors.index(f)], cells[:, factors.index(g)]]
        for i, f in enumerate(factors):
            e = effects[f][:, :, d]                                                # (C, N, L_f)
            base = mu - e[..., cells[:, i]]                                         # f's own terms out
            for (p, q), delta in deltas.items():
                if f in (p, q):
                    base = base - _pair_term(delta, cells, factors, p, q)
            for level in range(e.shape[-1]):
                with_level = base + e[..., level, None]
                for (p, q), delta in deltas.items():
                    if f in (p, q):
                        with_level = with_level + _pair_term(delta, cells, factors, p, q, **{f: level})
                level_acc[f][:, :, d, level] = outcomes.natural(outcome, with_level).mean(axis=-1)
            acc = level_acc[f][:, :, d]
            sd[:, :, i, d] = e.std(axis=-1, ddof=1)
            sd_acc[:, :, i, d] = acc.std(axis=-1, ddof=1)
            baseline = list(spec["factors"][f]["levels"]).index(spec["factors"][f]["baseline"])
            tun[:, :, i, d] = (acc.max(axis=-1) - acc[..., baseline] if higher
                               else acc[..., baseline] - acc.min(axis=-1))

    dims = ("chain", "draw", "factor", "dataset")
    coords = {"factor": factors, "dataset": datasets}
    values = {"importance": sd, "importance_natural": sd_acc, "tunability": tun}
    if deltas:
        extra = np.zeros_like(sd)
        for (f, g), delta in deltas.items():
            square = (delta ** 2).mean(axis=(-2, -1))[..., None]                   # (C, N, 1)
            for h in (f, g):
                n = len(spec["factors"][h]["levels"])
                extra[:, :, factors.index(h)] += n / (n - 1) * square
        values["importance_total"] = np.sqrt(sd ** 2 + extra)
        posterior["pair_importance"] = xr.DataArray(
            np.stack([np.sqrt((delta ** 2).sum(axis=(-2, -1)) / (delta.shape[-2] * delta.shape[-1] - 1))
                      for delta in deltas.values()], axis=-1),
            dims=("chain", "draw", "pair"), coords={"pair": [pair_name(f, g) for f, g in deltas]})
    for name, v in values.items():
        posterior[name] = xr.DataArray(v, dims=dims, coords=coords)
        posterior[f"{name}_pooled"] = posterior[name].mean("dataset")
    for f in factors:
        posterior[f"level_natural_{f}"] = xr.DataArray(
            level_acc[f], dims=("chain", "draw", "dataset", level_dim(f)),
            coords={"dataset": datasets, level_dim(f): list(spec["factors"][f]["levels"])})


def add_nonadditivity(posterior: xr.Dataset, level_codes: np.ndarray, dataset_codes: np.ndarray,
                      variance: np.ndarray) -> None:
    """Add `nonadditivity` and `nonadditive_share` (module docstring) to `posterior`, in place.

    Args:
      posterior: holds `sigma_config`, `sigma_seed` (chain, draw, dataset; taken as 0 where
        the model has no seed noise) and `importance`.
      level_codes: (R, F); dataset_codes: (R,); variance: (R,) each run's measurement
        variance on the model's scale (`whatmatters.outcomes.response`).
    """
    if "sigma_config" not in posterior:
        return
    datasets = posterior["dataset"].values
    config = posterior["sigma_config"].transpose("chain", "draw", "dataset").values ** 2
    seed = (posterior["sigma_seed"].transpose("chain", "draw", "dataset").values ** 2
            if "sigma_seed" in posterior else np.zeros(config.shape))            # none for a 0/1 outcome
    noise = np.zeros(config.shape)
    for d in range(len(datasets)):
        mine = dataset_codes == d
        _, cell, m = np.unique(level_codes[mine], axis=0, return_inverse=True, return_counts=True)
        v = np.bincount(cell.ravel(), weights=np.asarray(variance, float)[mine]) / m
        noise[..., d] = ((v[None, None, :] + seed[..., d, None]) / m).mean(axis=-1)
    main = (posterior["importance"].transpose("chain", "draw", "factor", "dataset").values ** 2).sum(axis=2)
    coords = {"dataset": datasets}
    posterior["nonadditivity"] = xr.DataArray(config / noise, dims=("chain", "draw", "dataset"), coords=coords)
    posterior["nonadditive_share"] = xr.DataArray(config / (config + main), dims=("chain", "draw", "dataset"),
                                                  coords=coords)


def _pair_term(delta, cells, factors, p, q, **fixed):
    """delta_pq at each cell's levels, one of them overridden by `fixed` -> (C, N, K)."""
    lp = np.full(len(cells), fixed[p]) if p in fixed else cells[:, factors.index(p)]
    lq = np.full(len(cells), fixed[q]) if q in fixed else cells[:, factors.index(q)]
    return delta[:, :, lp, lq]


def present(posterior: xr.Dataset) -> list[str]:
    """The estimands a posterior holds, in ESTIMANDS order."""
    return [name for name in ESTIMANDS if name in posterior]


def rank_agreement(posterior: xr.Dataset) -> pd.DataFrame:
    """Kendall's tau between the estimands' rankings of the factors, per scope.

    Returns a long table: `dataset` ("pooled" or a name), `estimand_a`, `estimand_b`,
    `tau_of_means` (tau between the posterior-mean importances) and `tau_mean` (posterior
    mean of the per-draw tau between the two rankings).
    """
    names = present(posterior)
    rows = []
    scopes = [POOLED, *[str(d) for d in posterior["dataset"].values]]
    for scope in scopes:
        arrays = {n: (posterior[f"{n}_pooled"] if scope == POOLED else posterior[n].sel(dataset=scope))
                  .transpose("chain", "draw", "factor").values.reshape(-1, posterior.sizes["factor"])
                  for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rows.append({"dataset": scope, "estimand_a": a, "estimand_b": b,
                             "tau_of_means": float(kendalltau(arrays[a].mean(0), arrays[b].mean(0)).statistic),
                             "tau_mean": float(kendall_tau_draws(arrays[a], arrays[b]).mean())})
    return pd.DataFrame(rows, columns=["dataset", "estimand_a", "estimand_b", "tau_of_means", "tau_mean"])
