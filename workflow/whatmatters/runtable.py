"""The run table as an analysis reads it: checked against the analysis spec, then coded.

One row per run (R rows): `run_id`, `dataset`, one column per factor of the spec holding
level names, and the outcome's columns (`whatmatters.outcomes.columns`; derived ones, such
as which runs trained, are added by `whatmatters.outcomes.derive`). Both models and
the classical cross-check read it through `checked`, so a table is refused the same way,
with the same message, whoever reads it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from whatmatters import outcomes
from whatmatters.errors import WhatmattersError


def checked(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The table, validated against the spec (index reset); every failure names what to fix.

    Raises:
      WhatmattersError: a needed column is missing, the table is empty, run ids repeat, a
        dataset or level is not in the spec, a spec dataset has no runs, a factor has fewer
        than two levels, or the outcome's values are missing or impossible.
    """
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    outcome = outcomes.resolve(spec["outcome"])
    needed = ["run_id", "dataset", *factors, *outcomes.columns(outcome)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise WhatmattersError(
            f"run table lacks column(s) {missing} needed for outcome {outcome['name']!r}; "
            f"it has {sorted(map(str, table.columns))}")
    if len(table) == 0:
        raise WhatmattersError("run table is empty: nothing to fit")
    if table["run_id"].duplicated().any():
        dup = table.loc[table["run_id"].duplicated(), "run_id"].head(5).tolist()
        raise WhatmattersError(f"run table repeats run_id(s) {dup}: one row per run expected")
    unknown = sorted(set(table["dataset"].astype(str)) - set(datasets))
    if unknown:
        raise WhatmattersError(f"run table has dataset(s) {unknown} not in the spec's datasets {datasets}")
    for col in outcomes.columns(outcome):
        if table[col].isna().any():
            bad = table.loc[table[col].isna(), "run_id"].head(5).tolist()
            raise WhatmattersError(f"column {col!r} is missing for run(s) {bad}; "
                                   "diverged runs need their measured values too")
    among = outcomes.derive(table, outcome)
    if len(among) < len(table):
        none = [d for d in datasets if (table["dataset"] == d).any() and not (among["dataset"] == d).any()]
        if none:
            raise WhatmattersError(f"outcome {outcome['name']!r}: no run on dataset(s) {none} trained, so there "
                                   "is no accuracy among runs that trained to fit; see outcome 'trained', or "
                                   f"drop {outcome['name']!r} from outcomes")
    table = among
    absent = [d for d in datasets if not (table["dataset"] == d).any()]
    if absent:
        raise WhatmattersError(f"spec dataset(s) {absent} have no runs in the table; "
                               "fit a spec that lists only the datasets that were run")
    for f in factors:
        levels = list(spec["factors"][f]["levels"])
        if len(levels) < 2:
            raise WhatmattersError(f"factor {f!r} has {len(levels)} level(s); importance needs >= 2")
        extra = sorted(set(table[f].astype(str)) - set(levels))
        if extra:
            raise WhatmattersError(f"factor {f!r} has levels {extra} in the run table that are not in the spec's "
                                   f"levels {levels}; add them to the spec or drop the runs at level(s) {extra}")
    outcomes.check(table, outcome)
    return table.reset_index(drop=True)


def codes(table: pd.DataFrame, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """((R, F) level codes, (R,) dataset codes) of a checked run table, in spec order."""
    factors = list(spec["factors"])
    level_codes = np.column_stack([
        pd.Categorical(table[f], categories=list(spec["factors"][f]["levels"])).codes for f in factors])
    return level_codes.astype(np.int64), pd.Categorical(table["dataset"], categories=spec["datasets"]).codes.astype(np.int64)
