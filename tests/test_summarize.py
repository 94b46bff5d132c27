"""summarize: exact answers on tiny hand-made posteriors, plus property checks."""

import json
import logging

import arviz as az
import numpy as np
import pytest

from whatmatters import summarize as S
from whatmatters.errors import WhatmattersError

FACTORS = ["a", "b", "c"]

# 2 chains x 5 draws of dataset d1's importance (a, b, c): orderings are known per draw.
D1 = np.array([[3, 2, 1]] * 6      # draws 0-5: a > b > c
              + [[2, 3, 1]] * 3    # draws 6-8: b > a > c
              + [[1, 2, 3]] * 1,   # draw 9:    c > b > a
              dtype=float)
D2 = np.tile([0.1, 0.2, 0.3], (10, 1))   # dataset d2: always c > b > a


def make_idata(d1=D1, d2=D2, chains=2, diverging=None, extra=None):
    """importance (chain, draw, factor, dataset) and importance_pooled from per-draw rows."""
    draws = len(d1) // chains
    imp = np.stack([d1, d2], axis=-1).reshape(chains, draws, len(FACTORS), 2)
    posterior = {"importance": imp, "importance_pooled": imp.mean(-1), **(extra or {})}
    if diverging is None:
        diverging = np.zeros((chains, draws), dtype=bool)
    return az.from_dict(
        posterior=posterior, sample_stats={"diverging": diverging},
        coords={"factor": FACTORS, "dataset": ["d1", "d2"]},
        dims={"importance": ["factor", "dataset"], "importance_pooled": ["factor"]},
    )


@pytest.fixture(scope="module")
def idata():
    return make_idata()


def test_ranks_are_permutations_and_rank_1_is_largest(idata):
    r = S.ranks(idata.posterior["importance_pooled"])
    assert sorted(r.dims) == ["chain", "draw", "factor"]
    assert (np.sort(r.transpose(..., "factor").values, axis=-1) == [1, 2, 3]).all()
    assert r.sel(chain=0, draw=0).values.tolist() == [1, 2, 3]     # a > b > c
    assert r.sel(chain=1, draw=4).values.tolist() == [3, 2, 1]     # c > b > a


def test_rank_probabilities_exact(idata):
    probs = S.rank_probabilities(idata)
    assert list(probs.columns) == ["factor", "dataset", "rank", "probability"]
    pooled = probs[probs.dataset == "pooled"].pivot(index="factor", columns="rank", values="probability")
    np.testing.assert_allclose(pooled.loc[FACTORS].values, [[0.6, 0.3, 0.1], [0.3, 0.7, 0.0], [0.1, 0.0, 0.9]])
    d2 = probs[probs.dataset == "d2"].pivot(index="factor", columns="rank", values="probability")
    np.testing.assert_allclose(d2.loc[FACTORS].values, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])


def test_rank_probabilities_doubly_stochastic():
    rng = np.random.default_rng(0)
    probs = S.rank_probabilities(make_idata(rng.gamma(2, size=(40, 3)), rng.gamma(2, size=(40, 3))))
    for _, scope in probs.groupby("dataset"):
        np.testing.assert_allclose(scope.groupby("factor").probability.sum(), 1.0)
        np.testing.assert_allclose(scope.groupby("rank").probability.sum(), 1.0)
    assert set(probs.dataset) == {"pooled", "d1", "d2"}


def test_importance_table_exact(idata):
    table = S.importance_table(idata)
    assert list(table.columns) == ["factor", "dataset", "mean", "sd", "hdi_5", "hdi_95", "p_rank_1"]
    assert table.dataset.tolist() == ["pooled"] * 3 + ["d1"] * 3 + ["d2"] * 3
    row = table.set_index(["dataset", "factor"]).loc[("pooled", "a")]
    assert row["mean"] == pytest.approx((6 * 1.55 + 3 * 1.05 + 0.55) / 10)
    assert row["p_rank_1"] == pytest.approx(0.6)
    assert table.set_index(["dataset", "factor"]).loc[("d2", "c"), "p_rank_1"] == 1.0


def test_importance_interval_contains_mean():
    rng = np.random.default_rng(1)
    table = S.importance_table(make_idata(rng.normal(5, 1, (400, 3)), rng.normal(5, 1, (400, 3))))
    assert ((table.hdi_5 <= table["mean"]) & (table["mean"] <= table.hdi_95)).all()
    assert (table.sd > 0).all()


