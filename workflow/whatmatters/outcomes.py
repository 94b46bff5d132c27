"""Outcomes: what a run measured, and how the model reads each one.

Two kinds, one model (`whatmatters.collapsed`): the response y_r of run r is Normal around
the cell mean with seed noise plus a known measurement variance v_r.

  binomial     k_r of n_r examples right (test, train, shifted-test accuracy). y_r is the
               empirical logit, v_r its binomial variance; the natural scale is accuracy in
               percentage points; higher is better.
  continuous   a positive measurement (calibration error, training loss). y_r = log(value),
               v_r = 0 (its seed-to-seed noise is the model's seed noise); the natural scale
               is the value itself; lower is better.

A run whose network diverged is scored like any other run (DESIGN.md, "Failure is data"):
`whatmatters.train.evaluate` scores non-finite outputs as a uniform guess, so a diverged
run has chance accuracy, cross-entropy log(classes) and the calibration error of a guess.

Two outcomes split "fails to train or fails to generalize" in two, read from columns the
run table already has (`derive`):

  trained                 1 if the run did not diverge and its training accuracy beat chance
                          (1 / the dataset's classes) by more than TRAINED_MARGIN, else 0.
                          A 0/1 per run: k_c of a config's m_c seeds trained is modelled with
                          the exact Binomial(m_c, p_c) and no seed noise (`seed_noise`:
                          False), whatever the study's analysis.method (`method`).
  test_accuracy_trained   test accuracy fitted on the runs that trained only (`among`).
"""

from __future__ import annotations

import numpy as np

from whatmatters.errors import WhatmattersError

LOG_FLOOR = 1e-4   # continuous values below this are read as it (log of ~0 is not a measurement)
TRAINED_MARGIN = 0.1   # a run trained if its training accuracy > chance + this (10 points; chance =
                       # 1/classes): a net stuck at a constant guess or the class prior sits at chance;
                       # the default study's stuck runs sit at 10-20%, the rest well above

OUTCOMES = {   # name -> analysis spec of the outcome (JSON-ready)
    "test_accuracy": {
        "kind": "binomial", "successes": "n_test_correct", "trials": "n_test", "better": "higher",
        "label": "test accuracy", "unit": "pp",
        "description": "accuracy on the held-out test set: generalization"},
    "train_accuracy": {
        "kind": "binomial", "successes": "n_train_correct", "trials": "n_train", "better": "higher",
        "label": "train accuracy", "unit": "pp",
        "description": "accuracy on the full training set after training: did optimization succeed"},
    "shifted_accuracy": {
        "kind": "binomial", "successes": "n_shift_correct", "trials": "n_shift", "better": "higher",
        "label": "shifted-test accuracy", "unit": "pp",
        "description": "accuracy on the dataset's shifted test set: robustness to distribution shift"},
    "calibration_error": {
        "kind": "continuous", "column": "ece", "transform": "log", "better": "lower",
        "label": "expected calibration error", "unit": "pp",
        "description": "expected calibration error on the test set (15 equal-width confidence bins)"},
    "final_train_loss": {
        "kind": "continuous", "column": "train_loss", "transform": "log", "better": "lower",
        "label": "final training loss", "unit": "nats",
        "description": "cross-entropy on the full training set after training, whatever loss was "
                       "optimised: the same yardstick for every loss function"},
    "trained": {
        "kind": "binomial", "successes": "trained", "trials": "trained_trials", "better": "higher",
        "label": "trained", "unit": "pp", "derived": "trained",
        "method": "binomial", "seed_noise": False,   # 0/1 per run: exact Binomial over a config's seeds
        "description": "whether training worked: the run did not diverge and its training accuracy beat "
                       "chance (1/classes) by the margin; k of a config's seeds, exact binomial likelihood"},
    "test_accuracy_trained": {
        "kind": "binomial", "successes": "n_test_correct", "trials": "n_test", "better": "higher",
        "label": "test accuracy of runs that trained", "unit": "pp", "among": "trained",
        "description": "accuracy on the held-out test set of the runs that trained only: generalization "
                       "given that training worked"},
}
SCALE = {"pp": 100.0, "nats": 1.0}   # natural-scale unit -> multiplier of the inverse transform


