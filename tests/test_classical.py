"""Classical eta^2 cross-check: planted effects are recovered, compare() flags disagreement."""

import itertools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from whatmatters.classical import compare, empirical_logit, eta_squared, lack_of_fit
from whatmatters.errors import WhatmattersError

# Planted logit effects per level: sd 1.0, 0.3 and 0.0. `loss` and `class` also check that
# factor names which are Python keywords or formula functions are safe.
LEVELS = {"optimizer": ["sgd", "adam", "adamw", "lion"], "loss": ["ce", "focal", "mse"], "class": ["a", "b", "c"]}
EFFECTS = {
    "optimizer": np.array([-1.3, -0.4, 0.4, 1.3]),   # sd ~ 0.98
    "loss": np.array([-0.3, 0.0, 0.3]),             # sd 0.3
    "class": np.zeros(3),                           # null
}
N_TRIALS = 1000
SEEDS = 3


def spec_for(datasets, levels=LEVELS):
    return {
        "factors": {f: {"levels": list(ls), "baseline": ls[0]} for f, ls in levels.items()},
        "datasets": list(datasets),
        "outcome": {"name": "test_accuracy", "successes": "n_test_correct", "trials": "n_test"},
    }


def synthetic_runs(dataset, effects, rng, intercept=1.0, seed_sd=0.05):
    """Full factorial x SEEDS runs with binomial counts around logit = intercept + sum of effects."""
    rows = []
    for cell in itertools.product(*(range(len(ls)) for ls in LEVELS.values())):
        for seed in range(SEEDS):
            logit = intercept + sum(effects[f][i] for f, i in zip(LEVELS, cell)) + rng.normal(0, seed_sd)
            k = rng.binomial(N_TRIALS, 1 / (1 + np.exp(-logit)))
            rows.append({"dataset": dataset, "seed": seed, **{f: LEVELS[f][i] for f, i in zip(LEVELS, cell)},
                         "n_test_correct": k, "n_test": N_TRIALS})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def one_dataset():
    return synthetic_runs("mnist1d", EFFECTS, np.random.default_rng(0))


@pytest.fixture(scope="module")
def two_datasets():
    rng = np.random.default_rng(1)
    # On digits the loss matters most and the optimizer second: per-dataset orders differ.
    digits = {"optimizer": 0.5 * EFFECTS["optimizer"], "loss": np.array([-1.5, 0.0, 1.5]), "class": np.zeros(3)}
    return pd.concat([synthetic_runs("mnist1d", EFFECTS, rng), synthetic_runs("digits", digits, rng, intercept=2.0)],
                     ignore_index=True)


def order(result, scope):
    return result[result["dataset"] == scope].sort_values("rank")["factor"].tolist()


def test_empirical_logit_is_finite_at_the_edges():
    np.testing.assert_allclose(empirical_logit([0, 5, 10], [10, 10, 10]),
                               [np.log(0.5 / 10.5), 0.0, np.log(10.5 / 0.5)])


def test_recovers_planted_order_one_dataset(one_dataset):
    result = eta_squared(one_dataset, spec_for(["mnist1d"]))
    assert list(result.columns) == ["factor", "dataset", "eta_sq", "partial_eta_sq", "rank"]
    assert result["dataset"].tolist() == ["pooled"] * 3 + ["mnist1d"] * 3
    assert result["factor"].tolist() == list(LEVELS) * 2               # spec order within each scope
    for scope in ["pooled", "mnist1d"]:
        assert order(result, scope) == ["optimizer", "loss", "class"]
        rows = result[result["dataset"] == scope].set_index("factor")
        assert rows.loc["class", "eta_sq"] < 0.01
        assert rows.loc["optimizer", "eta_sq"] > 0.8
        assert rows["eta_sq"].sum() <= 1
        assert (rows["partial_eta_sq"] >= rows["eta_sq"]).all()
        assert sorted(rows["rank"]) == [1, 2, 3]


def test_balanced_design_matches_group_means(one_dataset):
    # Full factorial: Type II SS_f = (runs per level) * sum_l (mean_l - grand mean)^2.
    y = pd.Series(empirical_logit(one_dataset["n_test_correct"], one_dataset["n_test"]))
    ss_total = ((y - y.mean()) ** 2).sum()
    result = eta_squared(one_dataset, spec_for(["mnist1d"])).query("dataset == 'mnist1d'").set_index("factor")
    ss = {f: (y.groupby(one_dataset[f]).mean().sub(y.mean()) ** 2).sum() * len(y) / len(LEVELS[f]) for f in LEVELS}
    ss_resid = ss_total - sum(ss.values())
    for f in LEVELS:
        assert result.loc[f, "eta_sq"] == pytest.approx(ss[f] / ss_total, rel=1e-9)
        assert result.loc[f, "partial_eta_sq"] == pytest.approx(ss[f] / (ss[f] + ss_resid), rel=1e-9)


