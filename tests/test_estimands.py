"""estimands: the logit-scale importance is the finite-population sd of the level effects."""

import numpy as np
import pytest

from whatmatters import estimands as E


def test_importance_is_finite_population_sd():
    import arviz as az

    spec = {"factors": {"a": {"levels": ["x", "y", "z"], "baseline": "x"}, "b": {"levels": ["p", "q"], "baseline": "p"}}}
    beta_a = np.array([1.0, 0.0, -1.0])
    gamma_a = np.array([[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]])   # (dataset, level)
    idata = az.from_dict(
        posterior={"alpha": np.zeros((1, 1, 2)), "beta_a": beta_a[None, None], "gamma_a": gamma_a[None, None],
                   "beta_b": np.array([0.3, -0.3])[None, None], "gamma_b": np.zeros((1, 1, 2, 2))},
        coords={"dataset": ["d1", "d2"], "level_a": ["x", "y", "z"], "level_b": ["p", "q"]},
        dims={"alpha": ["dataset"], "beta_a": ["level_a"], "gamma_a": ["dataset", "level_a"],
              "beta_b": ["level_b"], "gamma_b": ["dataset", "level_b"]},
    )
    grid = np.array([[i, j] for i in range(3) for j in range(2)])             # every config, on both datasets
    E.add_estimands(idata.posterior, spec, np.vstack([grid, grid]), np.repeat([0, 1], len(grid)))
    imp = idata.posterior["importance"]
    assert imp.dims == ("chain", "draw", "factor", "dataset")
    assert imp.sel(factor="a", dataset="d1").item() == pytest.approx(np.std([1.5, -0.5, -1.0], ddof=1))
    assert imp.sel(factor="a", dataset="d2").item() == pytest.approx(np.std([0.5, 0.5, -1.0], ddof=1))
    assert imp.sel(factor="b", dataset="d2").item() == pytest.approx(np.std([0.3, -0.3], ddof=1))
    assert idata.posterior["importance_pooled"].sel(factor="a").item() == pytest.approx(
        imp.sel(factor="a").mean().item())
