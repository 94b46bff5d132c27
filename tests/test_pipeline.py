"""The whole workflow on a tiny study: snakemake end to end, reruns, bad input."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from whatmatters.outcomes import OUTCOMES

TINY = ROOT / "tests/data/tiny.yaml"
SLURM_HARNESS = ROOT / "tests/slurm"


def snakemake(workdir: Path, *args: str, config: Path = TINY, check: bool = True, env: dict | None = None):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def planned_jobs(workdir: Path, config: Path) -> dict[str, int]:
    """Job counts per rule that a dry run would execute."""
    out = snakemake(workdir, "--dry-run", "--quiet", "rules", config=config).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m[1] != "total"}


def trained(workdir: Path) -> int:
    return sum(json.loads(p.read_text())["trained"] for p in workdir.glob("results/runs/*/jobs/*.json"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny study run end to end once, report included."""
    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir)
    snakemake(workdir, "--report", "results/report.html")
    return workdir


@pytest.mark.slow
def test_end_to_end_produces_table_posterior_plots_and_report(finished):
    table = pd.read_parquet(finished / "results/table/runs.parquet")
    assert len(table) == 8 * 2 * 2  # configs x datasets x seeds
    assert {"init", "optimizer", "loss", "test_accuracy", "n_test_correct", "status"} <= set(table.columns)
    assert table["run_id"].is_unique
    assert (finished / "results/table/runs.csv").exists()
    design = pd.read_csv(finished / "results/design/runs.tsv", sep="\t")
    assert list(design["run_id"]) == list(table["run_id"])
    analysis = finished / "results/analysis/test_accuracy"
    assert (analysis / "posterior.nc").stat().st_size > 0
    ranks = pd.read_csv(analysis / "ranks.csv")
    assert set(ranks["factor"]) == {"init", "optimizer", "loss"}  # fixed factors are not ranked
    hypotheses = json.loads((analysis / "hypotheses.json").read_text())
    assert "guess" in json.dumps(hypotheses)
    for name in ("ranks", "importance", "level_effects"):
        for ext in ("png", "svg"):
            assert (finished / f"results/plots/test_accuracy/{name}.{ext}").stat().st_size > 0
    report = (finished / "results/report.html").read_text(errors="replace")
    assert "ranks.png" in report


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium (`apt-get install chromium`). Skipped, saying why, where it is not
    installed; a failure instead when WHATMATTERS_REQUIRE_CHROMIUM=1 (CI), so the browser test
    cannot pass by not running."""
    path = shutil.which("chromium")
    if path is None:
        reason = "no chromium on PATH (apt-get install chromium): the report is not checked in a browser"
        if os.environ.get("WHATMATTERS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"WHATMATTERS_REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    return path


class _VisibleText(HTMLParser):
    """The text of a page as a reader sees it: scripts and styles left out, a line per block."""
    BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "div", "br", "ul", "ol", "tr", "td", "th"}

    def __init__(self):
        super().__init__()
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")
        self.parts.append("\n" if tag in self.BLOCKS else "")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style")
        self.parts.append("\n" if tag in self.BLOCKS else "")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    def lines(self) -> list[str]:
        return [" ".join(line.split()) for line in "".join(self.parts).splitlines() if line.strip()]


def first_page(chromium: str, report: Path, profile: Path) -> list[str]:
    """The lines of `report` as headless Chromium shows it on opening, its JavaScript run, no click."""
    dom = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
                          "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    parser = _VisibleText()
    parser.feed(dom)
    return parser.lines()


@pytest.mark.slow
def test_the_reports_first_page_states_the_answer_in_a_browser(chromium, finished, tmp_path):  # no browser: skip first
    """Opened in Chromium, results/report.html says per outcome the pooled order with each
    factor's P(rank), each hypothesis's P(holds) and Kendall's tau, and the diagnostics'
    verdict, as the results files say them; results/summary.md says the same."""
    lines = first_page(chromium, finished / "results/report.html", tmp_path / "chromium")
    summary = (finished / "results/summary.md").read_text()
    assert "How this answer was made" in lines, lines[:40]
    outcomes = yaml.safe_load(TINY.read_text())["outcomes"]
    starts = [lines.index(f"{OUTCOMES[o]['label']} ({o})") for o in outcomes]     # a section per outcome
    ends = [*starts[1:], lines.index("How this answer was made")]
    for outcome, start, end in zip(outcomes, starts, ends):
        analysis = finished / "results/analysis" / outcome
        label = OUTCOMES[outcome]["label"]
        page = lines[start:end]
        ranks = pd.read_csv(analysis / "ranks.csv").query("dataset == 'pooled'")
        p = ranks.pivot(index="factor", columns="rank", values="probability")
        expected_rank = (p * p.columns.to_numpy()).sum(axis=1)
        shown = [m.groups() for line in page if (m := re.fullmatch(r"(\S+): rank (\d+) with P = ([\d.]+)", line))]
        assert sorted(f for f, _, _ in shown) == sorted(p.index), page
        assert [int(k) for _, k, _ in shown] == list(range(1, len(p) + 1))
        assert [f"{p.loc[f, int(k)]:.2f}" for f, k, _ in shown] == [prob for _, _, prob in shown]
        assert list(expected_rank[[f for f, _, _ in shown]]) == sorted(expected_rank)    # most important first
        for f, k, prob in shown:                                          # summary.md: the same answer
            assert f"**{f}**: rank {k} with P = {prob}" in summary
        for h in pd.read_csv(analysis / "hypotheses.csv").query("dataset == 'pooled'").itertuples():
            fact = f"{h.hypothesis} ({h.text}): P(holds) = {h.p_holds:.2f}, Kendall's tau = {h.tau_mean:.2f}"
            assert any(line.startswith(fact) for line in page), (fact, page)
        diag = json.loads((analysis / "diagnostics.json").read_text())
        verdict = (f"Diagnostics: SAMPLING UNHEALTHY, do not trust these ranks: {diag['problems'][0]}"
                   if diag["problems"] else f"Diagnostics: MODEL CHECK: {diag['model_check'][0]}"
                   if diag["model_check"] else "Diagnostics: green: sampling healthy")
        assert any(line.startswith(verdict) for line in page), (verdict, page)
        assert f"![{label}: rank probabilities](plots/{outcome}/ranks.png)" in summary    # its figures beside it
        assert (finished / "results/plots" / outcome / "ranks.png").exists()


@pytest.fixture(scope="module")
def slurm_cluster():
    """A single-node SLURM on localhost for this module (tests/slurm/start_slurm.sh): the
    environment that reaches it. Skipped, saying why, where none can run; a failure instead
    when WHATMATTERS_REQUIRE_SLURM=1 (CI), so the SLURM test cannot pass by not running."""
    def unavailable(reason: str):
        if os.environ.get("WHATMATTERS_REQUIRE_SLURM") == "1":
            pytest.fail(f"WHATMATTERS_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    started = subprocess.run([str(SLURM_HARNESS / "start_slurm.sh")], capture_output=True, text=True, timeout=120,
                             check=False)
    if started.returncode == 3:  # this machine cannot host one; the message says why
        unavailable(started.stderr.strip())
    assert started.returncode == 0, f"start_slurm.sh failed:\n{started.stdout}\n{started.stderr}"
    conf = Path(re.search(r"SLURM_CONF=(\S+)", started.stdout)[1])
    yield {"SLURM_CONF": str(conf)}
    subprocess.run([str(SLURM_HARNESS / "stop_slurm.sh"), str(conf.parent)], timeout=60, check=True)


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_run_matches_the_local_run(slurm_cluster, finished, tmp_path):
    """The tiny study end to end through SLURM with the project's profile: training jobs go
    as job arrays asking for a GPU each, and the run table equals the local run's."""
    result = snakemake(tmp_path, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
                       "--slurm-init-seconds-before-status-checks", "5", env=slurm_cluster)
    log = result.stdout + result.stderr
    assert re.search(r"Submitted array job with Snakemake IDs \S+ and SLURM job ID \d+", log), log[-3000:]
    jobs = subprocess.run(["scontrol", "--oneliner", "show", "job"], capture_output=True, text=True,
                          env={**os.environ, **slurm_cluster}, check=True).stdout.splitlines()
    train = [j for j in jobs if "Comment=rule_train" in j]
    assert train and all("ArrayJobId=" in j and "TresPerJob=gres:gpu:1" in j for j in train)

    def table(workdir):  # timing and code revision aside, every column must match
        t = pd.read_parquet(workdir / "results/table/runs.parquet")
        return t.drop(columns=["train_seconds", "code_revision"]).sort_values("run_id", ignore_index=True)

    pd.testing.assert_frame_equal(table(tmp_path), table(finished))
    for name in ("ranks.png", "importance.svg"):
        assert (tmp_path / f"results/plots/test_accuracy/{name}").stat().st_size > 0


