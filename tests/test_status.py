"""Progress you can see: each training job logs every run as it finishes, and
`whatmatters status` sums up the run store (done / total per dataset, failures, time left)."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from test_pipeline import snakemake
from test_reliability import tiny_digits


@pytest.mark.slow
def test_a_job_logs_each_run_and_status_counts_them(tmp_path):
    study, workdir = tiny_digits(tmp_path), tmp_path / "work"
    snakemake(workdir, "results/runs/digits/jobs/job0000.json", config=study)
    log = (workdir / "results/logs/train/digits/job0000.log").read_text()
    assert re.search(r"digits: 8 runs in this job: 0 stored, 8 to train on cpu", log), log
    lines = re.findall(r"^\d\d:\d\d:\d\d run (\d) of 8 trained: digits c\w{10} seed \d: ok, test accuracy 0\.\d{4}, "
                       r"\d+\.\d s$", log, re.M)
    assert lines == [str(i) for i in range(1, 9)], log

    def status(*extra):
        result = subprocess.run([sys.executable, "-m", "whatmatters", "status", str(study), *extra], cwd=workdir,
                                capture_output=True, text=True, timeout=120,
                                env={"PYTHONPATH": str(ROOT / "workflow"), "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = status()
    assert re.search(r"^digits\s+8 / 16 runs done$", out, re.M), out
    assert re.search(r"^all\s+8 / 16 runs done \(50%\), 8 left$", out, re.M), out
    assert re.search(r"measured: \d+\.\d s per run \(median of 8\); .* left; at the last 10 minutes' rate", out), out

    # a job that met an error a retry cannot fix is named
    (workdir / "results/runs/digits/jobs/job0001.json.cannot-retry").write_text("PermanentError: no GPU")
    assert re.search(r"^\s+failed: job0001: PermanentError: no GPU$", status(), re.M)

    # a run stored by other code or settings is not counted done
    run = next((workdir / "results/runs/digits").glob("c*/0.json"))
    record = json.loads(run.read_text())
    run.write_text(json.dumps({**record, "key": "stale"}))
    assert re.search(r"^digits\s+7 / 16 runs done$", status(), re.M)
