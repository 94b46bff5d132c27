"""Shared pytest setup: make the package importable from a plain checkout."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

# Every snakemake call imports every installed executor plugin; the SLURM plugin's import
# runs `scontrol show config`, which waits ~9 s when a slurm.conf names a controller that
# does not answer. No test talks to a SLURM but the one that starts its own (and passes
# SLURM_CONF explicitly): the others get an empty config, which scontrol rejects at once.
os.environ["SLURM_CONF"] = os.devnull


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("WHATMATTERS_TEST_DEVICE", "cpu"),
                     help="training device of the stacked-vs-single checks (tests/test_batched.py): "
                          "cpu (default), cuda, cuda:1, ...; or set WHATMATTERS_TEST_DEVICE")