def resolve(outcome: dict | None) -> dict:
    """An outcome spec with every key, from a full spec or the older {name, successes,
    trials} form (binomial); None means test accuracy."""
    if outcome is None:
        return {"name": "test_accuracy", **OUTCOMES["test_accuracy"]}
    if "kind" in outcome:
        return outcome
    return {"kind": "binomial", "better": "higher", "label": outcome["name"].replace("_", " "), "unit": "pp",
            **outcome}


def needs_trained(outcome: dict) -> bool:
    """Whether the outcome reads which runs trained (`trained`, or an outcome among them)."""
    return outcome.get("derived") == "trained" or outcome.get("among") == "trained"


def spec(name: str, chance: dict[str, float] | None = None) -> dict:
    """The analysis spec's outcome `name`: its OUTCOMES entry and, for an outcome that reads
    which runs trained, `trained_when` from `chance` ({dataset: 1/classes})."""
    o = {"name": name, **OUTCOMES[name]}
    if needs_trained(o):
        if chance is None:
            raise WhatmattersError(f"outcome {name!r} needs each dataset's chance accuracy (1/classes)")
        o["trained_when"] = trained_when(chance)
    return o


def trained_when(chance: dict[str, float], margin: float = TRAINED_MARGIN) -> dict:
    """What `trained` means in a spec: {"chance": {dataset: 1/classes}, "margin": margin}."""
    return {"chance": {d: float(c) for d, c in chance.items()}, "margin": float(margin)}


def trained(table: pd.DataFrame, when: dict) -> np.ndarray:  # noqa: F821
    """(R,) bool: the run did not diverge and its train accuracy > chance of its dataset + margin.

    `when` is `trained_when(...)`; a dataset it does not name raises WhatmattersError."""
    unknown = sorted(set(table["dataset"].astype(str)) - set(when["chance"]))
    if unknown:
        raise WhatmattersError(f"outcome 'trained': no chance level (1/classes) for dataset(s) {unknown}; "
                               f"the spec names {sorted(when['chance'])}")
    chance = table["dataset"].astype(str).map(when["chance"]).to_numpy(float)
    accuracy = np.asarray(table["train_accuracy"], float)
    return (table["status"].astype(str).to_numpy() != "diverged") & (accuracy > chance + when["margin"])


def derive(table: pd.DataFrame, outcome: dict) -> pd.DataFrame:  # noqa: F821
    """The table as the outcome reads it: with `trained` (0/1) and `trained_trials` (1) per run
    for the `trained` outcome, or only the runs that trained for an outcome `among` them.
    Other outcomes get the table back unchanged. The outcome spec holds `trained_when`."""
    o = resolve(outcome)
    if not needs_trained(o):
        return table
    if "trained_when" not in o:
        raise WhatmattersError(f"outcome {o['name']!r}: the spec lacks `trained_when` (chance per dataset "
                               "and margin); build it with whatmatters.analysis_spec")
    ok = trained(table, o["trained_when"])
    if o.get("among") == "trained":
        return table.loc[ok].reset_index(drop=True)
    return table.assign(trained=ok.astype("int64"), trained_trials=np.ones(len(table), dtype="int64"))