@pytest.mark.slow
def test_nothing_reruns_when_nothing_changed(finished):
    assert planned_jobs(finished, TINY) == {}


@pytest.mark.slow
def test_editing_one_level_reruns_only_the_runs_that_use_it(finished, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["factors"]["init"]["levels"][1]["std"] = 0.02  # the small_normal level
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    plan = planned_jobs(finished, edited)
    assert plan["train"] == 2  # the job holding small_normal configs, on each dataset
    before = trained(finished)
    snakemake(finished, "results/table/runs.parquet", config=edited)
    # 4 of the 8 configs use small_normal; x 2 datasets x 2 seeds
    table = pd.read_parquet(finished / "results/table/runs.parquet")
    assert (table["init"] == "small_normal").sum() == 16
    assert sum(json.loads(p.read_text())["trained"]
               for p in finished.glob("results/runs/*/jobs/job0001.json")) == 16
    assert trained(finished) - before <= 16


@pytest.mark.slow
def test_adding_seeds_trains_only_the_new_seeds(finished, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["seeds"] = 3
    more = tmp_path / "more_seeds.yaml"
    more.write_text(yaml.safe_dump(config))
    snakemake(finished, "results/table/runs.parquet", config=more)
    manifests = [json.loads(p.read_text()) for p in finished.glob("results/runs/*/jobs/*.json")]
    assert sum(m["trained"] for m in manifests) == 8 * 2  # one new seed per config and dataset
    assert sum(m["reused"] for m in manifests) == 8 * 2 * 2
    assert len(pd.read_parquet(finished / "results/table/runs.parquet")) == 8 * 2 * 3


def test_bad_study_stops_before_any_work(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["factors"]["optimizer"]["levels"][0]["kind"] = "adamm"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, "--dry-run", config=bad, check=False)
    assert result.returncode != 0
    assert "unknown optimizer kind 'adamm'; valid kinds: sgd, nesterov, adam" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_job_of_hundreds_of_configs_trains(tmp_path):
    """320 configs in one job: its settings (~200 KB, more than one command-line argument
    may hold) reach it in a file, and every run trains."""
    study = yaml.safe_load(TINY.read_text())
    study["datasets"] = [{"name": "digits", "kind": "digits", "subsample": 40, "budget": {"epochs": 1}}]
    factors = study["factors"]
    factors["init"]["levels"] = [{"name": f"n{i}", "kind": "normal", "std": 0.01 * (i + 1)} for i in range(5)]
    factors["init"].pop("baseline")
    factors["optimizer"]["levels"] = [{"name": f"sgd{i}", "kind": "sgd", "lr": 0.01 * (i + 1)} for i in range(4)]
    factors["optimizer"].pop("baseline")
    factors["architecture"]["levels"] = [{"name": "mlp", "kind": "mlp", "width": 4, "depth": 1}]
    factors["augmentation"]["levels"] = [{"name": f"shift{i}", "kind": "shift", "max_shift": i} for i in range(8)]
    factors["schedule"]["levels"] = [{"name": "constant", "kind": "constant", "batch_size": 64}]
    study.update(seeds=1, hypotheses=[], execution={"runs_per_job": 400, "device": "cpu", "threads": 1})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(study))
    workdir = tmp_path / "work"
    snakemake(workdir, "results/runs/digits/jobs/job0000.json", config=path)
    spec = workdir / "results/specs/digits/job0000.json"
    assert len(json.loads(spec.read_text())["configs"]) == 320 and spec.stat().st_size > 131072
    manifest = json.loads((workdir / "results/runs/digits/jobs/job0000.json").read_text())
    assert manifest["trained"] == 320
