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
