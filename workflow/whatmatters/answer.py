"""The study's answer in words: the report's first page and `results/summary.md`.

Per outcome: the pooled order of the factors with each one's probability of holding its
place, each hypothesis's probability and Kendall's tau, and the diagnostics' verdict
(green, or the problem by name). Every number is read from the files `summarize` wrote
(`outputs.SUMMARIES`: ranks.csv, hypotheses.csv, diagnostics.json), never recomputed, so the
page, the text and the tables agree. The answer is built once as blocks (`answer_blocks`)
and written in two markups: Markdown (`results/summary.md`, to paste into a paper or
slides, its figures linked beside it) and reStructuredText (the report's first page, which
Snakemake renders with Jinja, then docutils).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from whatmatters.errors import WhatmattersError
from whatmatters.io import provenance, write_text
from whatmatters.outcomes import OUTCOMES
from whatmatters.outputs import FIGURES, SUMMARIES

POOLED = "pooled"   # posterior.POOLED, the scope of the mean over datasets (posterior.py needs arviz; this step does not)
DIGITS = 2          # probabilities and Kendall's tau as shown: two decimals

# The verdict's colour word, as diagnostics.png's banners say it (plots.diagnostics_figure).
GREEN, MODEL_CHECK, UNHEALTHY = "green", "MODEL CHECK", "SAMPLING UNHEALTHY"

# A block is (kind, *content); inline text is plain but for **strong**, the same in both markups.
#   ("title", text) ("heading", text) ("text", text) ("bullets", [text]) ("numbered", [text])
#   ("image", alt, path) ("comment", text)


def _number(x: float) -> str:
    return f"{x:.{DIGITS}f}"


def _read(path: Path, read):
    """`read(path)`, or one line naming the file: missing, or unreadable."""
    try:
        return read(path)
    except FileNotFoundError:
        raise WhatmattersError(f"{path}: missing; run the summarize step first") from None
    except (OSError, ValueError) as e:
        raise WhatmattersError(f"{path}: unreadable ({e}); rerun the summarize step") from None


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A summary CSV with at least `columns`."""
    table = _read(path, pd.read_csv)
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        raise WhatmattersError(f"{path}: no column {', '.join(lacking)}; rerun the summarize step")
    return table


def order(ranks: pd.DataFrame, scope: str = POOLED, source: str = "ranks.csv") -> list[dict]:
    """The factors of one scope, most important first, by expected rank.

    Args:
      ranks: ranks.csv (`summarize.rank_probabilities`): `factor`, `dataset`, `rank`,
        `probability`, all F x F cells of each scope; `source` names it in an error.
    Returns:
      [{"factor", "place" (1..F), "p_place" (P(rank = place)), "expected_rank"}]; equal
      expected ranks keep the study's factor order.
    """
    cells = ranks[ranks["dataset"] == scope]
    if cells.empty:
        raise WhatmattersError(f"{source}: no rows for {scope!r}; rerun the summarize step")
    p = cells.pivot(index="factor", columns="rank", values="probability")
    p = p.loc[list(dict.fromkeys(cells["factor"]))]                   # the study's factor order
    expected = (p * p.columns.to_numpy()).sum(axis=1).sort_values(kind="stable")
    return [{"factor": str(f), "place": k, "p_place": float(p.loc[f, k]), "expected_rank": float(e)}
            for k, (f, e) in enumerate(expected.items(), start=1)]


def verdict(diag: dict) -> tuple[str, list[str]]:
    """(colour word, [the named problems]) of diagnostics.json: UNHEALTHY with the sampler's
    problems when it did not converge, else MODEL CHECK with the model check's findings,
    else GREEN with none."""
    if diag.get("problems"):
        return UNHEALTHY, list(diag["problems"])
    if diag.get("model_check"):
        return MODEL_CHECK, list(diag["model_check"])
    return GREEN, []


