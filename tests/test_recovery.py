"""The quick version of the validation by simulation (benchmarks/recovery.py --quick):
planted hierarchies come back and the intervals are not absurdly narrow or wide."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_quick_recovery(tmp_path):
    out = tmp_path / "recovery.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/recovery.py"), "--quick", "--out", str(out)],
                   check=True, capture_output=True, timeout=900)
    result = json.loads(out.read_text())
    assert result["completed"] == result["planned"]
    main = result["summary"]["main"]
    assert main["mean_p_true_top_first"] > 0.8        # the top factor is found
    assert main["mean_spearman"] > 0.8                # and the order, roughly
    coverage = main["coverage"]["overall"]
    assert 0.25 <= coverage["50"]["coverage"] <= 0.75
    assert 0.7 <= coverage["90"]["coverage"] <= 1.0


@pytest.mark.slow
def test_quick_misspecified(tmp_path):
    """benchmarks/misspecified.py --quick: one study of the model's own process and one with
    strong interactions; every study completes, the truth is recorded beside the posterior,
    and the interaction table is flagged by the model check while the additive one is not."""
    out = tmp_path / "misspecified.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/misspecified.py"), "--quick", "--out", str(out)],
                   check=True, capture_output=True, timeout=900)
    result = json.loads(out.read_text())
    assert result["completed"] == result["planned"] == 2
    records = {r["kind"]: r for r in result["records"]}
    assert set(records) == {"control", "interactions"}
    for r in records.values():
        assert "error" not in r
        for scope in r["scopes"].values():
            assert len(scope["truth"]) == len(scope["mean"]) == len(scope["covered"]) == 7
    assert records["interactions"]["model_check"] and not records["control"]["model_check"]
    assert result["summary"]["control"]["top_mean"] is None or result["summary"]["control"]["top_mean"] > 0.5
