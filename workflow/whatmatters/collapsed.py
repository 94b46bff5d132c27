r"""The collapsed model: the hierarchical model with every level effect integrated out.

Same structure as `whatmatters.binomial` (read its docstring first), with a Normal
likelihood on empirical logits in place of the Binomial. For cell c (one dataset d, one
combination of levels; its m_c runs differ only in the seed) and run r in it, with k_r of
n_r test examples correct:

    y_r   = log((k_r + 1/2) / (n_r - k_r + 1/2))            empirical logit of accuracy
    v_r   = 1 / (k_r + 1/2) + 1 / (n_r - k_r + 1/2)          its binomial variance (delta method)
    y_r   = mu_c + u_c + eps_r + e_r,    eps_r ~ Normal(0, sigma_seed_d),   e_r ~ Normal(0, v_c)
    mu_c  = x_c . theta = alpha_d + sum_f (beta_f + gamma_f[d])[l_f(c)]
                          (+ sum_{f<g} delta_fg[l_f(c), l_g(c)]   when interactions are on)
    u_c   ~ Normal(0, sigma_config_d)          the config residual (see below)
    theta ~ Normal(m0, Lambda),  Lambda = diag(1.5^2 (alpha), sigma_f^2 (beta contrasts),
                                                (sigma_f tau_f)^2 (gamma), sigma_int^2 (delta))

with v_c the mean of v_r over the cell. u_c is what the additive (main-effects) prediction
misses about config c on dataset d: interactions the model does not spell out, a failure
that needs two factors at once. It is exchangeable over configs with its own scale per
dataset, separate from seed noise: every seed of the config shares it. The cell's mean
ybar_c and within-cell sum of squares SS_c are sufficient, and given the scales psi =
(sigma, tau, sigma_seed, sigma_config, sigma_int) the model is linear Gaussian, so theta
and u integrate out exactly:

    ybar ~ Normal(X m0, W^-1 + X Lambda X'),
           W = diag(m_c / (v_c + sigma_seed_d^2 + m_c sigma_config_d^2))
    SS_c / (v_c + sigma_seed_d^2) ~ ChiSquared(m_c - 1)

    log p(ybar | psi) = -1/2 [ r'Wr - b'A^-1 b + log|A| + log|Lambda| - log|W| ] + const
    A = Lambda^-1 + X'WX,   b = X'W r,   r = ybar - X m0           (Woodbury, det. lemma)

NUTS samples only the ~20 log-scales: no funnel is left, whatever the data say about each
factor. theta is then drawn, per posterior draw, from its exact Gaussian conditional
Normal(m0 + A^-1 b, A^-1) (`draw_effects`).

Two exact forms of the same algebra. The primal one above works in theta's P columns; the
dual one (`GaussianDensity`) works in the C cells: ybar ~ Normal(X m0, W^-1 + X Lambda X'),
a C x C Cholesky per gradient. `Collapsed.form` picks the smaller: dual for interactions
on a study of tens of configs (P in the hundreds, C under a hundred), primal for big
tables (C in the thousands, P under a hundred).

Speed (primal): X'WX needs a pass over the cells per gradient, unless cells share a weight. Cells
are therefore grouped per dataset and seed count m_c by their binomial variance v_c into
geometric bins (at most `MAX_BINS` per dataset and m, neighbouring bins a factor `BIN_RATIO`
apart at least) and each group uses its mean v; then X'WX = sum_g w_g G_g with
G_g = sum_{c in g} x_c x_c' precomputed, and a gradient costs a few (P x P) products however many runs there are.
The binning moves a cell's noise variance by at most (ratio - 1) of itself, recorded in
the fit's provenance; it matters far less than the plug-in v_r itself.

Where this approximation is fair: the Normal approximation to the binomial on the logit
scale needs k_r and n_r - k_r of about 10 or more; a run that diverged to chance level
has k_r well above that on any real test set. `docs/model.md` compares this model with
the exact Binomial model on the default study.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg
import xarray as xr
from pytensor.graph import Apply, Op

from whatmatters import outcomes, population, priors
from whatmatters.posterior import interaction_name, level_dim, pair_name
from whatmatters.priors import ALPHA_SD, zero_sum_basis
from whatmatters.runtable import codes
from whatmatters.sampling import sample

AUTO_PAIRS_MAX = 200      # interactions: auto fits the pairs when the cheaper exact algebra is at most
                          # this size (cells or columns of theta): fits of minutes on 2 cores
MAX_BINS = 24             # weight groups per dataset: bounds the per-gradient work
BIN_RATIO = 1.02          # finest spacing of bin edges in v (2%)


@dataclass
class Collapsed:
    """What the collapsed model and its conditional draws need, all numpy.

    P columns of theta: alpha (D) | beta contrasts (S) | gamma (D-1) x S | delta (I).
    Groups g (G of them) share a dataset and a noise variance. A cell's design row is
    x_c = lift_d z_c with z_c = (1, beta features, delta features) (Q = 1 + S + I) the
    same on every dataset: the group Gram matrices are stored Q x Q, not P x P.
    """
    factors: list[str]
    datasets: list[str]
    n_levels: list[int]
    pairs: list[tuple[str, str]]          # interaction pairs (f, g), f before g in study order
    m0: np.ndarray                        # (P,) prior mean: pooled logit per dataset, 0 elsewhere
    blocks: dict[str, slice]              # "alpha", "beta", "gamma", "delta" -> columns
    factor_of_contrast: np.ndarray        # (S,) factor index of each beta contrast
    pair_of_column: np.ndarray            # (I,) pair index of each delta column
    gram: np.ndarray                      # (G, Q, Q) sum z_c z_c'   (x_c = lift_d z_c)
    cross: np.ndarray                     # (G, Q) sum z_c r_c
    lift: np.ndarray                      # (D, P, Q) dataset d's map from z to x
    square: np.ndarray                    # (G,) sum r_c^2
    n_cells: np.ndarray                   # (G,)
    seeds: np.ndarray                     # (G,) the runs per cell m_c, the same in a group
    within_df: np.ndarray                 # (G,) sum (m_c - 1)
    within_ss: np.ndarray                 # (G,) sum SS_c
    variance: np.ndarray                  # (G,) the group's binomial variance v_g
    dataset_of_group: np.ndarray          # (G,)
    group_of_cell: np.ndarray             # (C,)
    max_variance_shift: float             # max |v_c / v_g - 1| over cells
    cell_x: np.ndarray                    # (C, P) design rows, for the config residuals' draws
    cell_r: np.ndarray                    # (C,) ybar_c - x_c m0
    cell_levels: np.ndarray               # (C, F) level codes of each cell
    cell_data: np.ndarray                 # (C,) dataset code of each cell

    @property
    def n_columns(self) -> int:
        return self.m0.size

    @property
    def form(self) -> str:
        """The cheaper exact algebra: "dual" (cells x cells) when there are fewer cells
        than columns of theta, else "primal" (columns x columns)."""
        return "dual" if self.cell_r.size < self.n_columns else "primal"


def interaction_pairs(factors: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(factors, 2))


def prepare(level_codes: np.ndarray, dataset_of_run: np.ndarray, y, v, n_levels: list[int],
            factors: list[str], datasets: list[str], *, centre=None, interactions: bool = False,
            max_bins: int = MAX_BINS) -> Collapsed:
    """Cell statistics, design and weight groups of one outcome's runs.

    Args:
      level_codes: (R, F) int level index of each factor per run; dataset_of_run: (R,) int.
      y, v: (R,) response and its known measurement variance (`whatmatters.outcomes.response`:
        empirical logits and binomial variances, or log values and 0).
      centre: (D,) prior mean of the intercepts (`outcomes.centre`); default the mean of y.
    """
    y, v = np.asarray(y, float), np.asarray(v, float)
    n_data = len(datasets)
    if centre is None:
        centre = np.bincount(dataset_of_run, weights=y, minlength=n_data) / np.bincount(dataset_of_run,
                                                                                       minlength=n_data)

    # Cells: runs on the same dataset with the same levels.
    keys = np.column_stack([dataset_of_run, level_codes])
    cell_keys, cell_of_run, m = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cell_of_run = cell_of_run.ravel()
    ybar = np.bincount(cell_of_run, weights=y) / m
    ss = np.bincount(cell_of_run, weights=(y - ybar[cell_of_run]) ** 2)
    vbar = np.bincount(cell_of_run, weights=v) / m
    cell_data, cell_levels = cell_keys[:, 0], cell_keys[:, 1:]

    # Design in contrast space: z_c = (1, main, interaction features), x_c = lift_d z_c.
    bases = [zero_sum_basis(n) for n in n_levels]
    main = np.hstack([b[cell_levels[:, i]] for i, b in enumerate(bases)])        # (C, S)
    pairs = interaction_pairs(factors) if interactions else []
    index = {f: i for i, f in enumerate(factors)}
    inter = np.hstack([np.zeros((len(m), 0))] + [
        (bases[index[f]][cell_levels[:, index[f]]][:, :, None]
         * bases[index[g]][cell_levels[:, index[g]]][:, None, :]).reshape(len(m), -1)
        for f, g in pairs])                                                       # (C, I)
    z = np.hstack([np.ones((len(m), 1)), main, inter])                           # (C, Q)
    n_main, n_inter = main.shape[1], inter.shape[1]
    sizes = {"alpha": n_data, "beta": n_main, "gamma": (n_data - 1) * n_main if n_data > 1 else 0,
             "delta": n_inter}
    blocks, start = {}, 0
    for name, size in sizes.items():
        if size:
            blocks[name] = slice(start, start + size)
            start += size
    data_basis = zero_sum_basis(n_data) if n_data > 1 else np.zeros((1, 0))
    lift = np.zeros((n_data, start, z.shape[1]))
    for d in range(n_data):
        lift[d, blocks["alpha"].start + d, 0] = 1.0
        lift[d, blocks["beta"], 1:1 + n_main] = np.eye(n_main)
        for j in range(n_data - 1):
            rows = slice(blocks["gamma"].start + j * n_main, blocks["gamma"].start + (j + 1) * n_main)
            lift[d, rows, 1:1 + n_main] = data_basis[d, j] * np.eye(n_main)
        if n_inter:
            lift[d, blocks["delta"], 1 + n_main:] = np.eye(n_inter)
    x = np.einsum("cpq,cq->cp", lift[cell_data], z)                               # (C, P)

    m0 = np.zeros(x.shape[1])
    m0[blocks["alpha"]] = centre
    r = ybar - x @ m0

    # Weight groups: per dataset and seed count, geometric bins of the binomial variance.
    group = np.empty(len(m), dtype=np.int64)
    n_groups = 0
    for d in range(n_data):
        for seeds in np.unique(m[cell_data == d]):
            mine = np.flatnonzero((cell_data == d) & (m == seeds))
            logv = np.log(np.maximum(vbar[mine], 1e-300))   # continuous outcomes: v = 0, one group
            width = max(np.log(BIN_RATIO), (logv.max() - logv.min()) / max_bins * (1 + 1e-9))
            bins = np.floor((logv - logv.min()) / width).astype(np.int64)
            _, local = np.unique(bins, return_inverse=True)
            group[mine] = n_groups + local.ravel()
            n_groups += local.max() + 1
    n_cells = np.bincount(group, minlength=n_groups)
    variance = np.bincount(group, weights=vbar, minlength=n_groups) / n_cells
    dataset_of_group, seeds_of_group = np.zeros(n_groups, dtype=np.int64), np.zeros(n_groups)
    dataset_of_group[group], seeds_of_group[group] = cell_data, m

    gram = np.zeros((n_groups, z.shape[1], z.shape[1]))
    for g in range(n_groups):
        rows = group == g
        gram[g] = z[rows].T @ z[rows]
    return Collapsed(
        factors=list(factors), datasets=list(datasets), n_levels=list(n_levels), pairs=pairs,
        m0=m0, blocks=blocks,
        factor_of_contrast=np.repeat(np.arange(len(factors)), [n - 1 for n in n_levels]),
        pair_of_column=np.repeat(np.arange(len(pairs)), [(n_levels[index[f]] - 1) * (n_levels[index[g]] - 1)
                                                        for f, g in pairs]).astype(np.int64),
        gram=gram, lift=lift,
        cross=np.stack([np.bincount(group, weights=z[:, j] * r, minlength=n_groups)
                        for j in range(z.shape[1])], axis=1),
        square=np.bincount(group, weights=r ** 2, minlength=n_groups),
        n_cells=n_cells.astype(float), seeds=seeds_of_group,
        within_df=np.bincount(group, weights=m - 1.0, minlength=n_groups),
        within_ss=np.bincount(group, weights=ss, minlength=n_groups),
        variance=variance, dataset_of_group=dataset_of_group, group_of_cell=group,
        max_variance_shift=float(np.max(np.abs(vbar - variance[group]) / np.maximum(variance[group], 1e-300))),
        cell_x=x, cell_r=r, cell_levels=cell_levels, cell_data=cell_data,
    )


def prior_variance(c: Collapsed, sigma, tau, sigma_interaction, xp=pt):
    """(P,) prior variance of theta from the scales (works on pytensor or numpy arrays);
    `sigma_interaction` has one scale per pair."""
    n_data = len(c.datasets)
    parts = [xp.ones(n_data) * ALPHA_SD ** 2, sigma[c.factor_of_contrast] ** 2]
    if "gamma" in c.blocks:
        parts.append(xp.tile((sigma * tau)[c.factor_of_contrast] ** 2, n_data - 1))
    if "delta" in c.blocks:
        parts.append(sigma_interaction[c.pair_of_column] ** 2)
    return xp.concatenate(parts)


def weights(c: Collapsed, sigma_seed, sigma_config):
    """(u, w) per group: u_g = 1 / (v_g + sigma_seed_d^2), one run's precision around its
    config's mean, and w_g = m_g / (v_g + sigma_seed_d^2 + m_g sigma_config_d^2), the
    precision of a cell mean around the additive prediction (pytensor or numpy)."""
    noise = c.variance + sigma_seed[c.dataset_of_group] ** 2
    return 1.0 / noise, c.seeds / (noise + c.seeds * sigma_config[c.dataset_of_group] ** 2)


def build_model(c: Collapsed, coords_extra: dict | None = None, form: str | None = None) -> pm.Model:
    """The collapsed model's PyMC graph: the scales as free variables (log-transformed by
    PyMC) and the exact marginal likelihood of the module docstring as a Potential.

    `form` picks the algebra, both exact: "primal" (P x P, `GaussianEvidence`) or "dual"
    (C x C over the cells, `GaussianDensity`); by default the smaller (`Collapsed.form`)."""
    coords = {"factor": c.factors, "dataset": c.datasets, **(coords_extra or {})}
    if c.pairs:
        coords["pair"] = [pair_name(f, g) for f, g in c.pairs]
    with pm.Model(coords=coords) as model:
        # Priors
        scales = priors.scales(multi="gamma" in c.blocks, interactions="delta" in c.blocks)

        # Likelihood, theta and the config residuals integrated out
        lam = prior_variance(c, scales.sigma, scales.tau, scales.sigma_interaction)  # (P,)
        u, w = weights(c, scales.sigma_seed, scales.sigma_config)                     # (G,), (G,)
        within = 0.5 * (pt.dot(c.within_df, pt.log(u)) - pt.dot(u, c.within_ss))
        if (form or c.form) == "dual":
            between, _, _ = GaussianDensity(c)(lam, w)
        else:
            hard, _, _ = GaussianEvidence(c)(lam, w)
            between = hard - 0.5 * (pt.dot(w, c.square) + pt.log(lam).sum() - pt.dot(c.n_cells, pt.log(w)))
        pm.Potential("marginal_likelihood", between + within)
    return model


class _Marginal(Op):
    """(lam, w) -> (value, d value/d lam, d value/d w) of a collapsed model's marginal
    likelihood part, computed in numpy by `perform` (subclasses) with its analytic gradient."""
    __props__ = ()

    def __init__(self, c: Collapsed):
        self.c = c

    def make_node(self, lam, w):
        lam, w = pt.as_tensor_variable(lam), pt.as_tensor_variable(w)
        return Apply(self, [lam, w], [pt.dscalar(), lam.type(), w.type()])

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        return [g * outputs[1], g * outputs[2]]

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


class GaussianDensity(_Marginal):
    """(lam, w) -> (l, dl/dlam, dl/dw): l = log Normal(r; 0, S) + C/2 log 2 pi, the cell means'
    marginal density in its dual (C x C) form, S = D + X diag(lam) X', D = diag(1/w_g(c)).

    The same number as the primal form (`GaussianEvidence` and the terms beside it), for
    C^2 P work per gradient instead of P^3: the cheaper one when the design has fewer
    cells than theta has columns (interactions on a study of tens of configs). With
    a = S^-1 r:

        dl/dlam_i = 1/2 ((X'a)_i^2 - (X' S^-1 X)_ii)
        dl/dw_g   = -1/w_g^2 sum_{c in g} 1/2 (a_c^2 - (S^-1)_cc)
    """

    def perform(self, node, inputs, outputs):
        lam, w = inputs
        c = self.c
        x, group = c.cell_x, c.group_of_cell
        cov = (x * lam) @ x.T
        cov[np.diag_indices_from(cov)] += 1.0 / w[group]
        try:
            chol = scipy.linalg.cholesky(cov, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            outputs[0][0], outputs[1][0], outputs[2][0] = np.array(-np.inf), np.zeros_like(lam), np.zeros_like(w)
            return
        a = scipy.linalg.cho_solve((chol, True), c.cell_r, check_finite=False)
        inv = scipy.linalg.cho_solve((chol, True), np.eye(len(a)), check_finite=False)
        outputs[0][0] = np.array(-0.5 * c.cell_r @ a - np.log(np.diag(chol)).sum())
        outputs[1][0] = 0.5 * ((x.T @ a) ** 2 - np.einsum("ci,ci->i", inv @ x, x))
        per_cell = 0.5 * (a ** 2 - np.diag(inv))
        outputs[2][0] = -np.bincount(group, weights=per_cell, minlength=w.size) / w ** 2



class GaussianEvidence(_Marginal):
    """(lam, u) -> (h, dh/dlam, dh/du) with h = 1/2 b'A^-1 b - 1/2 log|A|, the part of the
    marginal likelihood that needs the (P x P) algebra; A = diag(1/lam) + sum_g u_g G_g,
    b = sum_g u_g cross_g (u: the cell-mean precisions w of `weights`).

    Written with numpy and an analytic gradient rather than as a PyTensor graph: the graph's
    gradient goes through triangular solves against the identity, ~20x the work, and
    every one of them is a separate Python-level LAPACK call. With mu = A^-1 b, S = A^-1:

        dh/dlam_i = (mu_i^2 + S_ii) / (2 lam_i^2)
        dh/du_g   = cross_g . mu - 1/2 mu' G_g mu - 1/2 tr(S G_g)
    """

    def perform(self, node, inputs, outputs):
        lam, u = inputs
        c = self.c
        a, b = system(c, lam, u)
        try:
            chol = scipy.linalg.cholesky(a, lower=True, check_finite=False)
        except np.linalg.LinAlgError:   # numerically singular: a point of zero density
            outputs[0][0], outputs[1][0], outputs[2][0] = np.array(-np.inf), np.zeros_like(lam), np.zeros_like(u)
            return
        mu = scipy.linalg.cho_solve((chol, True), b, check_finite=False)
        inv = scipy.linalg.cho_solve((chol, True), np.eye(lam.size), check_finite=False)
        lift_t = c.lift.transpose(0, 2, 1)                                        # (D, Q, P)
        w = lift_t @ mu                                                           # (D, Q)
        k = lift_t @ inv @ c.lift                                                 # (D, Q, Q)
        outer = 0.5 * (w[:, :, None] * w[:, None, :] + k)[c.dataset_of_group]      # (G, Q, Q)
        outputs[0][0] = np.array(0.5 * b @ mu - np.log(np.diag(chol)).sum())
        outputs[1][0] = (mu ** 2 + np.diag(inv)) / (2.0 * lam ** 2)
        outputs[2][0] = (np.einsum("gq,gq->g", c.cross, w[c.dataset_of_group])
                         - np.einsum("gij,gij->g", c.gram, outer))



def system(c: Collapsed, lam: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) = (diag(1/lam) + X'WX, X'W r) for prior variances `lam` (P,) and group
    weights `u` (G,), from the Q x Q group sums lifted once per dataset."""
    per_data = np.zeros((len(c.datasets), c.gram.shape[0]))
    per_data[c.dataset_of_group, np.arange(c.gram.shape[0])] = u                 # (D, G)
    n = np.tensordot(per_data, c.gram, axes=1)                                   # (D, Q, Q)
    a = (c.lift @ n @ c.lift.transpose(0, 2, 1)).sum(axis=0)                     # (P, P)
    a[np.diag_indices_from(a)] += 1.0 / lam
    b = np.einsum("dpq,dq->p", c.lift, per_data @ c.cross)
    return a, b