def empirical_logit(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    """(y, v): empirical logit of k/n and its delta-method variance, per run."""
    k, n = np.asarray(successes, float), np.asarray(trials, float)
    return np.log((k + 0.5) / (n - k + 0.5)), 1.0 / (k + 0.5) + 1.0 / (n - k + 0.5)


def pooled_logit(successes, trials, dataset_idx, n_datasets) -> np.ndarray:
    """(D,) empirical logit of each dataset's summed counts."""
    k = np.bincount(dataset_idx, weights=np.asarray(successes, float), minlength=n_datasets)
    n = np.bincount(dataset_idx, weights=np.asarray(trials, float), minlength=n_datasets)
    return np.log((k + 0.5) / (n - k + 0.5))


TRAINED_COLUMNS = ["status", "train_accuracy"]   # what `trained` is read from


def columns(outcome: dict) -> list[str]:
    """The run-table columns the outcome is read from (before `derive`)."""
    o = resolve(outcome)
    if o.get("derived") == "trained":
        return list(TRAINED_COLUMNS)
    own = [o["successes"], o["trials"]] if o["kind"] == "binomial" else [o["column"]]
    return own + (TRAINED_COLUMNS if needs_trained(o) else [])


def check(table: pd.DataFrame, outcome: dict) -> None:  # noqa: F821
    """Raise WhatmattersError naming the runs whose values the outcome cannot read."""
    import pandas as pd   # here: checking a study reads OUTCOMES without paying for pandas

    o = resolve(outcome)
    if o["kind"] == "binomial":
        k = pd.to_numeric(table[o["successes"]], errors="coerce")
        n = pd.to_numeric(table[o["trials"]], errors="coerce")
        bad = table.loc[~((k >= 0) & (k <= n) & (n > 0)), "run_id"].head(5).tolist()
        if bad:
            raise WhatmattersError(f"impossible counts (need 0 <= {o['successes']} <= {o['trials']}, "
                                   f"trials > 0) for run(s) {bad}")
        return
    value = pd.to_numeric(table[o["column"]], errors="coerce")
    bad = table.loc[~(np.isfinite(value) & (value >= 0)), "run_id"].head(5).tolist()
    if bad:
        raise WhatmattersError(f"outcome {o['name']!r}: column {o['column']!r} must be a finite number >= 0 "
                               f"for every run; it is not for run(s) {bad}")


def response(table: pd.DataFrame, outcome: dict) -> tuple[np.ndarray, np.ndarray]:
    """(y, v) per run: the modelled response and its known measurement variance."""
    o = resolve(outcome)
    if o["kind"] == "binomial":
        return empirical_logit(table[o["successes"]], table[o["trials"]])
    y = np.log(np.maximum(table[o["column"]].to_numpy(float), LOG_FLOOR))
    return y, np.zeros_like(y)


def centre(table: pd.DataFrame, outcome: dict, dataset_idx: np.ndarray, n_datasets: int) -> np.ndarray:
    """(D,) the prior mean of each dataset's intercept: the pooled logit of all its counts
    (binomial), or the mean response (continuous)."""
    o = resolve(outcome)
    if o["kind"] == "binomial":
        return pooled_logit(table[o["successes"]], table[o["trials"]], dataset_idx, n_datasets)
    y, _ = response(table, o)
    return np.bincount(dataset_idx, weights=y, minlength=n_datasets) / np.bincount(dataset_idx, minlength=n_datasets)


def natural(outcome: dict, eta):
    """The natural-scale value (times its unit's multiplier) of a linear predictor."""
    o = resolve(outcome)
    from scipy.special import expit

    value = expit(eta) if o["kind"] == "binomial" else np.exp(eta)
    return SCALE[o["unit"]] * value


def replicate(outcome: dict, eta: np.ndarray, trials: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Replicated natural-scale values (accuracy as a fraction, or the value) of runs with
    linear predictor `eta` (seed noise included): binomial draws of `trials` examples, or
    exp(eta)."""
    o = resolve(outcome)
    if o["kind"] == "binomial":
        return rng.binomial(trials, 1 / (1 + np.exp(-eta))) / trials
    return np.exp(eta)


def observed(outcome: dict, successes: np.ndarray | None, trials: np.ndarray | None,
             values: np.ndarray | None) -> np.ndarray:
    """The observed natural-scale values, comparable with `replicate`."""
    o = resolve(outcome)
    if o["kind"] == "binomial":
        return successes / trials
    return np.maximum(values, LOG_FLOOR)
