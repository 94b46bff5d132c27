r"""The study's population of configs, and the config residual's mean over it.

The importance estimand (docs/model.md) is defined on the full factorial of the study's
levels, every config equally weighted; a design runs a fraction of it. Each config c of
dataset d deviates from the additive prediction by a residual u_cd (`sigma_config_d`).
The mean residual over the population's configs at level l of factor f,

    R_{f,d}[l] = ( sum_{run configs c, l_f(c) = l} u_cd  +  sum_{configs not run} u_cd ) / N_{f,l},

(N_{f,l} = N / L_f configs of the population have f at level l) is part of that level's
population mean. The run configs' residuals come from the posterior; those not run are
fresh draws from Normal(0, sigma_config_d), so their sum is Normal(0, (N_{f,l} - n) s^2).
On a full factorial every config is run and R is the observed level mean of residuals (so
the population effects are the observed level means exactly); on a small fraction of a big
grid R is near zero and the level effects carry the estimate.
"""

from __future__ import annotations

import numpy as np


def residual_level_means(residual: np.ndarray, cell_levels: np.ndarray, cell_data: np.ndarray,
                         config_sd: np.ndarray, n_levels: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """R_{f,d}[l] per factor, each (chain, draw, D, L_f).

    Args:
      residual: (chain, draw, C) posterior draws of the run cells' residuals u_c.
      cell_levels: (C, F) level codes; cell_data: (C,) dataset codes (cells are distinct
        configs within a dataset).
      config_sd: (chain, draw, D) sigma_config draws.
    """
    size = float(np.prod(np.asarray(n_levels, dtype=float)))
    n_data = config_sd.shape[-1]
    out = []
    for i, n in enumerate(n_levels):
        per_level = size / n
        total = np.zeros(residual.shape[:2] + (n_data, n))
        seen = np.zeros((n_data, n))
        np.add.at(seen, (cell_data, cell_levels[:, i]), 1.0)
        for d in range(n_data):
            for level in range(n):
                mine = (cell_data == d) & (cell_levels[:, i] == level)
                total[:, :, d, level] = residual[:, :, mine].sum(axis=-1)
        unseen = np.maximum(per_level - seen, 0.0)                                   # (D, L)
        total += rng.standard_normal(total.shape) * config_sd[..., None] * np.sqrt(unseen)
        out.append(total / per_level)
    return out
