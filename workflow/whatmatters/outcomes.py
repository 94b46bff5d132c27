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
"""

from __future__ import annotations

import numpy as np

from whatmatters.errors import WhatmattersError

LOG_FLOOR = 1e-4   # continuous values below this are read as it (log of ~0 is not a measurement)

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


def empirical_logit(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    """(y, v): empirical logit of k/n and its delta-method variance, per run."""
    k, n = np.asarray(successes, float), np.asarray(trials, float)
    return np.log((k + 0.5) / (n - k + 0.5)), 1.0 / (k + 0.5) + 1.0 / (n - k + 0.5)


def pooled_logit(successes, trials, dataset_idx, n_datasets) -> np.ndarray:
    """(D,) empirical logit of each dataset's summed counts."""
    k = np.bincount(dataset_idx, weights=np.asarray(successes, float), minlength=n_datasets)
    n = np.bincount(dataset_idx, weights=np.asarray(trials, float), minlength=n_datasets)
    return np.log((k + 0.5) / (n - k + 0.5))


def columns(outcome: dict) -> list[str]:
    """The run-table columns the outcome is read from."""
    o = resolve(outcome)
    return [o["successes"], o["trials"]] if o["kind"] == "binomial" else [o["column"]]


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