def outcome_facts(analysis_dir, outcome: str) -> dict:
    """What the first page says about one outcome, read from its summaries.

    Args:
      analysis_dir: the folder of the outcomes' summaries (results/analysis).
    Returns:
      {"outcome", "label", "description", "order" (`order`, pooled), "datasets": {dataset:
      [factor, ...] most important first}, "hypotheses": [{"hypothesis", "text", "p_holds",
      "tau_mean", "tau_hdi_5", "tau_hdi_95"}] (pooled), "diagnostics" (diagnostics.json),
      "fit_revision"}.
    Raises:
      WhatmattersError: a summary file is missing or malformed (one line naming it).
    """
    folder = Path(analysis_dir) / outcome
    ranks_file = folder / SUMMARIES["ranks"]
    ranks = _read_csv(ranks_file, ["factor", "dataset", "rank", "probability"])
    hyp = _read_csv(folder / SUMMARIES["hypotheses_table"],
                    ["hypothesis", "text", "dataset", "p_holds", "tau_mean", "tau_hdi_5", "tau_hdi_95"])
    diag = _read(folder / SUMMARIES["diagnostics"], lambda p: json.loads(p.read_text()))
    spec = OUTCOMES.get(outcome, {})
    scopes = [s for s in dict.fromkeys(ranks["dataset"]) if s != POOLED]
    return {
        "outcome": outcome, "label": spec.get("label", outcome.replace("_", " ")),
        "description": spec.get("description", ""),
        "order": order(ranks, POOLED, str(ranks_file)),
        "datasets": {s: [row["factor"] for row in order(ranks, s, str(ranks_file))] for s in scopes},
        "hypotheses": hyp[hyp["dataset"] == POOLED].to_dict("records"),
        "diagnostics": diag,
        "fit_revision": diag.get("provenance", {}).get("fit", {}).get("code_revision", "unknown"),
    }


def outcome_blocks(facts: dict, figures: dict[str, str] | None = None) -> list[tuple]:
    """The blocks of one outcome: verdict, pooled order, hypotheses, per-dataset orders and,
    when `figures` ({"ranks": path, "diagnostics": path}) is given, the figures."""
    diag = facts["diagnostics"]
    colour, named = verdict(diag)
    if colour == GREEN:
        health = (f"**Diagnostics: {GREEN}**: sampling healthy ({diag.get('divergences')} divergences, "
                  f"max R-hat {_maybe(diag.get('max_rhat'), '.3f')}, min bulk ESS "
                  f"{_maybe(diag.get('min_ess_bulk'), '.0f')}) and the model check found nothing.")
    elif colour == UNHEALTHY:
        health = f"**Diagnostics: {UNHEALTHY}**, do not trust these ranks: {named[0]}."
    else:
        health = f"**Diagnostics: {MODEL_CHECK}**: {named[0]}."
    # the verdict names the first problem; the rest, low ESS, and a model check under a bad sampler follow
    notes = [*named[1:], *diag.get("warnings", []), *(diag.get("model_check", []) if colour == UNHEALTHY else [])]
    blocks = [("heading", f"{facts['label']} ({facts['outcome']})")]
    if facts["description"]:
        blocks.append(("text", f"What it measures: {facts['description']}."))
    blocks += [("text", health)]
    if notes:
        blocks.append(("bullets", notes))
    blocks += [("text", "**Pooled order**, most important first, with the posterior probability that "
                        "each factor holds that place:"),
               ("numbered", [f"**{o['factor']}**: rank {o['place']} with P = {_number(o['p_place'])}"
                             for o in facts["order"]])]
    if facts["hypotheses"]:
        blocks += [("text", "**Hypotheses** (pooled): the posterior probability that the stated order holds, "
                            "and Kendall's tau between it and the data's ranking (1: right, -1: reversed):"),
                   ("bullets", [f"**{h['hypothesis']}** ({h['text']}): P(holds) = {_number(h['p_holds'])}, "
                                f"Kendall's tau = {_number(h['tau_mean'])} (90% interval "
                                f"{_number(h['tau_hdi_5'])} to {_number(h['tau_hdi_95'])})"
                                for h in facts["hypotheses"]])]
    else:
        blocks.append(("text", "**Hypotheses**: none stated in the study."))
    if len(facts["datasets"]) > 1:
        blocks += [("text", "**Per dataset**, most important first by expected rank:"),
                   ("bullets", [f"{d}: {' > '.join(fs)}" for d, fs in facts["datasets"].items()])]
    for key, alt in (("ranks", "rank probabilities"), ("diagnostics", "sampling diagnostics")):
        if figures and key in figures:
            blocks.append(("image", f"{facts['label']}: {alt}", figures[key]))
    return blocks


