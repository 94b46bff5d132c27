"""outcomes: every outcome of the registry is measured by a run, kept by the run table and
read by the model (one registry entry, this parametrized test)."""

import numpy as np
import pandas as pd
import pytest

from helpers import cheap_levels, tiny_data
from whatmatters import outcomes
from whatmatters.aggregate import OUTCOME_COLUMNS
from whatmatters.outcomes import OUTCOMES, SCALE
from whatmatters.train import train_run


@pytest.fixture(scope="module")
def runs():
    """Two runs' records as run-table rows."""
    data = tiny_data()
    return pd.DataFrame([{**train_run(data, cheap_levels(), seed=seed, epochs=1), "run_id": f"r{seed}",
                          "dataset": "tiny"} for seed in (0, 1)])


@pytest.mark.parametrize("name", list(OUTCOMES))
def test_every_outcome_is_measured_kept_and_modelled(name, runs):
    o = outcomes.spec(name, {"tiny": 1 / tiny_data()["num_classes"]})
    assert o["kind"] in ("binomial", "continuous") and o["better"] in ("higher", "lower") and o["unit"] in SCALE
    assert set(outcomes.columns(o)) <= set(runs.columns) & set(OUTCOME_COLUMNS)   # a run measures it, the table keeps it
    runs = outcomes.derive(runs, o)              # the columns read from others (which runs trained)
    assert len(runs) == 2                        # both tiny runs trained
    outcomes.check(runs, o)
    y, v = outcomes.response(runs, o)                                             # (R,) each
    assert y.shape == v.shape == (2,) and np.isfinite(y).all() and (v >= 0).all()
    assert np.isfinite(outcomes.natural(o, y)).all()
    observed = outcomes.observed(o, *(runs[c].to_numpy() if c in runs else None
                                      for c in (o.get("successes"), o.get("trials"), o.get("column"))))
    assert np.isfinite(observed).all()
