"""Seeds trained together (stacked weights under vmap) equal seeds trained one by one.

Each stacked seed keeps its own init, data order, augmentation and dropout masks, and the
optimizers are elementwise, so the only difference allowed is floating-point rounding of
batched kernels. What rounding cannot change is asserted exactly: statuses, the step a
seed diverged at, steps trained, streams, seed batch, and the correct counts of runs whose
training is not chaotic. The rest is compared with tolerances that hold on other CPUs and
on a GPU (see the constants below).

The checks train on `--device` (or $WHATMATTERS_TEST_DEVICE; default cpu), e.g.
`pytest tests/test_batched.py --device cuda`, as benchmarks/gpu_acceptance.sh does.
"""

import math
import re

import pytest
import torch

from helpers import cheap_levels, level, tiny_data, write_prepared
from whatmatters.factors import FACTORS
from whatmatters.jobs import resolve_execution, train_job
from whatmatters.study import EXECUTION_DEFAULTS
from whatmatters.train import batchable, train_run, train_runs

SEEDS = [0, 1, 2]
SMALL = {  # each architecture at a size that trains in about a second on tiny data
    "linear": {},
    "mlp": {"width": 16, "depth": 1},
    "cnn": {"width": 4, "depth": 2},
    "gru": {"width": 4},
    "resnet": {"width": 4, "depth": 2},
    "transformer": {"dim": 8, "depth": 1, "heads": 2, "patch": 3},
}

# Tolerances, measured by benchmarks/stacking_rounding.py (docs/reliability.md): on these
# tests a healthy run's losses and ECE differ by <= 3.6e-7 (relative) stacked vs alone, and by
# <= 1.4e-6 between one CPU's kernels and another's (ATEN_CPU_CAPABILITY, MKL and oneDNN
# instruction sets, 1 or 2 threads). 1e-4 leaves a margin of 50x for a GPU's kernels.
RTOL, ATOL = 1e-4, 1e-6
# At lr 10 training is chaotic: rounding grows step by step, and a diverged seed's loss
# (~3.5e35 here) differed by up to 1.5e-3 between CPUs' kernels (3.3e-5 stacked vs alone),
# so chaotic losses get 5e-2 and correct counts may move by 2% of the examples.
CHAOTIC_RTOL, CHAOTIC_COUNTS = 5e-2, 0.02
COUNTS = {"n_test_correct": "n_test", "n_train_correct": "n_train", "n_shift_correct": "n_shift"}


@pytest.fixture(scope="module")
def device(request):
    """The device these checks train on, fp32 in full: TF32 matmuls and convolutions round
    to 10 bits, which would test TF32 rather than stacking."""
    device = torch.device(request.config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"--device {device}: this machine sees no CUDA device")
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield device
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def data_on(device, **shape):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in tiny_data(**shape).items()}


def assert_same_runs(one: list[dict], together: list[dict], chaotic: bool = False):
    """Runs trained alone (`one`) match the same seeds trained stacked (`together`)."""
    rtol = CHAOTIC_RTOL if chaotic else RTOL
    for a, b in zip(one, together, strict=True):
        assert (a["status"], a["diverged_at_step"], a["steps"]) == (b["status"], b["diverged_at_step"], b["steps"])
        assert a["streams"] == b["streams"]
        assert (a["execution"]["seed_batch"], b["execution"]["seed_batch"]) == (1, len(together))
        for key, n in COUNTS.items():
            if key in a:
                slack = math.floor(CHAOTIC_COUNTS * a[n]) if chaotic else 0
                assert abs(a[key] - b[key]) <= slack, (key, a[key], b[key])
        for key in ("test_loss", "train_loss", "ece", "train_objective"):
            if not (math.isnan(a[key]) and math.isnan(b[key])):
                assert a[key] == pytest.approx(b[key], rel=rtol, abs=ATOL), key


def compare(levels, data, seeds=SEEDS, epochs=2):
    assert_same_runs([train_run(data, levels, s, epochs) for s in seeds], train_runs(data, levels, seeds, epochs))


@pytest.mark.parametrize("kind", FACTORS["architecture"].kinds())
def test_every_architecture_trains_stacked_as_it_trains_alone(kind, device):
    """With dropout on, so masks from each seed's own stream are part of the check."""
    assert FACTORS["architecture"].kind(kind).batchable
    compare(cheap_levels(architecture=level("architecture", kind, **SMALL[kind]),
                         regularization=level("regularization", "both", p=0.2)), data_on(device))


