"""Nothing lost, nothing silent: crashes and recovery, corrupted files, failed runs, divergence
as data, determinism and safety. docs/reliability.md maps each guarantee to its test here.

Faults in real training jobs are injected by tests/faults/sitecustomize.py, which the
snakemake started here loads through PYTHONPATH (test-only: never on a user's path)."""

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from helpers import cheap_levels, level, tiny_data
from test_pipeline import TINY, snakemake
from whatmatters import data as datasets
from whatmatters.aggregate import aggregate, collect
from whatmatters.cli import main, parser
from whatmatters.errors import DataError, RunTableError
from whatmatters.factors import FACTORS
from whatmatters.outcomes import OUTCOMES
from whatmatters.study import EXECUTION_DEFAULTS
from whatmatters.train import train_run

FAULTS = ROOT / "tests/faults"
PROFILE = ROOT / "workflow/profiles/workstation"
NOT_COMPARED = ["train_seconds", "key", "code_revision"]   # timing, and provenance


def fault_env(fault: str) -> dict:
    return {"WHATMATTERS_TEST_FAULT": fault,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}


def run_table(workdir: Path) -> pd.DataFrame:
    return pd.read_parquet(workdir / "results/table/runs.parquet").drop(columns=NOT_COMPARED)


def manifests(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(workdir.glob("results/runs/*/jobs/*.json"))]


# ---------------------------------------------------------------- whole study: determinism, SIGKILL

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny study trained and aggregated once, without faults."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    snakemake(workdir, "results/table/runs.parquet")
    return workdir


@pytest.mark.slow
def test_every_run_of_the_study_repeated_gives_identical_metrics(uninterrupted):
    """Each stored run of the study, trained again in this process from its recorded settings
    and the prepared data, gives exactly its recorded outcomes."""
    records = [r for m in manifests(uninterrupted) for r in m["runs"]]
    assert len(records) == 32 and all(r["status"] == "ok" for r in records)
    data = {d: datasets.load(uninterrupted / f"results/data/{d}.pt") for d in ("mnist1d", "digits")}
    # as many torch threads as the study's jobs (tests/data/tiny.yaml: execution.threads 1):
    # a CPU kernel's sums are split by thread, so "identical" holds for the same thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for r in records:
            again = train_run(data[r["dataset"]], r["settings"]["levels"], r["seed"],
                              r["settings"]["dataset"]["budget"]["epochs"])
            for key in ("status", "n_test_correct", "n_train_correct", "n_shift_correct", "test_loss",
                        "train_loss", "ece", "train_objective", "steps"):
                assert again[key] == r[key], (r["run_id"], key)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_study_killed_mid_job_completes_with_the_recovery_command(uninterrupted, tmp_path):
    """SIGKILL of snakemake and every training job once two runs of a job are stored; then
    the README's recovery commands finish the study, reusing the runs stored before."""
    workdir, pidfile, marker = tmp_path / "work", tmp_path / "pid", tmp_path / "killed"
    workdir.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **fault_env(f"crash:2:{pidfile}:{marker}")}
    crashed = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(TINY), "--cores", "2", "results/table/runs.parquet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile.write_text(str(crashed.pid))
    assert crashed.wait(timeout=600) == -9
    assert marker.exists()
    stored = list(workdir.glob("results/runs/*/c*/*.json"))
    assert len(stored) >= 2 and len(manifests(workdir)) < 4   # killed mid-study, runs on disk
    assert not (workdir / "results/table/runs.parquet").exists()

    recover = ("--workflow-profile", str(PROFILE))
    snakemake(workdir, *recover, "--unlock")
    snakemake(workdir, *recover, "results/table/runs.parquet")
    # the study run twice (once killed and recovered) gives identical tables, timings aside
    pd.testing.assert_frame_equal(run_table(uninterrupted), run_table(workdir))
    assert sum(m["reused"] for m in manifests(workdir)) >= 2   # what was stored before the kill


# ---------------------------------------------------------------- a run that raises

