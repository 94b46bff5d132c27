"""hypotheses: exact answers on hand-made posteriors, and Kendall's tau checked against scipy."""

import numpy as np
import pytest
import xarray as xr
from scipy.stats import kendalltau

from whatmatters.errors import WhatmattersError
from whatmatters.hypotheses import evaluate, table

ABC = {"name": "abc", "order": ["a", "b", "c"], "text": "a > b > c"}


def posterior(rows, factors=("a", "b", "c"), chains=2) -> xr.DataArray:
    """(chain, draw, factor) importance from one row of factor values per draw."""
    rows = np.asarray(rows, dtype=float)
    return xr.DataArray(rows.reshape(chains, len(rows) // chains, len(factors)),
                        dims=("chain", "draw", "factor"), coords={"factor": list(factors)})


# 10 draws: a > b > c in exactly 3; in the other 7, b > a > c (tau = (-1 + 1 + 1) / 3 = 1/3).
HOLDS_30 = [[3, 2, 1]] * 3 + [[2, 3, 1]] * 7


def test_stated_order_holding_in_30_percent_of_draws():
    r = evaluate(posterior(HOLDS_30), [ABC])["abc"]
    assert r["order"] == ["a", "b", "c"] and r["text"] == "a > b > c"
    assert r["p_holds"] == pytest.approx(0.3)
    assert r["pairs"] == pytest.approx({"a > b": 0.3, "a > c": 1.0, "b > c": 1.0})
    tau = r["kendall_tau"]
    assert tau["mean"] == pytest.approx(0.3 * 1 + 0.7 / 3)
    assert tau["p_positive"] == pytest.approx(1.0)
    assert (tau["hdi_5"], tau["hdi_95"]) == pytest.approx((1 / 3, 1.0))  # 90% needs both values


def test_pairs_cover_every_implied_pair_not_only_adjacent_ones():
    order = ["a", "b", "c", "d"]
    r = evaluate(posterior([[4, 3, 2, 1]] * 2, factors=order), [{"name": "h", "order": order}])["h"]
    assert list(r["pairs"]) == ["a > b", "a > c", "a > d", "b > c", "b > d", "c > d"]
    assert r["text"] == "a > b > c > d"   # filled in when the caller did not resolve it


def test_a_posterior_that_always_reverses_the_order():
    r = evaluate(posterior([[1, 2, 3], [0.1, 0.5, 0.9]] * 3), [ABC])["abc"]
    assert r["p_holds"] == 0
    assert set(r["pairs"].values()) == {0.0}
    assert r["kendall_tau"] == pytest.approx({"mean": -1.0, "hdi_5": -1.0, "hdi_95": -1.0, "p_positive": 0.0})


def test_two_factor_tau_is_plus_or_minus_one():
    r = evaluate(posterior([[2, 1], [1, 2], [2, 1], [3, 1]], factors=("a", "b")),
                 [{"name": "ab", "order": ["a", "b"]}])["ab"]
    assert r["p_holds"] == r["kendall_tau"]["p_positive"] == pytest.approx(0.75)
    assert r["kendall_tau"]["mean"] == pytest.approx(0.75 - 0.25)
    assert {r["kendall_tau"]["hdi_5"], r["kendall_tau"]["hdi_95"]} <= {-1.0, 1.0}


@pytest.mark.parametrize("seed", range(5))
def test_tau_agrees_with_scipy_per_draw(seed):
    rng = np.random.default_rng(seed)
    factors = ["a", "b", "c", "d", "e"]
    order = list(rng.permutation(factors)[:4])          # a partial chain, in a random order
    draw = rng.normal(size=len(factors))
    r = evaluate(posterior([draw], factors=factors, chains=1), [{"name": "h", "order": order}])["h"]
    stated = np.arange(len(order), 0, -1)               # first named = most important
    expected = kendalltau(stated, draw[[factors.index(f) for f in order]]).statistic
    assert r["kendall_tau"]["mean"] == pytest.approx(expected)


def test_tau_mean_over_many_draws_matches_scipy_and_its_interval_is_ordered():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(400, 4)) + [1.5, 1.0, 0.5, 0.0]    # a > b > c > d on average
    order = ["a", "b", "c", "d"]
    r = evaluate(posterior(rows, factors=order), [{"name": "h", "order": order}])["h"]["kendall_tau"]
    expected = np.mean([kendalltau([4, 3, 2, 1], row).statistic for row in rows])
    assert r["mean"] == pytest.approx(expected)
    assert -1 <= r["hdi_5"] <= r["hdi_95"] <= 1
    assert 0 < r["mean"] and 0.5 < r["p_positive"] <= 1


def test_unknown_factor_is_named_with_the_known_ones():
    with pytest.raises(WhatmattersError, match=r"'abc': factors \['z'\] are not in the posterior; it has: a, b, c"):
        evaluate(posterior(HOLDS_30), [{"name": "abc", "order": ["a", "z"]}])


def test_table_has_one_row_per_hypothesis_and_scope():
    imp = posterior(HOLDS_30)
    hyps = [ABC, {"name": "ca", "order": ["c", "a"], "text": "c > a"}]
    results = {"pooled": evaluate(imp, hyps), "d1": evaluate(imp, hyps)}
    t = table(results)
    assert list(t.columns) == ["hypothesis", "text", "dataset", "p_holds", "tau_mean", "tau_hdi_5",
                               "tau_hdi_95", "p_tau_positive"]
    assert list(zip(t["hypothesis"], t["dataset"])) == [("abc", "pooled"), ("abc", "d1"),
                                                        ("ca", "pooled"), ("ca", "d1")]
    row = t.set_index(["hypothesis", "dataset"]).loc[("ca", "d1")]
    assert row["text"] == "c > a" and row["p_holds"] == 0 and row["tau_mean"] == -1