@pytest.mark.parametrize("kind", FACTORS["optimizer"].kinds())
def test_every_optimizer_updates_stacked_seeds_as_its_own_copy_would(kind, device):
    assert FACTORS["optimizer"].kind(kind).batchable
    lr = {"sgd": 0.1, "nesterov": 0.05}.get(kind, 0.003)
    compare(cheap_levels(optimizer=level("optimizer", kind, lr=lr),
                         regularization=level("regularization", "weight_decay"),
                         schedule=level("schedule", "onecycle", batch_size=32)), data_on(device))


@pytest.mark.parametrize("kind", FACTORS["augmentation"].kinds())
def test_every_augmentation_draws_from_each_seeds_own_stream(kind, device):
    compare(cheap_levels(augmentation=level("augmentation", kind)), data_on(device, shape=(1, 6, 6)))


def test_a_seed_that_diverges_stops_alone_while_the_others_train_on(device):
    """lr 10 on this task blows up seed 2 at step 18 and no other: the stacked seeds must
    record the same divergence (same step, exactly) and the same healthy runs. Training at
    lr 10 is chaotic, so losses and counts are compared with the chaotic tolerances."""
    levels = cheap_levels(optimizer=level("optimizer", "sgd", lr=10.0),
                          regularization=level("regularization", "dropout", p=0.2))
    seeds = list(range(6))
    data = data_on(device)
    one = [train_run(data, levels, s, 3) for s in seeds]
    assert [r["status"] for r in one].count("diverged") == 1   # the case this test is about
    assert_same_runs(one, train_runs(data, levels, seeds, 3), chaotic=True)


def test_a_kind_that_cannot_stack_trains_its_seeds_one_at_a_time(tmp_path, monkeypatch, device):
    """A kind registered with batchable=False (here: adam, for the test) falls back."""
    adam = FACTORS["optimizer"].kind("adam")
    monkeypatch.setitem(FACTORS["optimizer"]._kinds, "adam", adam.__class__(**{**adam.__dict__, "batchable": False}))
    stacked = cheap_levels(optimizer=level("optimizer", "sgd", lr=0.1))
    alone = cheap_levels()  # adam
    assert batchable(stacked) and not batchable(alone)
    manifest = _job(tmp_path, [stacked, alone], device, seed_batch=3)
    sizes = {r["config_id"]: r["execution"]["seed_batch"] for r in manifest["runs"]}
    assert sizes == {"c0": 3, "c1": 1}


def _job(tmp_path, configs, device, seed_batch, seeds=SEEDS):
    path = tmp_path / "data.pt"
    if not path.exists():
        write_prepared(tiny_data(), path)
    execution = {**EXECUTION_DEFAULTS, "device": str(device), "seed_batch": seed_batch}
    spec = {"dataset": {"name": "tiny", "kind": "tiny", "settings": {}, "budget": {"epochs": 2}},
            "configs": [{"config_id": f"c{i}", "levels": lv} for i, lv in enumerate(configs)],
            "seeds": seeds, "execution": execution}
    return train_job(spec, str(path), str(tmp_path / "runs"), str(tmp_path / "jobs" / "job.json"))


def test_a_job_stacks_only_the_seeds_it_must_train(tmp_path, device):
    """Adding a seed to a stacked job trains the new seed alone and reuses the rest."""
    levels = [cheap_levels(regularization=level("regularization", "dropout", p=0.2))]
    first = _job(tmp_path, levels, device, seed_batch=2, seeds=[0, 1, 2])
    assert first["trained"] == 3
    assert [r["execution"]["seed_batch"] for r in first["runs"]] == [2, 2, 1]
    second = _job(tmp_path, levels, device, seed_batch=2, seeds=[0, 1, 2, 3])
    assert (second["trained"], second["reused"]) == (1, 3)
    assert_same_runs([train_run(data_on(device), levels[0], s, 2) for s in [0, 1]], first["runs"][:2])


def test_execution_choices_resolve_per_device():
    cpu = resolve_execution({"precision": "auto", "memory_format": "auto", "seed_batch": "auto"},
                            torch.device("cpu"), n_seeds=5)
    assert cpu == {"precision": "fp32", "channels_last": False, "seed_batch": 1}
    chosen = resolve_execution({"precision": "bf16", "memory_format": "channels_last", "seed_batch": 4},
                               torch.device("cpu"), n_seeds=5)
    assert chosen == {"precision": "bf16", "channels_last": True, "seed_batch": 4}