def _maybe(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def answer_blocks(facts: list[dict], figures: dict[str, dict[str, str]] | None = None,
                  prov: dict | None = None) -> list[tuple]:
    """The whole answer: a title, one section per outcome (`outcome_blocks`), and where the
    numbers came from. `figures`: outcome -> its figures' paths (Markdown only)."""
    blocks = [("title", "What matters: the study's answer"),
              ("text", "Ranks are importance ranks, 1 = matters most; pooled means importance averaged over "
                       "the datasets. Every number below is read from results/analysis/OUTCOME/ "
                       "(ranks.csv, hypotheses.csv, diagnostics.json).")]
    for f in facts:
        blocks += outcome_blocks(f, (figures or {}).get(f["outcome"]))
    if prov is not None:
        fits = ", ".join(f"{f['outcome']} {_short(f['fit_revision'])}" for f in facts)
        blocks += [("text", f"Written by whatmatters {prov['versions'].get('whatmatters', '?')} at code revision "
                            f"{_short(prov['code_revision'])} on {prov['created']}; fits made at code revision: "
                            f"{fits}."),
                   ("comment", "provenance: " + json.dumps(prov, sort_keys=True))]
    return blocks


def _short(revision: str) -> str:
    """'0123456789ab-dirty' for '0123456789abcdef...-dirty': short, and still saying dirty."""
    sha, dirty, _ = revision.partition("-dirty")
    return sha[:12] + dirty


def to_markdown(blocks: list[tuple]) -> str:
    """Blocks as CommonMark."""
    out = []
    for kind, *content in blocks:
        if kind == "title":
            out.append(f"# {content[0]}")
        elif kind == "heading":
            out.append(f"## {content[0]}")
        elif kind == "text":
            out.append(content[0])
        elif kind == "bullets":
            out.append("\n".join(f"- {item}" for item in content[0]))
        elif kind == "numbered":
            out.append("\n".join(f"{k}. {item}" for k, item in enumerate(content[0], start=1)))
        elif kind == "image":
            out.append(f"![{content[0]}]({content[1]})")
        elif kind == "comment":
            out.append(f"<!-- {content[0].replace('-->', '-- >')} -->")
    return "\n\n".join(out) + "\n"


def to_rst(blocks: list[tuple]) -> str:
    """Blocks as reStructuredText (images left out: the report shows the figures itself),
    inside Jinja's {% raw %} so that Snakemake's template step passes it through."""
    out = []
    for kind, *content in blocks:
        if kind in ("title", "heading"):
            text = _rst_inline(content[0])
            out.append(f"{text}\n{('=' if kind == 'title' else '-') * len(text)}")
        elif kind == "text":
            out.append(_rst_inline(content[0]))
        elif kind == "bullets":
            out.append("\n".join(f"- {_rst_inline(item)}" for item in content[0]))
        elif kind == "numbered":
            out.append("\n".join(f"{k}. {_rst_inline(item)}" for k, item in enumerate(content[0], start=1)))
        elif kind == "comment":
            out.append(".. " + content[0].replace("\n", " "))
    return "{% raw %}\n" + "\n\n".join(out).replace("{% endraw %}", "") + "\n{% endraw %}\n"


def _rst_inline(text: str) -> str:
    """Plain text (with **strong**) as RST inline text: a name ending in `_` would be a link,
    a `|` a substitution, a backtick a role."""
    for ch in ("\\", "_", "|", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def write_answer(analysis_dir, plots_dir, outcomes: list[str], summary_path, page_path,
                 description_path) -> None:
    """Write `results/summary.md` (the answer with its figures linked, paths relative to it)
    and the report's first page (the answer, then the workflow's description), atomically."""
    if not outcomes:
        raise WhatmattersError("no outcomes to summarize: the study lists none")
    facts = [outcome_facts(analysis_dir, o) for o in outcomes]
    prov = provenance(step="answer", outcomes=list(outcomes))
    here = Path(summary_path).parent
    figures = {o: {key: os.path.relpath(Path(plots_dir) / o / FIGURES[key], here)
                   for key in ("ranks", "diagnostics")} for o in outcomes}
    try:
        description = Path(description_path).read_text()
    except OSError as e:
        raise WhatmattersError(f"{description_path}: unreadable ({e.strerror})") from None
    write_text(summary_path, to_markdown(answer_blocks(facts, figures, prov)))
    about = [("heading", "How this answer was made")]
    write_text(page_path, to_rst(answer_blocks(facts, prov=prov) + about) + "\n" + description)
