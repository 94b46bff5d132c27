"""answer: the study's answer in words, from hand-made summary files with known numbers."""

import json

import pandas as pd
import pytest

from whatmatters import answer as A
from whatmatters.errors import WhatmattersError

# P(rank = k) per scope (rows: factor, columns: rank 1..3); expected ranks a 1.5, b 1.8, c 2.7
POOLED = {"a": [0.60, 0.30, 0.10], "b": [0.30, 0.60, 0.10], "c": [0.10, 0.10, 0.80]}
D1 = {"a": [0.0, 0.0, 1.0], "b": [0.0, 1.0, 0.0], "c": [1.0, 0.0, 0.0]}      # c > b > a
HEALTHY = {"ok": True, "problems": [], "warnings": [], "model_check": [], "divergences": 0,
           "max_rhat": 1.004, "min_ess_bulk": 812.0, "verdict": "healthy",
           "provenance": {"fit": {"code_revision": "0123456789abcdef-dirty"}}}


def ranks_csv(scopes: dict) -> pd.DataFrame:
    return pd.DataFrame([{"factor": f, "dataset": s, "rank": k + 1, "probability": p}
                         for s, table in scopes.items() for f, ps in table.items() for k, p in enumerate(ps)])


def write_outcome(root, outcome="test_accuracy", diag=HEALTHY, scopes=None, hypotheses=True):
    folder = root / "analysis" / outcome
    folder.mkdir(parents=True)
    ranks_csv(scopes or {"pooled": POOLED, "d1": D1, "d2": POOLED}).to_csv(folder / "ranks.csv", index=False)
    rows = [{"hypothesis": "folk", "text": "a > b > c", "dataset": "pooled", "p_holds": 0.4567,
             "tau_mean": 0.3333, "tau_hdi_5": -0.3333, "tau_hdi_95": 1.0, "p_tau_positive": 0.7},
            {"hypothesis": "folk", "text": "a > b > c", "dataset": "d1", "p_holds": 0.0,
             "tau_mean": -1.0, "tau_hdi_5": -1.0, "tau_hdi_95": -1.0, "p_tau_positive": 0.0}]
    pd.DataFrame(rows if hypotheses else [], columns=list(rows[0])).to_csv(folder / "hypotheses.csv", index=False)
    (folder / "diagnostics.json").write_text(json.dumps(diag))
    return folder


def write_all(root, outcomes=("test_accuracy",)):
    description = root / "workflow.rst"
    description.write_text('Study: {{ snakemake.config["seeds"] }} seeds.\n')
    A.write_answer(root / "analysis", root / "plots", list(outcomes), root / "summary.md",
                   root / "report" / "first_page.rst", description)
    return (root / "summary.md").read_text(), (root / "report" / "first_page.rst").read_text()


