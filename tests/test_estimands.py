"""estimands: the logit-scale importance is the finite-population sd of the level effects, and
every estimand of the registry is computed per scope and described (one entry in
ESTIMANDS and its computation in add_estimands, this parametrized test)."""

import arviz as az
import numpy as np
import pytest
import xarray as xr

from whatmatters import estimands as E
from whatmatters.outcomes import OUTCOMES


def test_importance_is_finite_population_sd():
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


def _posterior_with_interactions():
    """One draw, two datasets, factors a (3 levels) and b (2), their interaction."""
    rng = np.random.default_rng(0)
    return xr.Dataset({
        "alpha": (("chain", "draw", "dataset"), np.array([[[1.0, 2.0]]])),
        "beta_a": (("chain", "draw", "level_a"), np.array([[[-1.0, 0.2, 0.8]]])),
        "gamma_a": (("chain", "draw", "dataset", "level_a"), np.array([[[[0.1, -0.1, 0.0], [-0.1, 0.1, 0.0]]]])),
        "beta_b": (("chain", "draw", "level_b"), np.array([[[0.4, -0.4]]])),
        "interaction_a__b": (("chain", "draw", "level_a", "level_b"), rng.normal(0, 0.2, (1, 1, 3, 2))),
    }, coords={"dataset": ["d1", "d2"], "level_a": ["x", "y", "z"], "level_b": ["p", "q"]})


@pytest.mark.parametrize("name", list(E.ESTIMANDS))
def test_every_estimand_is_computed_per_scope_and_described(name):
    spec = {"factors": {"a": {"levels": ["x", "y", "z"], "baseline": "x"}, "b": {"levels": ["p", "q"], "baseline": "q"}},
            "outcome": {"name": "test_accuracy", **OUTCOMES["test_accuracy"]}}
    post = _posterior_with_interactions()
    grid = np.array([[i, j] for i in range(3) for j in range(2)])
    E.add_estimands(post, spec, np.vstack([grid, grid]), np.repeat([0, 1], len(grid)))
    assert name in E.present(post)
    assert post[name].dims == ("chain", "draw", "factor", "dataset")
    assert post[f"{name}_pooled"].dims == ("chain", "draw", "factor")
    assert np.isfinite(post[name]).all() and (post[name] >= 0).all()
    for outcome in ("test_accuracy", "final_train_loss"):
        label, unit = E.describe(name, {"name": outcome, **OUTCOMES[outcome]})
        assert label and unit


def test_pair_importance_is_the_sd_of_the_interaction_over_its_grid_and_is_summarized():
    spec = {"factors": {"a": {"levels": ["x", "y", "z"], "baseline": "x"}, "b": {"levels": ["p", "q"], "baseline": "q"}},
            "outcome": {"name": "test_accuracy", **OUTCOMES["test_accuracy"]}}
    post = _posterior_with_interactions()
    grid = np.array([[i, j] for i in range(3) for j in range(2)])
    E.add_estimands(post, spec, np.vstack([grid, grid]), np.repeat([0, 1], len(grid)))
    delta = post["interaction_a__b"].values.ravel()
    assert post["pair_importance"].dims == ("chain", "draw", "pair")
    assert post["pair_importance"].sel(pair="a:b").item() == pytest.approx(np.sqrt((delta ** 2).sum() / 5))
    from whatmatters.summarize import interactions_table
    table = interactions_table(az.InferenceData(posterior=post))
    assert table["pair"].tolist() == ["a:b"]
    assert table.loc[0, "mean"] == pytest.approx(post["pair_importance"].item())
