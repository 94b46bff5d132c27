"""benchmarks/gpu_acceptance.sh in its CPU mode: every step runs and every figure is written,
so the script is ready (and not rotten) when a GPU is there."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow   # ~3 minutes on 2 cores: quick benchmarks, the tiny study with its fit
def test_the_gpu_acceptance_script_runs_every_step_on_a_cpu(tmp_path):
    result = subprocess.run([str(ROOT / "benchmarks" / "gpu_acceptance.sh"), "--cpu", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    figures = json.loads((tmp_path / "gpu_acceptance.json").read_text())
    assert {"environment", "train_speed", "study_check", "startup_share", "gpu_hours", "sections"} <= set(figures)
    assert figures["environment"]["torch"] and figures["environment"]["mode"] == "cpu"
    assert {w["workload"] for w in figures["train_speed"]["speed"]} == {"mnist1d_cnn"}
    check = figures["study_check"]
    assert check["ok"] and check["device"] == {"cpu": check["records"]} and check["fits"] == ["test_accuracy"]
    assert figures["gpu_hours"]["estimated_gpu_hours"] > 0
    markdown = (tmp_path / "gpu_acceptance.md").read_text()
    assert "b_over_a" in markdown and "estimated hours" in markdown
