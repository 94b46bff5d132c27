"""Training runs: determinism, divergence as data, seed streams, job storage and reuse."""

import json

import pytest
import torch

from helpers import cheap_levels, level, tiny_data
from whatmatters import data as datasets
from whatmatters.jobs import train_job
from whatmatters.study import EXECUTION_DEFAULTS
from whatmatters.train import seed_streams, train_run


def test_same_run_twice_gives_identical_metrics():
    data = tiny_data()
    levels = cheap_levels(augmentation=level("augmentation", "mixup"),
                          regularization=level("regularization", "dropout", p=0.2))
    a, b = train_run(data, levels, seed=3, epochs=3), train_run(data, levels, seed=3, epochs=3)
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_objective", "n_test_correct"):
        assert a[key] == b[key], key
    c = train_run(data, levels, seed=4, epochs=3)
    assert (a["test_loss"], a["train_objective"]) != (c["test_loss"], c["train_objective"])


def test_a_run_learns_and_reports_its_counts():
    data = tiny_data()
    r = train_run(data, cheap_levels(), seed=0, epochs=5)
    assert r["status"] == "ok"
    assert r["n_test"] == 64 and r["n_train"] == 192
    assert r["test_accuracy"] == r["n_test_correct"] / 64
    assert r["train_accuracy"] > 0.8  # well above chance (0.25)
    assert r["steps"] == r["total_steps"] == 5 * (192 // 32)


def diverging_levels():
    """A config whose loss blows up within a few steps."""
    return cheap_levels(optimizer=level("optimizer", "sgd", lr=1e12), init=level("init", "normal", std=100.0))


def test_divergence_is_recorded_as_data_not_raised():
    r = train_run(tiny_data(), diverging_levels(), seed=0, epochs=5)
    assert r["status"] == "diverged"
    assert r["diverged_at_step"] is not None and r["steps"] < r["total_steps"]
    assert 0 <= r["n_test_correct"] <= r["n_test"]  # measured, near chance
    assert r["test_accuracy"] == r["n_test_correct"] / r["n_test"]


def test_seed_streams_are_distinct_and_reproducible():
    s = seed_streams(7)
    assert set(s) == {"init", "order", "augment", "dropout"}
    assert len(set(s.values())) == 4
    assert s == seed_streams(7) and s != seed_streams(8)


def test_streams_separate_sources_of_variance():
    """Changing only the data order leaves the initial weights alone."""
    from whatmatters.train import STREAMS  # noqa: F401  (documented stream names)

    data = tiny_data()
    levels = cheap_levels()
    torch.manual_seed(seed_streams(0)["init"])
    w0 = torch.nn.Linear(12, 16).weight.clone()
    torch.manual_seed(seed_streams(0)["init"])
    assert torch.equal(w0, torch.nn.Linear(12, 16).weight)
    assert train_run(data, levels, 0, 1)["streams"]["init"] == seed_streams(0)["init"]


@pytest.fixture
def job(tmp_path):
    data = tiny_data()
    path = tmp_path / "data.pt"
    payload = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    payload["meta"] = json.dumps({"spec": {"name": "tiny"}, "input_shape": [1, 12], "num_classes": 4})
    torch.save(payload, path)
    spec = {
        "dataset": {"name": "tiny", "kind": "digits", "settings": {}, "budget": {"epochs": 1}},
        "configs": [{"config_id": "cA", "levels": cheap_levels()},
                    {"config_id": "cB", "levels": cheap_levels(loss=level("loss", "brier"))}],
        "seeds": [0, 1],
        "execution": {**EXECUTION_DEFAULTS, "device": "cpu", "runs_per_job": 4, "threads": 1},
    }
    return spec, str(path), tmp_path / "runs"


def test_job_stores_each_run_and_a_manifest(job):
    spec, data_path, run_dir = job
    m = train_job(spec, data_path, str(run_dir), str(run_dir / "jobs/job0000.json"))
    assert m["trained"] == 4 and m["reused"] == 0
    manifest = json.loads((run_dir / "jobs/job0000.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == ["tiny-cA-0", "tiny-cA-1", "tiny-cB-0", "tiny-cB-1"]
    record = json.loads((run_dir / "cB/1.json").read_text())
    assert record["levels"]["loss"] == "brier" and record["seed"] == 1
    prov = record["provenance"]
    assert prov["device"] == "cpu" and "torch" in prov["versions"] and prov["code_revision"]
    assert record["settings"]["levels"]["loss"]["kind"] == "brier"


def test_rerun_reuses_finished_runs_and_retrains_changed_ones(job):
    spec, data_path, run_dir = job
    out = str(run_dir / "jobs/job0000.json")
    train_job(spec, data_path, str(run_dir), out)
    stamp = (run_dir / "cA/0.json").stat().st_mtime_ns
    assert train_job(spec, data_path, str(run_dir), out)["trained"] == 0
    spec["seeds"] = [0, 1, 2]  # adding a seed trains only the new seed
    assert train_job(spec, data_path, str(run_dir), out)["trained"] == 2
    spec["configs"][1]["levels"]["loss"] = level("loss", "focal", name="brier")  # edited settings, same name
    assert train_job(spec, data_path, str(run_dir), out)["trained"] == 3
    assert (run_dir / "cA/0.json").stat().st_mtime_ns == stamp


def test_a_corrupt_stored_run_is_retrained(job):
    spec, data_path, run_dir = job
    out = str(run_dir / "jobs/job0000.json")
    train_job(spec, data_path, str(run_dir), out)
    (run_dir / "cA/1.json").write_text('{"run_id": "tiny-cA-1", "test_acc')  # truncated
    assert train_job(spec, data_path, str(run_dir), out)["trained"] == 1


def test_prepared_datasets_are_fixed_and_standardised(tmp_path):
    for kind, settings, shape in [("digits", {}, (1, 8, 8)), ("mnist1d", {"num_samples": 500}, (1, 40))]:
        spec = {"name": kind, "kind": kind, "settings": datasets.DATASETS.resolve(kind, kind, settings)}
        datasets.prepare(spec, tmp_path / f"{kind}.pt", {})
        datasets.prepare(spec, tmp_path / f"{kind}2.pt", {})
        a, b = datasets.load(tmp_path / f"{kind}.pt"), datasets.load(tmp_path / f"{kind}2.pt")
        assert a["input_shape"] == shape and a["num_classes"] == 10
        assert torch.equal(a["x_test"], b["x_test"]) and torch.equal(a["y_train"], b["y_train"])
        assert abs(a["x_train"].mean()) < 1e-4 and abs(a["x_train"].std() - 1) < 1e-2
        assert set(a["y_test"].tolist()) == set(range(10))


def test_unreadable_prepared_data_is_named(tmp_path):
    from whatmatters.errors import DataError

    bad = tmp_path / "digits.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="digits.pt is unreadable"):
        datasets.load(bad)
    with pytest.raises(DataError, match="absent.pt does not exist"):
        datasets.load(tmp_path / "absent.pt")


class _Fixed(torch.nn.Module):
    """A 'network' that returns given logits whatever its input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def test_evaluate_scores_calibration_error_by_hand():
    from whatmatters.train import evaluate

    # 4 examples, 2 classes: confidences 0.9, 0.9 (one right) and 0.6, 0.6 (both right)
    p = torch.tensor([0.9, 0.9, 0.6, 0.6])
    logits = torch.stack([torch.log(p), torch.log(1 - p)], 1)
    y = torch.tensor([0, 1, 0, 0])
    r = evaluate(_Fixed(logits), torch.zeros(4, 1), y)
    assert r["correct"] == 3 and r["nonfinite"] == 0
    # bins: {0.9: acc 0.5, conf 0.9} {0.6: acc 1.0, conf 0.6}: ECE = 0.5 * 0.4 + 0.5 * 0.4
    assert r["ece"] == pytest.approx(0.4)
    assert r["loss"] == pytest.approx(float(-(torch.log(p[[0, 2, 3]]).sum() + torch.log(1 - p[1])) / 4))


def test_evaluate_scores_non_finite_outputs_as_a_uniform_guess():
    from whatmatters.train import evaluate

    logits = torch.tensor([[float("nan"), 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    r = evaluate(_Fixed(logits), torch.zeros(2, 1), torch.tensor([2, 0]))
    assert r["nonfinite"] == 1
    assert r["correct"] == 1                                # the guess (class 0) is wrong for label 2
    uniform = torch.log(torch.tensor(4.0))
    confident = torch.nn.functional.cross_entropy(logits[1:], torch.tensor([0]))
    assert r["loss"] == pytest.approx(float((uniform + confident) / 2))


def test_a_run_reports_shifted_accuracy_and_calibration():
    data = tiny_data()
    r = train_run(data, cheap_levels(), seed=0, epochs=5)
    assert r["n_shift"] == len(data["y_shift"])
    assert r["shifted_accuracy"] == r["n_shift_correct"] / r["n_shift"]
    assert r["shifted_accuracy"] < r["test_accuracy"]       # the shifted set is noisier
    assert 0 < r["ece"] < 1 and r["train_loss"] > 0


def test_a_diverged_run_has_every_outcome_measured():
    import math

    r = train_run(tiny_data(), diverging_levels(), seed=0, epochs=5)
    assert r["status"] == "diverged"
    for key in ("test_accuracy", "train_accuracy", "shifted_accuracy", "ece", "train_loss"):
        assert math.isfinite(r[key]), key