def conditional(c: Collapsed, lam: np.ndarray, w: np.ndarray):
    """(mean, chol of A) of theta | scales, data; numpy, one draw of the scales."""
    a, b = system(c, lam, w)
    chol = np.linalg.cholesky(a)
    mean = c.m0 + scipy.linalg.cho_solve((chol, True), b)
    return mean, chol


def draw_effects(c: Collapsed, posterior: xr.Dataset, seed: int, form: str | None = None) -> xr.Dataset:
    """theta and the config residuals drawn from their exact conditionals for every
    posterior draw of the scales.

    Returns a Dataset with `alpha` (chain, draw, dataset), `beta_<f>` (chain, draw,
    level_<f>), `gamma_<f>` (chain, draw, dataset, level_<f>) when D > 1,
    `interaction_<f>__<g>` (chain, draw, level_<f>, level_<g>) when interactions are on,
    and `residual_level_<f>` (chain, draw, dataset, level_<f>) (`whatmatters.population`);
    level coords are set by the caller.

    Primal form: theta from Normal(m0 + A^-1 b, A^-1); given theta, a cell's residual u_c
    from Normal(k_c (r_c - x_c theta), k_c s_c) with s_c = (v_g + sigma_seed_d^2) / m_c its
    mean's seed noise and k_c = sigma_config_d^2 / (sigma_config_d^2 + s_c). Dual form
    (cells x cells, Matheron's rule): draw theta0 ~ Normal(0, Lambda), u0 ~ Normal(0,
    sigma_config^2), e0 ~ Normal(0, s) and set a = S^-1 (r - X theta0 - u0 - e0); then
    theta = m0 + theta0 + Lambda X' a and u = u0 + sigma_config^2 a are exact joint draws.
    """
    rng = np.random.default_rng(seed)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    theta = np.empty((chains, draws, c.n_columns))
    residual = np.empty((chains, draws, c.cell_r.size))
    group = c.group_of_cell
    dual = (form or c.form) == "dual"

    def values(name, dims, default):
        if name not in posterior:
            return np.broadcast_to(default, (chains, draws, len(default)))
        return posterior[name].transpose("chain", "draw", *dims).values

    sigma = values("sigma", ["factor"], None)
    tau = values("tau", ["factor"], np.ones(len(c.factors)))
    sigma_seed, sigma_config = values("sigma_seed", ["dataset"], None), values("sigma_config", ["dataset"], None)
    sigma_int = values("sigma_interaction", ["pair"], np.zeros(len(c.pairs)))
    for i in range(chains):
        for j in range(draws):
            lam = prior_variance(c, sigma[i, j], tau[i, j], sigma_int[i, j], xp=np)
            u, w = weights(c, sigma_seed[i, j], sigma_config[i, j])
            noise = 1.0 / (u[group] * c.seeds[group])                    # s_c
            config = sigma_config[i, j][c.cell_data] ** 2
            if dual:
                x = c.cell_x
                cov = (x * lam) @ x.T
                cov[np.diag_indices_from(cov)] += noise + config
                theta0 = rng.standard_normal(c.n_columns) * np.sqrt(lam)
                u0 = rng.standard_normal(config.size) * np.sqrt(config)
                e0 = rng.standard_normal(config.size) * np.sqrt(noise)
                a = scipy.linalg.cho_solve(scipy.linalg.cho_factor(cov, lower=True), c.cell_r - x @ theta0 - u0 - e0)
                theta[i, j] = c.m0 + theta0 + lam * (x.T @ a)
                residual[i, j] = u0 + config * a
                continue
            mean, chol = conditional(c, lam, w)
            # theta = mean + L'^-1 z has covariance (L L')^-1 = A^-1
            theta[i, j] = mean + scipy.linalg.solve_triangular(chol, rng.standard_normal(c.n_columns),
                                                                lower=True, trans="T")
            shrink = config / (config + noise)                            # k_c
            fitted = c.cell_x @ (theta[i, j] - c.m0)
            residual[i, j] = (shrink * (c.cell_r - fitted)
                              + np.sqrt(shrink * noise) * rng.standard_normal(c.cell_r.size))
    effects = effects_from_theta(c, theta)
    means = population.residual_level_means(residual, c.cell_levels, c.cell_data, sigma_config, c.n_levels, rng)
    for f, value in zip(c.factors, means):
        effects[f"residual_level_{f}"] = xr.DataArray(value, dims=("chain", "draw", "dataset", level_dim(f)))
    return effects


