"""The analysis spec: what the model of one outcome needs to know about the study."""

from __future__ import annotations

from whatmatters import outcomes
from whatmatters.workloads import classes

MAX_PARALLEL_CHAINS = 4   # chains sampled at once, one process each (PyMC's own cap on `cores`)


def analysis_spec(study: dict, outcome: str) -> dict:
    """JSON-ready spec for fitting `outcome`: the varied factors with their levels and
    baselines (factors held fixed have no importance to estimate), datasets, the outcome's
    columns, hypotheses, the model (`method`, `interactions`), the sampler's settings and
    whether runs may be missing. Every value is the resolved study's: nothing downstream
    fills in a default. An outcome that names its own `method` (`trained`: the exact
    Binomial, main effects only) gets it whatever analysis.method says; one that reads which
    runs trained gets `trained_when` (each dataset's chance, 1/classes, and the margin)."""
    analysis = study["analysis"]
    measured = outcomes.spec(outcome, {d["name"]: 1.0 / classes(d["kind"], d["settings"]) for d in study["datasets"]})
    method = measured.get("method", analysis["method"])
    return {
        "factors": {
            f: {"levels": list(study["factors"][f]["levels"]), "baseline": study["factors"][f]["baseline"]}
            for f in study["varied"]
        },
        "datasets": [d["name"] for d in study["datasets"]],
        "outcome": measured,
        "hypotheses": study["hypotheses"],
        "model": {"method": method, "interactions": analysis["interactions"] if method == "collapsed" else False},
        "sampler": {
            "chains": analysis["chains"], "draws": analysis["draws"], "tune": analysis["tune"],
            "target_accept": analysis["target_accept"], "seed": analysis["seed"],
            "cores": min(analysis["chains"], MAX_PARALLEL_CHAINS),
            "nuts": analysis["sampler"],   # the NUTS implementation: auto, pymc or nutpie
        },
        "allow_missing": analysis["allow_missing"],
    }
