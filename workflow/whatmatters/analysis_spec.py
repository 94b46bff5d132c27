"""The analysis spec: what the model of one outcome needs to know about the study."""

from __future__ import annotations

from whatmatters.outcomes import OUTCOMES


def analysis_spec(study: dict, outcome: str) -> dict:
    """JSON-ready spec for fitting `outcome`: the varied factors with their levels and
    baselines (factors held fixed have no importance to estimate), datasets, the outcome's
    count columns, hypotheses, sampler settings and whether runs may be missing."""
    sampler = {k: v for k, v in study["analysis"].items() if k != "allow_missing"}
    return {
        "factors": {
            f: {"levels": list(study["factors"][f]["levels"]), "baseline": study["factors"][f]["baseline"]}
            for f in study["varied"]
        },
        "datasets": [d["name"] for d in study["datasets"]],
        "outcome": {"name": outcome, **OUTCOMES[outcome]},
        "hypotheses": study["hypotheses"],
        "sampler": {**sampler, "cores": min(sampler["chains"], 4)},
        "allow_missing": study["analysis"]["allow_missing"],
    }
