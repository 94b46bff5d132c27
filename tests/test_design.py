"""Designs: counts, balance, stable ids and job grouping."""

import collections
import copy
import math

import pytest

from conftest import ROOT
from whatmatters.config import read_config
from whatmatters.design import expand, job_spec
from whatmatters.study import load_study


@pytest.fixture
def config():
    return read_config(ROOT / "config.yaml")


def study_with(config, **design):
    config = copy.deepcopy(config)
    config["design"] = design
    return load_study(config)


def level_counts(expanded, factor):
    return collections.Counter(c["levels"][factor]["name"] for c in expanded["configs"])


def test_full_design_is_every_combination(config):
    for f in ("init", "optimizer", "architecture", "loss"):  # shrink to 2 x 2 x 2 x 2 x 4 x 4 x 4
        config["factors"][f]["levels"] = config["factors"][f]["levels"][:2]
        config["factors"][f]["baseline"] = config["factors"][f]["levels"][0]["name"]
    d = expand(study_with(config, kind="full"))
    assert len(d["configs"]) == 2**4 * 4**3
    assert len({c["config_id"] for c in d["configs"]}) == len(d["configs"])


def test_one_at_a_time_varies_one_factor_from_the_baseline(config):
    study = study_with(config, kind="one_at_a_time")
    d = expand(study)
    levels = [len(f["levels"]) for f in study["factors"].values()]
    assert len(d["configs"]) == 1 + sum(n - 1 for n in levels)
    baseline = {f: spec["baseline"] for f, spec in study["factors"].items()}
    assert {f: lv["name"] for f, lv in d["configs"][0]["levels"].items()} == baseline
    for c in d["configs"][1:]:
        assert sum(c["levels"][f]["name"] != baseline[f] for f in baseline) == 1


@pytest.mark.parametrize("n", [4, 10, 32, 37])
def test_random_design_is_balanced_distinct_and_seeded(config, n):
    study = study_with(config, kind="random", n_configs=n, seed=3)
    d = expand(study)
    assert len(d["configs"]) == n
    assert len({c["config_id"] for c in d["configs"]}) == n
    for f in study["factors"]:
        counts = level_counts(d, f).values()
        assert max(counts) - min(counts) <= 1 and sum(counts) == n
    assert d["configs"] == expand(study)["configs"]
    other = expand(study_with(config, kind="random", n_configs=n, seed=4))
    assert d["configs"] != other["configs"]


def test_runs_are_configs_by_datasets_by_seeds_with_stable_ids(config):
    study = load_study(config)
    d = expand(study)
    assert len(d["runs"]) == len(d["configs"]) * len(study["datasets"]) * len(study["seeds"])
    ids = [r["run_id"] for r in d["runs"]]
    assert len(set(ids)) == len(ids)
    assert ids == [r["run_id"] for r in expand(load_study(config))["runs"]]


def test_editing_a_level_changes_only_the_ids_of_configs_that_use_it(config):
    before = expand(study_with(config, kind="one_at_a_time"))
    config["factors"]["optimizer"]["levels"][0]["lr"] = 0.1  # the `sgd` level
    after = expand(study_with(config, kind="one_at_a_time"))
    changed = [(a["levels"]["optimizer"]["name"], a["config_id"] != b["config_id"])
               for a, b in zip(before["configs"], after["configs"])]
    assert all(is_changed == (name == "sgd") for name, is_changed in changed)


def test_jobs_hold_all_seeds_of_a_few_configs_on_one_dataset(config):
    study = load_study(config)
    d = expand(study)
    per_job = study["execution"]["runs_per_job"] // len(study["seeds"])
    assert len(d["jobs"]) == len(study["datasets"]) * math.ceil(len(d["configs"]) / per_job)
    seen = collections.Counter()
    for (dataset, job), config_ids in d["jobs"].items():
        assert len(config_ids) <= per_job
        spec = job_spec(study, d, dataset, job)
        assert spec["dataset"]["name"] == dataset and spec["seeds"] == study["seeds"]
        seen.update((dataset, c["config_id"]) for c in spec["configs"])
    assert set(seen.values()) == {1}  # every (dataset, config) in exactly one job
    assert len(seen) == len(d["configs"]) * len(study["datasets"])
