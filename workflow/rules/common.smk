# Loads the study and answers "which files?". Logic lives in the whatmatters package.
import json
import os
import re
import sys
from pathlib import Path

# The package runs from this checkout in any environment (venv, conda env, cluster node):
# here, and in every job's `python -m whatmatters` through the inherited PYTHONPATH.
WORKFLOW_DIR = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, WORKFLOW_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [WORKFLOW_DIR, os.environ.get("PYTHONPATH")])
)

from whatmatters.study import study_and_design_or_exit
from whatmatters.design import job_spec
from whatmatters.analysis_spec import analysis_spec

STUDY, DESIGN = study_and_design_or_exit(config)  # one clear message and exit 2 on a bad study
DATASETS = [d["name"] for d in STUDY["datasets"]]
OUTCOMES = STUDY["outcomes"]


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),  # names were checked against study.NAME
    outcome="|".join(OUTCOMES),
    job=r"job\d{4}",


def dataset_spec(wildcards):
    """What prepare_data needs: kind, settings, variant and shift (no training budget:
    changing it must not re-prepare)."""
    d = next(d for d in STUDY["datasets"] if d["name"] == wildcards.dataset)
    return json.dumps({k: v for k, v in d.items() if k != "budget"}, sort_keys=True)


def train_spec(wildcards):
    return json.dumps(
        job_spec(STUDY, DESIGN, wildcards.dataset, wildcards.job), sort_keys=True
    )


def fit_spec(wildcards):
    return json.dumps(analysis_spec(STUDY, wildcards.outcome))


def job_manifests():
    return [f"results/runs/{d}/jobs/{j}.json" for (d, j) in DESIGN["jobs"]]


def all_targets():
    plots = (
        "ranks.png",
        "ranks.svg",
        "importance.png",
        "importance.svg",
        "level_effects.png",
        "level_effects.svg",
        "diagnostics.png",
    )
    summaries = ("importance.csv", "ranks.csv", "hypotheses.json", "diagnostics.json")
    return (
        ["results/design/runs.tsv", "results/table/runs.parquet"]
        + ["results/analysis/outcomes.csv", "results/plots/outcomes.png"]
        + [f"results/plots/{o}/{p}" for o in OUTCOMES for p in plots]
        + [f"results/analysis/{o}/{s}" for o in OUTCOMES for s in summaries]
    )
