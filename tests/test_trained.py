"""The `trained` outcome (did the run train) and accuracy among the runs that trained: what
counts as trained, the spec a study gives them, the exact per-cell Binomial model's
structure, and recovery of planted failure rates (docs/model.md, docs/validation.md)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from whatmatters import binomial as B
from whatmatters import outcomes, runtable
from whatmatters.analysis_spec import analysis_spec
from whatmatters.config import read_config
from whatmatters.errors import WhatmattersError
from whatmatters.outcomes import TRAINED_MARGIN
from whatmatters.simulation import simulate_trained
from whatmatters.study import load_study

LEVELS = {"init": ["default", "he", "naive"], "optimizer": ["adam", "sgd", "lion"],
          "schedule": ["constant", "cosine", "warmup"], "loss": ["ce", "smooth", "focal"]}
CHANCE = {"d1": 0.1, "d2": 0.1}


def make_spec(outcome="trained", draws=300):
    return {"factors": {f: {"levels": lv, "baseline": lv[0]} for f, lv in LEVELS.items()},
            "datasets": list(CHANCE), "outcome": outcomes.spec(outcome, CHANCE), "hypotheses": [],
            "model": {"method": "binomial", "interactions": False},
            "sampler": {"chains": 2, "draws": draws, "tune": draws, "target_accept": 0.9, "seed": 3, "cores": 1,
                        "nuts": "auto"},
            "allow_missing": False}


def test_a_run_trained_if_it_did_not_diverge_and_beat_chance_by_the_margin():
    table = pd.DataFrame({"dataset": ["d", "d", "d", "d", "e"],
                          "status": ["ok", "ok", "diverged", "ok", "ok"],
                          "train_accuracy": [0.1 + TRAINED_MARGIN + 0.01, 0.1 + TRAINED_MARGIN, 0.9, 0.95, 0.5]})
    when = outcomes.trained_when({"d": 0.1, "e": 0.5})         # e: two classes, chance 0.5
    assert outcomes.trained(table, when).tolist() == [True, False, False, True, False]
    with pytest.raises(WhatmattersError, match=r"no chance level \(1/classes\) for dataset\(s\) \['e'\]"):
        outcomes.trained(table, outcomes.trained_when({"d": 0.1}))


def test_derive_adds_zero_one_counts_or_keeps_the_runs_that_trained():
    table = pd.DataFrame({"run_id": ["a", "b", "c"], "dataset": "d", "status": ["ok", "diverged", "ok"],
                          "train_accuracy": [0.9, 0.9, 0.12], "n_test": 100, "n_test_correct": [80, 10, 11]})
    derived = outcomes.derive(table, outcomes.spec("trained", {"d": 0.1}))
    assert derived["trained"].tolist() == [1, 0, 0] and derived["trained_trials"].tolist() == [1, 1, 1]
    among = outcomes.derive(table, outcomes.spec("test_accuracy_trained", {"d": 0.1}))
    assert among["run_id"].tolist() == ["a"]
    assert outcomes.derive(table, outcomes.spec("test_accuracy")) is table
    with pytest.raises(WhatmattersError, match="needs each dataset's chance accuracy"):
        outcomes.spec("trained")


def test_the_study_gives_trained_its_chance_levels_and_the_exact_binomial():
    raw = read_config(Path(__file__).resolve().parents[1] / "config.yaml")
    raw["outcomes"] = ["test_accuracy", "trained", "test_accuracy_trained"]
    raw["analysis"] = {**raw.get("analysis", {}), "method": "collapsed", "interactions": True}
    study = load_study(raw)
    spec = analysis_spec(study, "trained")
    assert spec["model"] == {"method": "binomial", "interactions": False}    # whatever the study says
    assert spec["outcome"]["trained_when"]["margin"] == TRAINED_MARGIN
    assert set(spec["outcome"]["trained_when"]["chance"]) == set(spec["datasets"])
    assert all(c == pytest.approx(0.1) for c in spec["outcome"]["trained_when"]["chance"].values())
    among = analysis_spec(study, "test_accuracy_trained")
    assert among["model"] == {"method": "collapsed", "interactions": True}   # the study's method
    assert "trained_when" in among["outcome"]
    assert "trained_when" not in analysis_spec(study, "test_accuracy")["outcome"]


@pytest.fixture(scope="module")
def planted():
    """init decides whether training works (and, with schedule, a two-factor failure);
    optimizer decides accuracy among runs that trained; loss does neither."""
    return simulate_trained(make_spec(), {"init": 2.0, "schedule": 0.3}, pair=("init", "schedule", 2.0),
                            accuracy_importance={"optimizer": 1.0, "schedule": 0.3}, configs=27, seeds=3,
                            random_seed=5)


def test_the_simulation_plants_failure_rates_and_states_the_truth(planted):
    table, truth = planted
    trained = outcomes.derive(table, outcomes.spec("trained", CHANCE))["trained"]
    assert 0.2 < trained.mean() < 0.9 and set(table["status"]) == {"ok", "diverged"}
    for d in CHANCE:
        t = {f: truth["trained"][f][d] for f in LEVELS}
        assert max(t, key=t.get) == "init" and t["loss"] == pytest.approx(0.0)
        assert t["optimizer"] == pytest.approx(0.0)
        assert truth["test_accuracy_trained"]["optimizer"][d] > truth["test_accuracy_trained"]["init"][d]


def test_trained_model_is_exact_binomial_per_cell_without_seed_noise(planted):
    table, _ = planted
    model = B.build_model(table, make_spec())
    free = {v.name for v in model.free_RVs}
    assert "sigma_seed" not in free and "eta" not in free and {"sigma", "sigma_config", "config_tilde"} <= free
    dims = model.named_vars_to_dims
    assert dims["trained"] == ("cell",)
    seeds = table.groupby(["dataset", *LEVELS]).size()                       # m_c, one per cell
    counts = model.rvs_to_values[model["trained"]].eval()                    # k_c
    assert len(counts) == len(seeds) and counts.max() <= seeds.max()
    assert counts.sum() == outcomes.derive(table, outcomes.spec("trained", CHANCE))["trained"].sum()


def test_accuracy_among_runs_that_trained_fits_only_those_and_says_when_none_did(planted):
    table, _ = planted
    runs = runtable.checked(table, make_spec("test_accuracy_trained"))
    assert 0 < len(runs) < len(table) and (runs["status"] == "ok").all()
    failed = table.assign(status=np.where(table["dataset"] == "d2", "diverged", table["status"]))
    with pytest.raises(WhatmattersError, match=r"no run on dataset\(s\) \['d2'\] trained"):
        runtable.checked(failed, make_spec("test_accuracy_trained"))


def test_the_factor_that_decides_training_ranks_first(planted):
    """Recovery with a known answer (one small fit, ~25 s): init, planted to decide
    training, ranks first for `trained`; optimizer (accuracy only) and loss (no effect) do not."""
    from whatmatters.fitting import fit
    from whatmatters.summarize import diagnostics, rank_probabilities

    table, _ = planted
    idata = fit(table, make_spec(draws=250))
    first = rank_probabilities(idata).query("dataset == 'pooled' and rank == 1").set_index("factor")["probability"]
    assert first["init"] > 0.8 and first["loss"] < 0.1 and first["optimizer"] < 0.1
    assert diagnostics(idata)["divergences"] == 0
    assert "sigma_seed" not in idata.posterior and "importance_natural" in idata.posterior


@pytest.mark.slow
def test_accuracy_among_runs_that_trained_ranks_what_decides_accuracy(planted):
    """The other half: among the runs that trained, optimizer (planted for accuracy) ranks
    first and init (planted for training only) does not."""
    from whatmatters.fitting import fit
    from whatmatters.summarize import rank_probabilities

    table, _ = planted
    among = fit(table, {**make_spec("test_accuracy_trained"), "model": {"method": "collapsed", "interactions": False}})
    first = rank_probabilities(among).query("dataset == 'pooled' and rank == 1").set_index("factor")["probability"]
    assert first["optimizer"] > 0.9 and first["loss"] < 0.05 and first["init"] < 0.05


@pytest.mark.slow
def test_a_dataset_where_every_run_trained_still_fits_and_says_so(planted):
    from whatmatters.fitting import fit
    from whatmatters.summarize import diagnostics

    table, _ = planted
    table = table.assign(status=np.where(table["dataset"] == "d2", "ok", table["status"]),
                         train_accuracy=np.where(table["dataset"] == "d2", 0.9, table["train_accuracy"]))
    idata = fit(table, make_spec())
    diag = diagnostics(idata)
    assert any("dataset d2: all" in w and "every run trained" in w and "rest on the prior" in w
               for w in diag["warnings"])
    assert np.isfinite(idata.posterior["importance"].values).all()