def test_two_datasets_rank_per_dataset_and_pooled(two_datasets):
    result = eta_squared(two_datasets, spec_for(["mnist1d", "digits"]))
    assert result["dataset"].unique().tolist() == ["pooled", "mnist1d", "digits"]
    assert order(result, "mnist1d") == ["optimizer", "loss", "class"]
    assert order(result, "digits") == ["loss", "optimizer", "class"]
    # Pooled: loss (sd 0.3 and 1.2) outweighs optimizer (sd ~1.0 and ~0.5) on the shared total.
    assert order(result, "pooled") == ["loss", "optimizer", "class"]
    pooled = result[result["dataset"] == "pooled"]
    assert pooled["eta_sq"].sum() <= 1                      # the dataset effect takes its own share
    assert pooled.set_index("factor").loc["class", "eta_sq"] < 0.01


def test_levels_missing_from_a_dataset(two_datasets):
    # digits never ran `lion`, and ran `class` at one level only.
    runs = two_datasets[~((two_datasets["dataset"] == "digits")
                          & ((two_datasets["optimizer"] == "lion") | (two_datasets["class"] != "a")))]
    result = eta_squared(runs, spec_for(["mnist1d", "digits"]))
    digits = result[result["dataset"] == "digits"].set_index("factor")
    assert digits.loc["class", "eta_sq"] == 0.0              # constant there: explains nothing
    assert order(result, "digits") == ["loss", "optimizer", "class"]
    assert np.isfinite(result[["eta_sq", "partial_eta_sq"]].to_numpy()).all()


def test_too_few_runs_names_the_scope(two_datasets):
    # digits keeps 6 runs; 1 + 3 + 2 + 2 = 8 parameters.
    runs = pd.concat([two_datasets[two_datasets["dataset"] == "mnist1d"],
                      two_datasets[two_datasets["dataset"] == "digits"].iloc[[0, 1, 14, 40, 80, 100]]])
    with pytest.raises(WhatmattersError, match=r"scope 'digits' has 6 runs but .* 8 parameters"):
        eta_squared(runs, spec_for(["mnist1d", "digits"]))


def test_confounded_factors_are_an_error(one_dataset):
    # Keep only runs where `class` follows `loss` (ce-a, focal-b, mse-c): their effects are aliased.
    paired = one_dataset["loss"].map(dict(zip(LEVELS["loss"], LEVELS["class"]))) == one_dataset["class"]
    with pytest.raises(WhatmattersError, match=r"scope 'pooled' some factors are confounded"):
        eta_squared(one_dataset[paired], spec_for(["mnist1d"]))


def test_unknown_level_is_an_error(one_dataset):
    runs = one_dataset.assign(loss=one_dataset["loss"].replace("mse", "hinge"))
    with pytest.raises(WhatmattersError, match=r"'loss' has levels \['hinge'\]"):
        eta_squared(runs, spec_for(["mnist1d"]))


def rank_draws(ranks_by_factor):
    """{factor: (draw,) ranks} -> DataArray (chain=1, draw, factor)."""
    factors = list(ranks_by_factor)
    data = np.stack([ranks_by_factor[f] for f in factors], axis=-1)[None]
    return xr.DataArray(data, dims=("chain", "draw", "factor"), coords={"factor": factors})


def classical_table(scope, ranks):
    """A hand-written `eta_squared` result: eta_sq decreasing with rank."""
    return pd.DataFrame({"factor": list(ranks), "dataset": scope, "eta_sq": [1.0 / r for r in ranks.values()],
                         "partial_eta_sq": 0.0, "rank": list(ranks.values())})