def tiny_digits(tmp_path: Path, **analysis) -> Path:
    """The tiny study on digits only: 8 configs x 2 seeds in two jobs of 8 runs."""
    config = yaml.safe_load(TINY.read_text())
    config["datasets"] = [d for d in config["datasets"] if d["name"] == "digits"]
    config["analysis"] = {**config["analysis"], **analysis}
    path = tmp_path / f"digits_{len(analysis)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_run_that_raises_is_retried_then_reported_missing(tmp_path):
    from whatmatters.design import expand
    from whatmatters.study import study_or_exit

    strict, lenient = tiny_digits(tmp_path), tiny_digits(tmp_path, allow_missing=True)
    runs = expand(study_or_exit(yaml.safe_load(strict.read_text())))["runs"]
    victim = [r["run_id"] for r in runs if r["job"] == "job0001"][-1]   # its job's other runs train first
    attempts = tmp_path / "attempts.log"
    workdir = tmp_path / "work"
    workdir.mkdir()

    # allow_missing false: the job fails twice, names its missing run, and nothing is analysed
    env = fault_env(f"raise:{victim}:{attempts}")
    result = snakemake(workdir, "results/runs/digits/jobs/job0001.json", config=strict, env=env, check=False)
    assert result.returncode != 0 and "Error in rule train" in result.stdout + result.stderr
    assert len(attempts.read_text().splitlines()) == 2       # retried once
    log = (workdir / "results/logs/train/digits/job0001.log").read_text()
    assert re.search(rf"training failed on attempt 2 of 2 \(RuntimeError: injected fault: run {victim} raises\); "
                     rf"1 of 8 runs of this job have no record: {victim}$", log, re.M), log
    assert not (workdir / "results/runs/digits/jobs/job0001.json").exists()

    # allow_missing true: the last attempt records the hole; the fit goes on without it and says so
    result = snakemake(workdir, "results/analysis/test_accuracy/diagnostics.json", config=lenient, env=env)
    assert len(attempts.read_text().splitlines()) == 4
    failed = json.loads((workdir / "results/runs/digits/jobs/job0001.json").read_text())["failed"]
    assert failed["missing"] == [victim] and failed["attempts"] == 2
    table = pd.read_parquet(workdir / "results/table/runs.parquet")
    assert table.loc[table["status"] == "missing", "run_id"].tolist() == [victim]
    assert f"1 of 16 runs are missing (training failed): {victim}" in (
        workdir / "results/logs/fit/test_accuracy.log").read_text()
    diagnostics = json.loads((workdir / "results/analysis/test_accuracy/diagnostics.json").read_text())
    assert diagnostics["missing_runs"] == {"count": 1, "run_ids": [victim]}


@pytest.fixture
def job(tmp_path):
    """A training job on tiny data: configs cA (trains) and cBad (a transformer whose patch
    is longer than the input: every run of it raises)."""
    data = tiny_data()
    path = tmp_path / "data.pt"
    payload = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    payload["meta"] = json.dumps({"spec": {"name": "tiny"}, "input_shape": [1, 12], "num_classes": 4})
    torch.save(payload, path)
    bad = level("architecture", "transformer", dim=8, depth=1, heads=2, patch=50)
    spec = {
        "dataset": {"name": "tiny", "kind": "digits", "settings": {}, "budget": {"epochs": 1}},
        "configs": [{"config_id": "cA", "levels": cheap_levels()},
                    {"config_id": "cBad", "levels": cheap_levels(architecture=bad)}],
        "seeds": [0, 1],
        "execution": {**EXECUTION_DEFAULTS, "device": "cpu", "runs_per_job": 4, "threads": 1},
    }
    return spec, str(path), tmp_path / "runs"


def train_args(spec, data_path, run_dir, *extra):
    return parser().parse_args(["train", "--spec", json.dumps(spec), "--data", data_path, "--run-dir", str(run_dir),
                                "--out", str(run_dir / "jobs/job0000.json"), *extra])


