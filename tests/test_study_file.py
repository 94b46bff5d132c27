"""A study file is the whole study and nothing in it executes: `whatmatters check FILE` and
`snakemake --configfile FILE`, run from the repository root beside config.yaml as a user
runs them, read it through the same code and agree (the same refusal, or the same jobs)."""

import contextlib
import copy
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from whatmatters.cli import main

TINY = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
WORKSTATION = "workflow/profiles/workstation"


def dry_run(study: Path | list[Path], *args: str) -> subprocess.CompletedProcess:
    """`snakemake -n --configfile study` from the repository root (config.yaml beside it),
    planning every job (--forceall) whatever an earlier `make run` left in results/."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    studies = [str(s) for s in (study if isinstance(study, list) else [study])]
    cmd = [sys.executable, "-m", "snakemake", "--configfile", *studies, "--cores", "1", "--dry-run",
           "--forceall", "--quiet", "rules", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def check(study: Path) -> tuple[int, str]:
    """`whatmatters check FILE`: (exit status, what it printed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["check", str(study)])
            status = 0
        except SystemExit as e:
            status = e.code
    return status, out.getvalue() + err.getvalue()


def write(tmp_path: Path, study: dict, name: str = "my_study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study))
    return path


def study_with(**changes) -> dict:
    study = copy.deepcopy(TINY)
    for key, value in changes.items():
        if value is ...:
            study.pop(key)
        else:
            study[key] = value
    return study


STUDIES = {
    "tiny as written": TINY,
    "full design": study_with(design={"kind": "full"}),
    "random design": study_with(design={"kind": "random", "n_configs": 5, "seed": 3}),
    "one at a time": study_with(design={"kind": "one_at_a_time"}),
    "no hypotheses": study_with(hypotheses=...),
    "no execution or analysis": study_with(execution=..., analysis=...),
}


@pytest.mark.parametrize("study", STUDIES.values(), ids=STUDIES.keys())
def test_snakemake_plans_the_jobs_check_counts(study, tmp_path):
    path = write(tmp_path, study)
    status, said = check(path)
    assert status == 0, said
    jobs = int(re.search(r"in (\d+) jobs", said)[1])
    result = dry_run(path)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", result.stdout, re.M)}
    assert planned["train"] == jobs
    assert planned["prepare_data"] == len(study["datasets"])
    assert "is extended by additional config" not in result.stdout + result.stderr


PARTIAL = {
    "two factors only": (study_with(factors={f: TINY["factors"][f] for f in ("init", "optimizer")}),
                         "factors: missing required key 'architecture'"),
    "no datasets": (study_with(datasets=...), "config: missing required key 'datasets'"),
    "baseline not a level (config.yaml's)": (
        study_with(factors={**TINY["factors"], "architecture": {**TINY["factors"]["architecture"], "baseline": "cnn"}}),
        "factors.architecture.baseline: 'cnn' is not one of its levels: mlp"),
}


@pytest.mark.parametrize("study, message", PARTIAL.values(), ids=PARTIAL.keys())
def test_a_partial_study_is_refused_alike_never_merged_into_config_yaml(study, message, tmp_path):
    path = write(tmp_path, study)
    status, said = check(path)
    assert status == 2 and message in said, said
    result = dry_run(path)
    assert result.returncode != 0
    assert re.fullmatch(rf"whatmatters: invalid study: {re.escape(str(path))}: {re.escape(message)}\n",
                        result.stderr), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_one_study_file_at_a_time(tmp_path):
    result = dry_run([write(tmp_path, TINY), write(tmp_path, TINY, "other.yaml")])
    assert result.returncode != 0
    assert "give one study file" in result.stderr
    assert "Traceback" not in result.stderr


EXECUTING = {
    "yte template": '__use_yte__: true\nseeds: ?__import__("os").system("touch {marker}") + 2\n',
    "yte definitions": '__use_yte__: true\n__definitions__:\n  - __import__("os").system("touch {marker}")\n',
    "python tag": 'seeds: !!python/object/apply:os.system ["touch {marker}"]\n',
}


@pytest.mark.parametrize("text", EXECUTING.values(), ids=EXECUTING.keys())
def test_nothing_in_a_study_executes(text, tmp_path):
    """Neither `check` nor the documented snakemake command runs code from a study: the
    workflow profile reads the file before Snakemake's own (templating) reader does."""
    marker = tmp_path / "marker"
    study = tmp_path / "evil.yaml"
    study.write_text(text.format(marker=marker))
    status, said = check(study)
    assert status == 2 and "is not allowed" in said, said
    result = dry_run(study, "--workflow-profile", WORKSTATION)
    assert result.returncode == 2
    assert re.fullmatch(r"whatmatters: invalid study: .*is not allowed; a study is plain data[^\n]*\n",
                        result.stderr.split("\n", 1)[-1] if result.stderr.startswith("Using") else result.stderr), \
        result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("text", EXECUTING.values(), ids=EXECUTING.keys())
def test_nothing_in_a_study_executes_under_plain_snakemake(text, tmp_path):
    """The issue's own command, `snakemake --configfile FILE -n` with no workflow profile:
    the venv's whatmatters_guard.pth (written by `make setup`) refuses the study before
    Snakemake reads it, in one line, and the marker file is never created."""
    marker = tmp_path / "marker"
    study = tmp_path / "evil.yaml"
    study.write_text(text.format(marker=marker))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in ([str(Path(sys.executable).parent / "snakemake"), "--configfile", str(study), "-n"],
                [sys.executable, "-m", "snakemake", f"--configfile={study}", "-n"]):
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 2, (cmd, result.stderr[-2000:])
        assert re.fullmatch(r"whatmatters: invalid study: .*is not allowed; a study is plain data[^\n]*\n",
                            result.stderr), result.stderr
        assert not marker.exists()