def test_hypotheses_exact(idata):
    out = S.hypothesis_probabilities(idata, [{"name": "abc", "order": ["a", "b", "c"]},
                                             {"name": "ca", "order": ["c", "a"]}])
    pooled = out["abc"]["scopes"]["pooled"]
    assert pooled["p_holds"] == pytest.approx(0.6)
    assert {k: pooled["pairs"][k] for k in ("a > b", "b > c")} == pytest.approx({"a > b": 0.6, "b > c": 0.9})
    assert set(pooled["pairs"]) == {"a > b", "a > c", "b > c"}               # every implied pair
    assert -1 <= pooled["kendall_tau"]["mean"] <= 1
    assert out["abc"]["scopes"]["d2"]["p_holds"] == 0.0
    assert out["ca"]["scopes"]["pooled"]["p_holds"] == pytest.approx(0.1)
    assert out["ca"]["scopes"]["d2"]["p_holds"] == 1.0
    assert list(out["abc"]["scopes"]) == ["pooled", "d1", "d2"]


def test_hypothesis_known_fraction():
    # 37 of 100 draws satisfy a > b > c; the others break it in one of two ways.
    rows = [[3, 2, 1]] * 37 + [[1, 2, 3]] * 40 + [[3, 1, 2]] * 23
    out = S.hypothesis_probabilities(make_idata(np.array(rows, float), np.array(rows, float)),
                                     [{"name": "h", "order": ["a", "b", "c"]}])
    assert out["h"]["scopes"]["d1"]["p_holds"] == pytest.approx(0.37)
    assert out["h"]["scopes"]["d1"]["pairs"]["b > c"] == pytest.approx(0.37)
    assert out["h"]["scopes"]["d1"]["pairs"]["a > b"] == pytest.approx(0.60)


@pytest.mark.parametrize("order", [["a", "zzz"], ["a"], ["a", "a"]])
def test_hypothesis_rejects_bad_orders(idata, order):
    with pytest.raises(WhatmattersError, match="order|not in the posterior"):
        S.hypothesis_probabilities(idata, [{"name": "bad", "order": order}])


def _chains(rng, chains, draws, shift=0.0):
    """Independent normal draws; chain c is offset by c * shift."""
    return rng.normal(size=(chains, draws)) + shift * np.arange(chains)[:, None]


def test_diagnostics_good_fit():
    rng = np.random.default_rng(2)
    imp = rng.gamma(5, size=(4 * 1000, 3))
    diag = S.diagnostics(make_idata(imp, imp + 1, chains=4, extra={"theta": _chains(rng, 4, 1000)}))
    assert diag["ok"], diag["problems"]
    assert diag["divergences"] == 0 and diag["max_rhat"] <= 1.01
    assert diag["min_ess_bulk"] > 1000 and diag["problems"] == [] and diag["warnings"] == []
    assert {(r["factor"], r["dataset"]) for r in diag["importance"]} == {
        (f, s) for f in FACTORS for s in ("pooled", "d1", "d2")}


def test_diagnostics_flags_disagreeing_chains():
    rng = np.random.default_rng(3)
    imp = rng.gamma(5, size=(2 * 500, 3))
    diag = S.diagnostics(make_idata(imp, imp, extra={"theta": _chains(rng, 2, 500, shift=3.0)}))
    assert not diag["ok"]
    assert diag["max_rhat"] > 1.01 and diag["worst_rhat_variable"] == "theta"
    assert any("R-hat" in p for p in diag["problems"])


def test_diagnostics_flags_divergences_and_one_chain():
    rng = np.random.default_rng(4)
    imp = rng.gamma(5, size=(2 * 500, 3))
    diverging = np.zeros((2, 500), bool)
    diverging[1, :7] = True
    diag = S.diagnostics(make_idata(imp, imp, diverging=diverging))
    assert not diag["ok"] and diag["divergences"] == 7
    one = S.diagnostics(make_idata(imp, imp, chains=1))
    assert not one["ok"] and any("2 chains" in p for p in one["problems"])


def test_write_summaries(tmp_path, idata, caplog):
    spec = {"outcome": {"name": "test_accuracy"}, "hypotheses": [{"name": "abc", "order": ["a", "b", "c"]}]}
    with caplog.at_level(logging.WARNING):
        paths = S.write_summaries(idata, spec, tmp_path)        # 10 draws: R-hat is not fine
    for name in ("importance.csv", "ranks.csv", "estimands.csv", "estimand_agreement.csv", "hypotheses.json",
                 "hypotheses.csv", "diagnostics.json", "provenance.json"):
        assert (tmp_path / name).is_file() and paths[name] == tmp_path / name
    hyp = json.loads((tmp_path / "hypotheses.json").read_text())
    assert hyp["hypotheses"]["abc"]["scopes"]["pooled"]["p_holds"] == pytest.approx(0.6)
    assert hyp["provenance"]["outcome"] == "test_accuracy" and "code_revision" in hyp["provenance"]
    diag = json.loads((tmp_path / "diagnostics.json").read_text())
    assert "provenance" in diag and isinstance(diag["ok"], bool)
    if not diag["ok"]:
        assert "SAMPLING UNHEALTHY" in caplog.text
    assert not list(tmp_path.glob(".*.tmp"))                     # atomic writes left no debris