def effects_from_theta(c: Collapsed, theta: np.ndarray) -> xr.Dataset:
    """Level-space effects from (chain, draw, P) contrast-space draws of theta."""
    bases = [zero_sum_basis(n) for n in c.n_levels]
    basis = scipy.linalg.block_diag(*bases)                                      # (sum L, S)
    first = np.concatenate([[0], np.cumsum(c.n_levels)[:-1]])
    cd = ("chain", "draw")
    out = {"alpha": xr.DataArray(theta[..., c.blocks["alpha"]], dims=(*cd, "dataset"))}
    beta = theta[..., c.blocks["beta"]] @ basis.T                                # (chain, draw, sum L)
    n_data, n_contrasts = len(c.datasets), basis.shape[1]
    if "gamma" in c.blocks:
        g = theta[..., c.blocks["gamma"]].reshape(*theta.shape[:2], n_data - 1, n_contrasts)
        gamma = np.einsum("dj,cnjs,ls->cndl", zero_sum_basis(n_data), g, basis)      # (chain, draw, D, sum L)
    for f, start, size in zip(c.factors, first, c.n_levels):
        out[f"beta_{f}"] = xr.DataArray(beta[..., start:start + size], dims=(*cd, level_dim(f)))
        if "gamma" in c.blocks:
            out[f"gamma_{f}"] = xr.DataArray(gamma[..., start:start + size], dims=(*cd, "dataset", level_dim(f)))
    if c.pairs:
        index = {f: i for i, f in enumerate(c.factors)}
        col = c.blocks["delta"].start
        for f, g in c.pairs:
            bf, bg = bases[index[f]], bases[index[g]]
            size = bf.shape[1] * bg.shape[1]
            z = theta[..., col:col + size].reshape(*theta.shape[:2], bf.shape[1], bg.shape[1])
            col += size
            out[interaction_name(f, g)] = xr.DataArray(
                np.einsum("ia,cnab,jb->cnij", bf, z, bg), dims=(*cd, level_dim(f), level_dim(g)))
    return xr.Dataset(out)