def test_precision_is_part_of_a_runs_identity(tmp_path, device):
    """A run trained in fp32 is not reused for a bf16 study (and vice versa)."""
    levels = [cheap_levels()]
    assert _job(tmp_path, levels, device, seed_batch=1, seeds=[0])["trained"] == 1
    path = tmp_path / "data.pt"
    spec = {"dataset": {"name": "tiny", "kind": "tiny", "settings": {}, "budget": {"epochs": 2}},
            "configs": [{"config_id": "c0", "levels": levels[0]}], "seeds": [0],
            "execution": {**EXECUTION_DEFAULTS, "device": str(device), "precision": "bf16"}}
    m = train_job(spec, str(path), str(tmp_path / "runs"), str(tmp_path / "jobs" / "job.json"))
    assert m["trained"] == 1 and m["runs"][0]["execution"]["precision"] == "bf16"
    assert m["runs"][0]["status"] == "ok" and m["runs"][0]["test_accuracy"] > 0.5


def test_channels_last_changes_layout_not_results(device):
    images = data_on(device, shape=(2, 6, 6))
    levels = cheap_levels(architecture=level("architecture", "cnn", **SMALL["cnn"]))
    a = train_run(images, levels, 0, 2)
    b = train_run(images, levels, 0, 2, channels_last=True)
    assert b["execution"]["memory_format"] == "channels_last"
    assert a["n_test_correct"] == b["n_test_correct"]
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=RTOL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_one_clear_message():
    from whatmatters.errors import WhatmattersError
    from whatmatters.jobs import resolve_device

    with pytest.raises(WhatmattersError, match="execution.device: cuda.*no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_a_group_that_raises_leaves_the_jobs_other_runs_stored(tmp_path, monkeypatch, device):
    from whatmatters import train
    from whatmatters.jobs import RunsFailed

    real = train.train_runs

    def fail_for_brier(data, levels, seeds, epochs, **kw):
        if levels["loss"]["kind"] == "brier":
            raise RuntimeError("boom")
        return real(data, levels, seeds, epochs, **kw)

    monkeypatch.setattr(train, "train_runs", fail_for_brier)
    configs = [cheap_levels(loss=level("loss", "brier")), cheap_levels()]
    with pytest.raises(RunsFailed, match=r"config c0 seeds \[0, 1, 2\] \(RuntimeError: boom\); the job.s other"):
        _job(tmp_path, configs, device, seed_batch=3)
    assert sorted(p.name for p in (tmp_path / "runs" / "c1").glob("*.json")) == ["0.json", "1.json", "2.json"]
    assert not (tmp_path / "runs" / "c0").exists() and not (tmp_path / "jobs" / "job.json").exists()


def test_stacked_seeds_that_run_out_of_memory_train_one_at_a_time(tmp_path, monkeypatch, device):
    from whatmatters import train

    real = train.train_runs

    def small_device(data, levels, seeds, epochs, **kw):
        if len(seeds) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(data, levels, seeds, epochs, **kw)

    monkeypatch.setattr(train, "train_runs", small_device)
    manifest = _job(tmp_path, [cheap_levels()], device, seed_batch=3)
    assert manifest["trained"] == 3
    assert [r["execution"]["seed_batch"] for r in manifest["runs"]] == [1, 1, 1]


@pytest.mark.parametrize("key, value, message", [
    ("precision", "fp16", "execution.precision: 'fp16' is not valid; choose one of: auto, fp32, bf16"),
    ("memory_format", "nhwc", "execution.memory_format: 'nhwc' is not valid; choose one of: auto, channels_last"),
    ("seed_batch", 0, "execution.seed_batch: expected 'auto' or an integer >= 1, got 0"),
    ("seed_batch", "two", "execution.seed_batch: expected 'auto' or an integer >= 1, got 'two'"),
])
def test_bad_execution_choices_are_refused_naming_the_valid_ones(key, value, message):
    from conftest import ROOT
    from whatmatters.config import read_config
    from whatmatters.errors import StudyError
    from whatmatters.study import load_study

    default_config = read_config(ROOT / "config.yaml")
    config = {**default_config, "execution": {**default_config["execution"], key: value}}
    with pytest.raises(StudyError, match=re.escape(message)):
        load_study(config)
