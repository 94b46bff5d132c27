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


def grid(*sizes):
    """Factors of the given numbers of levels, as study["factors"] holds them (names only matter)."""
    return {f"f{i}": {"levels": {f"l{j}": None for j in range(k)}} for i, k in enumerate(sizes)}


def assert_balanced_and_distinct(rows, factors, n):
    from collections import Counter

    assert len(rows) == n and len({tuple(r.values()) for r in rows}) == n
    for f, spec in factors.items():
        counts = Counter(r[f] for r in rows)
        per_level = [counts.get(lv, 0) for lv in spec["levels"]]
        assert max(per_level) - min(per_level) <= 1, (f, per_level)


@pytest.mark.parametrize("sizes", [(2, 3), (4, 4, 4, 4), (3, 3, 2), (2, 2, 2, 2, 2), (5, 1, 3), (2, 4), (7,)])
def test_every_balanced_random_design_that_exists_is_found(sizes):
    """Every n from 1 to the grid: a balanced set of n distinct configs exists (the complement
    of one is one), and it is found; n equal to the grid is the full factorial."""
    from whatmatters.design import _full, _random

    factors = grid(*sizes)
    total = math.prod(sizes)
    for n in range(1, total + 1):
        for seed in range(2):
            assert_balanced_and_distinct(_random(factors, n, seed), factors, n)
    assert _random(factors, total, 0) == _full(factors)


@pytest.mark.parametrize("sizes, n", [((10,) * 6, 100_000), ((1000, 1000), 16_384), ((1000,) * 7, 100_000),
                                      ((10,) * 5, 99_999), ((4, 4, 4, 4), 180)])
def test_random_designs_plan_in_two_seconds(sizes, n):
    """Up to MAX_CONFIGS (100,000) configs on grids of 10^6 and beyond (10^21), near the full
    grid too: planned in <= 2 s of CPU (this process's CPU time, which other work on the
    machine does not inflate the way it does wall time)."""
    import time

    from whatmatters.design import _random

    start = time.process_time()
    rows = _random(grid(*sizes), n, 1)
    assert time.process_time() - start <= 2.0
    assert_balanced_and_distinct(rows, grid(*sizes), n)


def test_a_random_design_larger_than_the_grid_is_one_clear_error(config):
    from whatmatters.errors import StudyError

    with pytest.raises(StudyError, match=r"^design.n_configs: 1000000 exceeds the \d+ distinct configs the factors "
                                         r"allow; choose at most \d+ \(which is kind: full\)$"):
        study_with(config, kind="random", n_configs=10**6)


def test_config_ids_are_the_hash_of_their_levels(config):
    from whatmatters.design import config_id

    d = expand(study_with(config, kind="random", n_configs=20, seed=1))
    assert all(c["config_id"] == config_id(c["levels"]) for c in d["configs"])