def test_a_failed_training_job_names_its_missing_runs(job, capsys):
    spec, data_path, run_dir = job
    args = train_args(spec, data_path, run_dir, "--attempt", "1", "--attempts", "2")
    with pytest.raises(SystemExit) as exit:
        args.fn(args)
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err   # a crash's evidence stays in the job's log
    assert err.splitlines()[-1] == (
        "whatmatters train: error: training failed on attempt 1 of 2 (RunsFailed: training raised for config cBad "
        "seeds [0, 1] (RuntimeError: Calculated padded input size per channel: (12). Kernel size: (50). Kernel size "
        "can't be greater than actual input size); the job's other runs are stored); 2 of 4 runs "
        "of this job have no record: tiny-cBad-0, tiny-cBad-1; Snakemake retries the job")
    assert not (run_dir / "jobs/job0000.json").exists()
    assert sorted(p.name for p in (run_dir / "cA").iterdir()) == ["0.json", "1.json"]   # kept for the retry


def test_the_last_attempt_records_missing_runs_when_the_study_allows(job):
    spec, data_path, run_dir = job
    args = train_args(spec, data_path, run_dir, "--attempt", "2", "--attempts", "2", "--allow-missing")
    args.fn(args)   # no exit: Snakemake takes the job as done, and aggregate reads the hole
    manifest = json.loads((run_dir / "jobs/job0000.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == ["tiny-cA-0", "tiny-cA-1"]
    assert manifest["failed"]["missing"] == ["tiny-cBad-0", "tiny-cBad-1"]
    assert manifest["failed"]["error"].startswith("RunsFailed: training raised for config cBad seeds [0, 1] "
                                                  "(RuntimeError: Calculated padded input size")


# ---------------------------------------------------------------- aggregate: corrupted, missing

def record(run_id, **changes):
    return {"run_id": run_id, "status": "ok", "test_accuracy": 0.5, "n_test": 10, "n_test_correct": 5,
            "train_accuracy": 0.5, "n_train": 20, "n_train_correct": 10, "ece": 0.1, "key": "k" + run_id,
            "provenance": {"code_revision": "abc", "device": "cpu"}} | changes


@pytest.fixture
def store(tmp_path):
    """A design of two jobs of two runs each, and both jobs' manifests."""
    rows = [("d-c1-0", "d", "c1", 0, "job0000", "a"), ("d-c1-1", "d", "c1", 1, "job0000", "a"),
            ("d-c2-0", "d", "c2", 0, "job0001", "b"), ("d-c2-1", "d", "c2", 1, "job0001", "b")]
    design = tmp_path / "runs.tsv"
    design.write_text("run_id\tdataset\tconfig_id\tseed\tjob\tinit\n" + "".join("\t".join(map(str, r)) + "\n"
                                                                               for r in rows))
    runs = tmp_path / "runs"
    for job, ids in (("job0000", ["d-c1-0", "d-c1-1"]), ("job0001", ["d-c2-0", "d-c2-1"])):
        (runs / "d/jobs").mkdir(parents=True, exist_ok=True)
        (runs / f"d/jobs/{job}.json").write_text(json.dumps({"runs": [record(i) for i in ids]}))
    assert len(collect(design, runs)) == 4
    return design, runs, runs / "d/jobs/job0001.json"


def test_a_truncated_job_manifest_is_named_and_refused(store, tmp_path, capsys):
    design, runs, manifest = store
    manifest.write_text(manifest.read_text()[:150])
    out = tmp_path / "table/runs.parquet"
    with pytest.raises(SystemExit) as exit:
        main(["aggregate", "--design", str(design), "--runs-dir", str(runs), "--out", str(out)])
    assert exit.value.code == 2
    assert re.fullmatch(rf"whatmatters aggregate: error: unreadable training output {manifest} \(.*\); removed it: "
                        r"rerun snakemake to retrain its job \(its finished runs are reused\)\n", capsys.readouterr().err)
    assert not manifest.exists()
    assert not out.parent.exists()   # no table from a half-read store


CORRUPTIONS = [
    ("runs not a list", lambda m: {"runs": {"d-c2-0": m["runs"][0]}}, r"no list of runs"),
    ("record not a mapping", lambda m: {"runs": [3.5, m["runs"][1]]}, r"runs\[0\] is not a run record"),
    ("unknown status", lambda m: {"runs": [m["runs"][0] | {"status": "fine"}, m["runs"][1]]},
     r"run d-c2-0 has status 'fine'; expected one of ok, diverged"),
    ("more correct than examples", lambda m: {"runs": [m["runs"][0] | {"n_test_correct": 11}, m["runs"][1]]},
     r"run d-c2-0 has n_test=10, n_test_correct=11"),
    ("count as text", lambda m: {"runs": [m["runs"][0], m["runs"][1] | {"n_train": "20"}]},
     r"run d-c2-1 has n_train='20', n_train_correct=10"),
    ("accuracy out of range", lambda m: {"runs": [m["runs"][0] | {"test_accuracy": 1.7}, m["runs"][1]]},
     r"run d-c2-0 has test_accuracy=1.7"),
    ("no provenance", lambda m: {"runs": [m["runs"][0], {k: v for k, v in m["runs"][1].items() if k != "provenance"}]},
     r"run d-c2-1 lacks its key or provenance"),
]


@pytest.mark.parametrize("corrupt, message", [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupted_run_record_is_named_and_refused(store, corrupt, message):
    design, runs, manifest = store
    manifest.write_text(json.dumps(corrupt(json.loads(manifest.read_text()))))
    with pytest.raises(RunTableError, match=rf"^corrupted training output {re.escape(str(manifest))}: {message}; "
                                            r"delete it and rerun snakemake"):
        collect(design, runs)


def test_an_absent_job_manifest_is_named(store):
    design, runs, manifest = store
    manifest.unlink()
    with pytest.raises(RunTableError, match=rf"missing training output {re.escape(str(manifest))}; rerun snakemake"):
        collect(design, runs)
    table = collect(design, runs, allow_missing=True)
    assert table.loc[table["status"] == "missing", "run_id"].tolist() == ["d-c2-0", "d-c2-1"]


def test_runs_of_a_failed_job_are_named_and_refused_unless_allowed(store, tmp_path):
    design, runs, manifest = store
    manifest.write_text(json.dumps({"runs": [record("d-c2-0")],
                                    "failed": {"error": "RuntimeError: boom", "attempts": 2, "missing": ["d-c2-1"]}}))
    with pytest.raises(RunTableError, match=(
            rf"^1 of 4 design runs have no record: d-c2-1; training failed in {re.escape(str(manifest))}: "
            rf"RuntimeError: boom. Fix the cause and retrain them \(finished runs are reused\): "
            rf"snakemake --forcerun {re.escape(str(manifest))}; or set analysis.allow_missing: true")):
        collect(design, runs)
    out = tmp_path / "table/runs.parquet"
    table = aggregate(design, runs, out, allow_missing=True)
    assert table.attrs["missing"] == ["d-c2-1"]
    written = pd.read_parquet(out)
    assert written.set_index("run_id")["status"].to_dict() == {
        "d-c1-0": "ok", "d-c1-1": "ok", "d-c2-0": "ok", "d-c2-1": "missing"}
    assert written["n_test_correct"].isna().tolist() == [False, False, False, True]
    sidecar = json.loads((out.parent / "provenance.json").read_text())
    assert sidecar["missing_runs"] == ["d-c2-1"] and sidecar["failed_jobs"] == {str(manifest): "RuntimeError: boom"}


# ---------------------------------------------------------------- the fit and missing runs

@pytest.fixture
def holed_table(store, tmp_path):
    design, runs, manifest = store
    manifest.write_text(json.dumps({"runs": [record("d-c2-0")], "failed": {"error": "boom", "missing": ["d-c2-1"]}}))
    out = tmp_path / "table/runs.parquet"
    aggregate(design, runs, out, allow_missing=True)
    spec = {"factors": {"init": {"levels": ["a", "b"], "baseline": "a"}}, "datasets": ["d"],
            "outcome": {"name": "test_accuracy", **OUTCOMES["test_accuracy"]}, "hypotheses": [],
            "model": {"method": "collapsed", "interactions": False},
            "sampler": {"chains": 2, "draws": 10, "tune": 10, "target_accept": 0.9, "seed": 1, "cores": 1,
                        "nuts": "auto"}}
    return out, spec


def test_the_fit_refuses_missing_runs_unless_the_study_allows(holed_table, tmp_path, capsys, monkeypatch):
    from whatmatters import fitting, posterior

    table, spec = holed_table
    fit = ["fit", "--table", str(table), "--out", str(tmp_path / "posterior.nc"), "--spec"]
    with pytest.raises(SystemExit) as exit:
        main([*fit, json.dumps({**spec, "allow_missing": False})])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        "whatmatters fit: error: 1 of 4 runs are missing (training failed): d-c2-1; the fit refuses a table with "
        "holes. Retrain them (see the aggregate log), or set analysis.allow_missing: true to fit without them\n")

    fitted = {}
    monkeypatch.setattr(fitting, "fit", lambda runs, spec: fitted.setdefault("runs", runs))
    monkeypatch.setattr(posterior, "save", lambda idata, path: None)
    main([*fit, json.dumps({**spec, "allow_missing": True})])
    assert capsys.readouterr().err == ("whatmatters fit: warning: fitting without 1 of 4 runs are missing "
                                       "(training failed): d-c2-1\n")
    assert fitted["runs"]["run_id"].tolist() == ["d-c1-0", "d-c1-1", "d-c2-0"]
    assert fitted["runs"]["n_test_correct"].dtype == np.int64


# ---------------------------------------------------------------- divergence as data

def test_every_kind_repeated_on_cpu_gives_identical_metrics():
    extra = {"optimizer": {"lr": 0.01}, "architecture": {"width": 4, "dim": 8, "heads": 2, "depth": 1},
             "schedule": {"batch_size": 32}}
    data = tiny_data(n=128)
    for factor, registry in FACTORS.items():
        for kind in registry.kinds():
            settings = {k: v for k, v in extra.get(factor, {}).items() if k in registry.settings(kind)}
            levels = cheap_levels(**{factor: level(factor, kind, **settings)})
            a, b = (train_run(data, levels, seed=5, epochs=2) for _ in range(2))
            for r in (a, b):
                r.pop("train_seconds")
                r.pop("execution", None)
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), (factor, kind)


@pytest.mark.slow
def test_diverged_runs_are_data_and_rank_their_factor_first():
    """A huge learning rate diverges; its runs keep their measured (chance) accuracies, enter
    the fit, and the optimizer comes out as the factor that matters most."""
    from whatmatters.fitting import fit

    data = tiny_data(n=256)
    grid = {"optimizer": {"adam": level("optimizer", "adam", lr=0.01),
                          "huge_lr": level("optimizer", "sgd", name="huge_lr", lr=1e4)},
            "init": {"he": level("init", "he"), "xavier": level("init", "xavier")},
            "loss": {"ce": level("loss", "cross_entropy", name="ce"), "focal": level("loss", "focal")}}
    rows = []
    for opt in grid["optimizer"]:
        for init in grid["init"]:
            for loss in grid["loss"]:
                for seed in range(3):
                    levels = cheap_levels(optimizer=grid["optimizer"][opt], init=grid["init"][init],
                                          loss=grid["loss"][loss])
                    r = train_run(data, levels, seed=seed, epochs=3)
                    rows.append({"run_id": f"tiny-{opt}-{init}-{loss}-{seed}", "dataset": "tiny",
                                 "optimizer": opt, "init": init, "loss": loss, **r})
    table = pd.DataFrame(rows)
    diverged = table[table["optimizer"] == "huge_lr"]
    assert (diverged["status"] == "diverged").all() and (table.loc[table["optimizer"] == "adam", "status"] == "ok").all()
    assert (diverged["n_test_correct"] == diverged["test_accuracy"] * diverged["n_test"]).all()   # measured
    assert diverged["test_accuracy"].mean() < 0.45 < table.loc[table["optimizer"] == "adam", "test_accuracy"].mean()

    spec = {"factors": {f: {"levels": list(lv), "baseline": list(lv)[0]} for f, lv in grid.items()},
            "datasets": ["tiny"], "outcome": {"name": "test_accuracy", **OUTCOMES["test_accuracy"]},
            "hypotheses": [],
            "model": {"method": "collapsed", "interactions": False},
            "sampler": {"chains": 2, "draws": 300, "tune": 300, "target_accept": 0.9, "seed": 1, "cores": 1,
                        "nuts": "pymc"}, "allow_missing": False}
    idata = fit(table, spec)
    assert set(diverged["run_id"]) <= set(idata.constant_data["run"].values)   # the fit used them
    importance = idata.posterior["importance_pooled"]
    top = importance["factor"].values[importance.argmax("factor").values.ravel()]
    assert (top == "optimizer").mean() > 0.95


# ---------------------------------------------------------------- safety

PACKAGE = [*sorted((ROOT / "workflow/whatmatters").rglob("*.py")), *sorted((ROOT / "workflow/rules").glob("*.smk")),
           ROOT / "Snakefile"]
UNSAFE = re.compile(r"yaml\.(?:load|unsafe_load|full_load)\(|\b(?:pickle|dill|joblib|marshal)\.loads?\(|Unpickler\(|"
                    r"\bshelve\b|read_pickle|"
                    r"allow_pickle=True|(?<![.\w])(?:eval|exec)\(|shell=True|os\.system\(|os\.popen\(")
# The registry evaluates its own builders' type annotations (source code, never a config value).
ALLOWED = {("registry.py", 'annotation = eval(annotation, {"float": float, "int": int, "bool": bool, "str": str})')}


def test_no_unsafe_loading_or_execution_in_the_package():
    found = []
    for path in PACKAGE:
        for line in path.read_text().splitlines():
            code = line.split("#")[0]
            if UNSAFE.search(code) and (path.name, line.strip()) not in ALLOWED:
                found.append(f"{path.relative_to(ROOT)}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                found.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert found == []


def test_config_values_reach_the_shell_only_json_encoded_and_quoted():
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    uses = re.findall(r"\{params\.(spec|study)(:q)?\}", rules)
    assert uses and all(q == ":q" for _, q in uses)
    # the settings that grow with the study reach their step in a file (a command line is finite)
    assert "--spec @{input.spec}" in rules and "--study @{input}" in rules
    assert re.findall(r"(spec|study)=(\w+)", rules) and all(
        fn in ("dataset_spec", "train_spec", "fit_spec", "json") for _, fn in re.findall(r"(spec|study)=(\w+)", rules))


class _Touches:
    """Unpickling this would create a file: the proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_prepared_data_is_read_without_unpickling(tmp_path):
    evil = tmp_path / "digits.pt"
    torch.save({"x_train": torch.zeros(2), "meta": _Touches(tmp_path / "pwned")}, evil)
    with pytest.raises(DataError, match=r"^prepared dataset .*digits.pt is unreadable \(it holds objects other than "
                                        r"tensors, and those are never unpickled\); delete it and rerun$"):
        datasets.load(evil)
    assert not (tmp_path / "pwned").exists()
    pickle.loads(pickle.dumps(_Touches(tmp_path / "control")))   # the payload works when unpickled
    assert (tmp_path / "control").exists()



def test_every_test_named_in_docs_reliability_exists():
    doc = (ROOT / "docs/reliability.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", doc)
    assert len(named) >= 20
    for file, test in named:
        assert re.search(rf"^def {test}\(", (ROOT / "tests" / file).read_text(), re.M), f"{file}::{test}"


@pytest.mark.slow
def test_a_truncated_stored_run_is_named_and_retrained_by_the_next_run(tmp_path):
    """A stored run truncated after its job finished: the next snakemake run sees it changed,
    reruns its job, which names the file in its log and retrains only that run."""
    study, workdir = tiny_digits(tmp_path), tmp_path / "work"
    target = "results/runs/digits/jobs/job0000.json"
    snakemake(workdir, target, config=study)
    manifest = json.loads((workdir / target).read_text())
    victim = workdir / f"results/runs/digits/{manifest['runs'][0]['config_id']}/{manifest['runs'][0]['seed']}.json"
    victim.write_text(victim.read_text()[:100])
    result = snakemake(workdir, target, config=study)
    assert "Nothing to be done" not in result.stdout + result.stderr
    log = (workdir / "results/logs/train/digits/job0000.log").read_text()
    assert f"stored run {victim.relative_to(workdir)} is unreadable" in log, log
    again = json.loads((workdir / target).read_text())
    assert again["trained"] == 1 and again["reused"] == len(manifest["runs"]) - 1
    assert json.loads(victim.read_text())["run_id"] == manifest["runs"][0]["run_id"]


@pytest.mark.slow
def test_an_error_a_retry_cannot_fix_is_not_retried(tmp_path):
    """execution.device: cuda on a machine without a GPU fails its first attempt naming the
    cause; Snakemake's retry stops at once (before importing torch), naming it again."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    config = yaml.safe_load(tiny_digits(tmp_path).read_text())
    config["execution"]["device"] = "cuda"
    study = tmp_path / "cuda.yaml"
    study.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    result = snakemake(workdir, "results/runs/digits/jobs/job0000.json", config=study, check=False)
    assert result.returncode != 0
    log = (workdir / "results/logs/train/digits/job0000.log").read_text()   # the last attempt's
    assert re.fullmatch(r"whatmatters train: error: PermanentError: execution.device: cuda, but this job sees no "
                        r"CUDA device .*; not retried: a retry cannot fix this\n", log), log


def test_the_retry_of_a_permanent_error_does_not_load_torch(tmp_path):
    out = tmp_path / "jobs/job0000.json"
    out.parent.mkdir()
    (tmp_path / "jobs/job0000.json.cannot-retry").write_text("DataError: digits.pt is unreadable")
    code = ("import sys; from whatmatters.cli import main\n"
            f"try: main(['train', '--spec', '@x', '--data', 'x', '--run-dir', 'x', '--out', {str(out)!r}, '--attempt', '2'])\n"
            "except SystemExit as e: print(e.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    assert result.stdout == "1 False\n"
    assert result.stderr == ("whatmatters train: error: DataError: digits.pt is unreadable; not retried: "
                             "a retry cannot fix this\n")


@pytest.mark.slow
def test_a_job_retrained_for_a_changed_run_is_not_rerun_again(tmp_path):
    """After the rerun that retrains a truncated stored run, nothing is left to do."""
    study, workdir = tiny_digits(tmp_path), tmp_path / "work"
    target = "results/runs/digits/jobs/job0000.json"
    snakemake(workdir, target, config=study)
    victim = next((workdir / "results/runs/digits").glob("c*/1.json"))
    victim.write_text("{")
    dry = snakemake(workdir, target, "-n", config=study)
    assert "a run of snakemake retrains them" in dry.stderr and (workdir / target).exists()
    result = snakemake(workdir, target, config=study)
    assert re.search(r"whatmatters: stored runs changed after results/runs/digits/jobs/job0000.json was "
                     r"written \(results/runs/digits/c\w+/1.json\): rerunning that job", result.stderr), result.stderr
    assert "Nothing to be done" in (again := snakemake(workdir, target, config=study)).stdout + again.stderr


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_results_take_the_umask_mode_not_0600(tmp_path, umask, mode):
    """Atomic writes go through a mkstemp file (mode 0600); the result must get the mode a
    plain open() would give, so a group sharing a cluster project directory can read it."""
    code = (f"import os; os.umask({umask}); from whatmatters import io; "
            f"io.write_json({str(tmp_path / 'a.json')!r}, {{'x': 1}}); "
            f"io.write_text({str(tmp_path / 'b.md')!r}, 'text')")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("a.json", "b.md"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.md"]