def fit(runs: pd.DataFrame, spec: dict) -> tuple[az.InferenceData, dict]:
    """Sample this model's posterior for a checked run table (`whatmatters.fitting.fit`).

    Returns (idata, details): the scales sampled by NUTS plus theta drawn from its exact
    conditional per draw (`draw_effects`, level coords set), and the cell statistics that
    the fit's provenance records.
    """
    s = spec["sampler"]
    level_codes, dataset_codes = codes(runs, spec)
    outcome = spec["outcome"]
    y, v = outcomes.response(runs, outcome)
    asked = spec["model"]["interactions"]

    def prepared(interactions: bool) -> Collapsed:
        return prepare(level_codes, dataset_codes, y, v,
                       [len(spec["factors"][f]["levels"]) for f in spec["factors"]], list(spec["factors"]),
                       list(spec["datasets"]), interactions=interactions,
                       centre=outcomes.centre(runs, outcome, dataset_codes, len(spec["datasets"])))

    c = prepared(bool(asked))
    why = "asked" if asked is True else "not asked"
    if asked == "auto":
        size = min(c.cell_r.size, c.n_columns)
        why = f"auto: the exact algebra is {size} wide ({'<=' if size <= AUTO_PAIRS_MAX else '>'} {AUTO_PAIRS_MAX})"
        if size > AUTO_PAIRS_MAX:
            c = prepared(False)
    idata = sample(build_model(c), s)
    effects = draw_effects(c, idata.posterior, seed=int(s["seed"]))
    effects = effects.assign_coords({"chain": idata.posterior["chain"], "draw": idata.posterior["draw"],
                                     "dataset": list(spec["datasets"]),
                                     **{level_dim(f): list(spec["factors"][f]["levels"]) for f in spec["factors"]}})
    idata.posterior = idata.posterior.merge(effects)
    return idata, {"interactions": bool(c.pairs), "interactions_why": why, "cells": int(c.group_of_cell.size), "configs": int(np.unique(c.cell_levels, axis=0).shape[0]),
                   "form": c.form,
                   "weight_groups": int(c.variance.size),
                   "max_variance_shift": round(c.max_variance_shift, 4), "theta_columns": c.n_columns}