def render_like_snakemake(rst: str) -> str:
    """The page as Snakemake's report shows it: Jinja, then docutils, any docutils warning an error."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    class Snakemake:
        config = {"seeds": [0, 1]}

    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string(rst).render(snakemake=Snakemake)
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["html_body"]


def test_order_by_expected_rank_with_the_probability_of_each_place():
    assert A.order(ranks_csv({"pooled": POOLED})) == [
        {"factor": "a", "place": 1, "p_place": 0.6, "expected_rank": pytest.approx(1.5)},
        {"factor": "b", "place": 2, "p_place": 0.6, "expected_rank": pytest.approx(1.8)},
        {"factor": "c", "place": 3, "p_place": 0.8, "expected_rank": pytest.approx(2.7)}]
    assert [o["factor"] for o in A.order(ranks_csv({"d1": D1}), "d1")] == ["c", "b", "a"]


def test_equal_expected_ranks_keep_the_study_order():
    tie = {"b": [0.5, 0.5], "a": [0.5, 0.5]}
    assert [o["factor"] for o in A.order(ranks_csv({"pooled": tie}))] == ["b", "a"]


@pytest.mark.parametrize("diag, colour, named", [
    (HEALTHY, A.GREEN, []),
    ({**HEALTHY, "model_check": ["non-additive: x", "ppc: y"]}, A.MODEL_CHECK, ["non-additive: x", "ppc: y"]),
    ({**HEALTHY, "ok": False, "problems": ["3 divergent transition(s)"], "model_check": ["non-additive: x"]},
     A.UNHEALTHY, ["3 divergent transition(s)"]),
])
def test_verdict_names_the_first_problem_sampler_before_model(diag, colour, named):
    assert A.verdict(diag) == (colour, named)


def test_summary_states_order_hypotheses_and_verdict(tmp_path):
    write_outcome(tmp_path)
    summary, _ = write_all(tmp_path)
    assert "1. **a**: rank 1 with P = 0.60\n2. **b**: rank 2 with P = 0.60\n3. **c**: rank 3 with P = 0.80" in summary
    assert "**folk** (a > b > c): P(holds) = 0.46, Kendall's tau = 0.33 (90% interval -0.33 to 1.00)" in summary
    assert "**Diagnostics: green**: sampling healthy (0 divergences, max R-hat 1.004" in summary
    assert "- d1: c > b > a\n- d2: a > b > c" in summary
    assert "![test accuracy: rank probabilities](plots/test_accuracy/ranks.png)" in summary
    assert "code revision: test_accuracy 0123456789ab-dirty." in summary     # the fit's provenance travels
    assert json.loads(summary.split("<!-- provenance: ")[1].split(" -->")[0])["step"] == "answer"


def test_first_page_renders_in_snakemakes_report_with_the_same_facts(tmp_path):
    write_outcome(tmp_path, diag={**HEALTHY, "model_check": ["non-additive: dataset d1 scatters 9x"]})
    write_outcome(tmp_path, "train_accuracy")
    _, page = write_all(tmp_path, ["test_accuracy", "train_accuracy"])
    html = render_like_snakemake(page)
    assert "<strong>a</strong>: rank 1 with P = 0.60" in html
    assert "<strong>folk</strong> (a &gt; b &gt; c): P(holds) = 0.46, Kendall's tau = 0.33" in html
    assert "<strong>Diagnostics: MODEL CHECK</strong>: non-additive: dataset d1 scatters 9x." in html
    assert html.index("test_accuracy") < html.index("train_accuracy") < html.index("Study: [0, 1] seeds.")


def test_names_that_mean_something_in_rst_stay_plain_text(tmp_path):
    odd = {"init_": [0.9, 0.1], "a|b": [0.1, 0.9]}      # `name_` is an RST link, `|x|` a substitution
    folder = write_outcome(tmp_path, scopes={"pooled": odd, "d1": odd, "|d2|": odd})
    pd.DataFrame([{"hypothesis": "h_", "text": "init_ > a|b", "dataset": "pooled", "p_holds": 0.9,
                   "tau_mean": 0.8, "tau_hdi_5": 1.0, "tau_hdi_95": 1.0}]).to_csv(folder / "hypotheses.csv")
    _, page = write_all(tmp_path)
    text = render_like_snakemake(page)
    assert "<strong>init_</strong>: rank 1 with P = 0.90" in text
    assert "<strong>h_</strong> (init_ &gt; a|b): P(holds) = 0.90" in text
    assert "<li>|d2|: init_ &gt; a|b</li>" in text


def test_no_hypotheses_is_said(tmp_path):
    write_outcome(tmp_path, hypotheses=False)
    summary, _ = write_all(tmp_path)
    assert "**Hypotheses**: none stated in the study." in summary


def test_unhealthy_sampling_is_said_first_with_every_problem(tmp_path):
    diag = {**HEALTHY, "ok": False, "problems": ["3 divergent transition(s)", "max R-hat 1.2"],
            "warnings": ["min bulk ESS 50 < 200"], "model_check": ["non-additive: d1"]}
    write_outcome(tmp_path, diag=diag)
    summary, _ = write_all(tmp_path)
    assert "**Diagnostics: SAMPLING UNHEALTHY**, do not trust these ranks: 3 divergent transition(s)." in summary
    assert "- max R-hat 1.2\n- min bulk ESS 50 < 200\n- non-additive: d1" in summary


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "ranks.csv").unlink(), "ranks.csv: missing; run the summarize step first"),
    (lambda f: (f / "hypotheses.csv").write_text("hypothesis,text\n"), "hypotheses.csv: no column dataset"),
    (lambda f: (f / "diagnostics.json").write_text("{"), "diagnostics.json: unreadable"),
    (lambda f: ranks_csv({"d1": D1}).to_csv(f / "ranks.csv"), "train_accuracy/ranks.csv: no rows for 'pooled'"),
])
def test_a_bad_summary_is_named_and_nothing_is_written(tmp_path, damage, message):
    write_outcome(tmp_path)
    write_all(tmp_path)
    before = (tmp_path / "summary.md").read_text()
    write_outcome(tmp_path, "train_accuracy")
    damage(tmp_path / "analysis" / "train_accuracy")
    with pytest.raises(WhatmattersError, match=message):
        write_all(tmp_path, ["test_accuracy", "train_accuracy"])
    assert (tmp_path / "summary.md").read_text() == before      # the last whole answer stays
    assert not list(tmp_path.rglob("*.tmp"))
