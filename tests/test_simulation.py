"""simulation: the truth a simulated table comes with is the estimand, failures included."""

import numpy as np
import pytest

from whatmatters.simulation import simulate_table


@pytest.mark.parametrize("unstable", [None, ("b", 2, 0.3)])
def test_simulated_truth_is_the_estimand_with_divergences_included(unstable):
    """truth["importance"] is the sd of the main effects of a run's expected logit accuracy,
    diverged runs included: checked against the empirical main effects of a huge balanced
    full-factorial table (every config, many seeds, many test examples)."""
    spec = {"factors": {f: {"levels": [f"{f}{j}" for j in range(k)]} for f, k in [("a", 3), ("b", 4), ("c", 3)]},
            "datasets": ["d1"]}
    table, truth = simulate_table(spec, {"a": 0.8, "b": 0.3, "c": 0.1}, configs=36, seeds=600,
                                  trials=100_000, seed_sd=0.1, diverged_fraction=0.1,
                                  unstable=unstable, random_seed=4)
    p = table["n_test_correct"].clip(1) / table["n_test"]
    logit = np.log(p / (1 - p))
    for f in spec["factors"]:
        effects = logit.groupby(table[f]).mean()
        effects -= effects.mean()
        assert np.std(effects, ddof=1) == pytest.approx(truth["importance"][f]["d1"], abs=0.02)
    planted, true = truth["planted"], truth["importance"]
    assert true["a"]["d1"] < planted["a"]["d1"]                 # diverging at random dilutes
    if unstable:
        assert true["b"]["d1"] > planted["b"]["d1"] + 0.1       # the unstable level adds importance
    else:
        assert true["a"]["d1"] == pytest.approx(0.9 * planted["a"]["d1"])
