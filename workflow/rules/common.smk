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

from whatmatters.study import study_file_or_exit
from whatmatters.design import job_spec
from whatmatters.runstore import forget_jobs_with_changed_runs
from whatmatters.analysis_spec import analysis_spec
from whatmatters.outputs import FIGURES, SUMMARIES
from whatmatters.io import write_text

# The study file (--configfile, else config.yaml) read and checked as `whatmatters check FILE`
# does; one clear message and exit 2 on a bad study. It is the whole study: `config` becomes
# exactly its data, never a merge of it into config.yaml.
RAW_STUDY, STUDY, DESIGN = study_file_or_exit(
    workflow.overwrite_configfiles, workflow.config_settings.config
)
config.clear()
config.update(RAW_STUDY)
DATASETS = [d["name"] for d in STUDY["datasets"]]
OUTCOMES = STUDY["outcomes"]

# A stored run changed after its job finished (truncated by a full disk, edited, copied over):
# that job's manifest is removed, so it reruns, names the file in its log and retrains it.
if workflow.is_main_process:
    for line in forget_jobs_with_changed_runs(
        "results/runs", DESIGN["jobs"], STUDY["seeds"], sys.argv
    ):
        print(f"whatmatters: {line}", file=sys.stderr)


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


# The per-outcome outputs the report shows: output name -> (caption in workflow/report/, subcategory).
REPORTED_SUMMARIES = {
    "importance": ("importance_table.rst", "Tables"),
    "estimands": ("estimands_table.rst", "Tables"),
    "classical": ("classical.rst", "Tables"),
    "interactions": ("interactions.rst", "Tables"),
    "hypotheses_table": ("hypotheses.rst", "Tables"),
    "hypotheses": ("hypotheses.rst", "Tables"),
}
REPORTED_FIGURES = {
    "ranks": ("ranks.rst", "Importance ranks"),
    "importance": ("importance.rst", "Importance"),
    "level_effects": ("level_effects.rst", "Level effects"),
    "ppc": ("ppc.rst", "Posterior predictive check"),
    "estimands": ("estimands.rst", "Importance"),
    "diagnostics": ("diagnostics.rst", "Sampling diagnostics"),
}


# The report opens on the study's answer (rule answer), then the workflow's description.
DESCRIPTION = f"{WORKFLOW_DIR}/report/workflow.rst"
FIRST_PAGE = "results/report/first_page.rst"


def first_page():
    """The report's first page (the Snakefile's `report:`): the answer once rule answer has
    written it, else the description alone. Absolute, as `report:` reads a relative path
    beside the Snakefile and the page lies in the working directory."""
    page = Path(FIRST_PAGE).resolve()
    return str(page) if page.exists() else DESCRIPTION


def outcome_files(folder, files, reported):
    """{output name: path} of one outcome's `files` (whatmatters.outputs) in `folder`, those
    the report shows flagged with their caption."""
    paths = {name: f"{folder}/{file}" for name, file in files.items()}
    for name, (caption, subcategory) in reported.items():
        paths[name] = report(
            paths[name],
            caption=f"../report/{caption}",
            category="{outcome}",
            subcategory=subcategory,
        )
    return paths


def all_targets():
    """Every output of the study's rules: design, run table, each outcome's summaries and
    figures, the outcomes compared, and the answer."""
    per_outcome = [*rules.summarize.output, *rules.plot.output]
    return [
        *rules.design.output,
        *rules.aggregate.output,
        *expand(per_outcome, outcome=OUTCOMES),
        *rules.compare_outcomes.output,
        *rules.answer.output,
    ]