def test_compare_flags_only_ranks_outside_the_interval():
    # 100 draws: a is always first; b is second in 97 draws, c third in 97 (90% interval [2, 2] / [3, 3]).
    b = np.array([2] * 97 + [3] * 3)
    bayes = {"pooled": rank_draws({"a": np.ones(100, int), "b": b, "c": 5 - b})}
    same = compare(bayes, classical_table("pooled", {"a": 1, "b": 2, "c": 3})).set_index("factor")
    assert same["agrees"].all()
    assert same["kendall_tau"].tolist() == [1.0] * 3
    assert same.loc["b", "bayes_mean_rank"] == pytest.approx(2.03)
    assert (same.loc["b", "bayes_rank_low"], same.loc["b", "bayes_rank_high"]) == (2, 2)

    swapped = compare(bayes, classical_table("pooled", {"a": 1, "b": 3, "c": 2})).set_index("factor")
    assert swapped["agrees"].to_dict() == {"a": True, "b": False, "c": False}
    assert swapped.loc["a", "kendall_tau"] == pytest.approx(1 / 3)

    # A 99% interval reaches the 3 draws of b in third place: now it agrees.
    wide = compare(bayes, classical_table("pooled", {"a": 1, "b": 3, "c": 2}), interval=0.99).set_index("factor")
    assert (wide.loc["b", "bayes_rank_low"], wide.loc["b", "bayes_rank_high"]) == (2, 3)
    assert wide["agrees"].all()


def test_compare_columns_and_scopes():
    first = np.array([1, 2] * 50)
    bayes = {"pooled": rank_draws({"a": first, "b": 3 - first}),
             "digits": rank_draws({"a": 3 - first, "b": first})}
    table = pd.concat([classical_table("pooled", {"a": 1, "b": 2}), classical_table("digits", {"a": 2, "b": 1})])
    result = compare(bayes, table)
    assert list(result.columns) == ["factor", "dataset", "bayes_mean_rank", "bayes_rank_low", "bayes_rank_high",
                                    "classical_rank", "eta_sq", "agrees", "kendall_tau", "contradicts",
                                    "contradicted"]
    assert not result["contradicts"].any()                   # a coin flip contradicts no order
    assert result["dataset"].tolist() == ["pooled", "pooled", "digits", "digits"]
    assert result["agrees"].all()                            # a coin flip between ranks 1 and 2 admits both
    assert (result["bayes_rank_low"] <= result["bayes_mean_rank"]).all()
    assert (result["bayes_mean_rank"] <= result["bayes_rank_high"]).all()
    with pytest.raises(WhatmattersError, match="'mnist1d'"):
        compare({"mnist1d": bayes["pooled"]}, table)


def test_compare_names_orders_the_posterior_all_but_excludes():
    """The posterior puts a first in 99 of 100 draws: an ANOVA ranking b above a contradicts it;
    one that swaps b and c (a near coin flip) does not."""
    b = np.array([2] * 60 + [3] * 39 + [1])
    a = np.where(b == 1, 2, 1)
    bayes = {"pooled": rank_draws({"a": a, "b": b, "c": 6 - a - b})}
    wrong = compare(bayes, classical_table("pooled", {"a": 2, "b": 1, "c": 3})).set_index("factor")
    assert wrong["contradicts"].to_dict() == {"a": False, "b": True, "c": False}
    assert wrong.loc["b", "contradicted"] == "a"
    swapped = compare(bayes, classical_table("pooled", {"a": 1, "b": 3, "c": 2}))
    assert not swapped["contradicts"].any()


def test_lack_of_fit_rejects_interaction_and_keeps_additive_tables(one_dataset, two_datasets):
    """Additive truth: the F test keeps the additive model (p well above 0.01) in every scope.
    An optimizer that fails with one loss (a -3 logit cell): rejected where it is planted."""
    additive = lack_of_fit(two_datasets, spec_for(["mnist1d", "digits"]))
    assert additive["dataset"].tolist() == ["pooled", "mnist1d", "digits"]
    assert additive["additive"].all() and (additive["p_value"] > 0.01).all()
    assert additive["df_pe"].tolist() == [2 * 36 * 2, 36 * 2, 36 * 2]     # 36 configs x 3 seeds per dataset

    rng = np.random.default_rng(4)
    broken = synthetic_runs("mnist1d", EFFECTS, rng)
    fails = (broken["optimizer"] == "lion") & (broken["loss"] == "mse")
    k = rng.binomial(N_TRIALS, 1 / (1 + np.exp(-(1.0 - 3.0))), size=int(fails.sum()))
    broken.loc[fails, "n_test_correct"] = k
    table = pd.concat([broken, synthetic_runs("digits", EFFECTS, rng)], ignore_index=True)
    result = lack_of_fit(table, spec_for(["mnist1d", "digits"])).set_index("dataset")
    assert result.loc["mnist1d", "p_value"] < 1e-6 and not result.loc["mnist1d", "additive"]
    assert result.loc["digits", "additive"]
    assert result.loc["mnist1d", "df_lof"] == 36 - (1 + 3 + 2 + 2)
