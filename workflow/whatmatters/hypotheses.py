"""How well the posterior supports each stated hypothesis about which factors matter most.

A hypothesis is a chain f1 > f2 > ... > fK (most important first), resolved by
`whatmatters.study` to {"name", "order": [f1, ..., fK], "text": "f1 > ... > fK"}.
Per posterior draw s (importance of each factor) we ask two things:

    holds      every adjacent claim is true:  s_f1 > s_f2 > ... > s_fK
    tau        Kendall's rank correlation between the draw's ordering of f1..fK and the
               stated one:  tau = (concordant - discordant) / (K (K - 1) / 2)  over pairs i < j,
               +1 when the draw agrees exactly, -1 when it is reversed

`holds` is all-or-nothing; tau says how close a draw comes, so a long chain that is
nearly right is told apart from one that is badly wrong. Pure functions; no disk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from whatmatters.errors import WhatmattersError
from whatmatters.posterior import INTERVAL, hdi


def evaluate(importance: xr.DataArray, hypotheses: list[dict]) -> dict:
    """Posterior support for each hypothesis in one scope.

    Args:
      importance: (chain, draw, factor) posterior draws of importance, bigger = more important.
      hypotheses: [{"name", "order": [factor, ...], "text"}] as resolved by `whatmatters.study`.
    Returns:
      {name: {"order": [...], "text": str,
              "p_holds": P(s_f1 > s_f2 > ... > s_fK),
              "pairs": {"fi > fj": P(s_fi > s_fj)} for every i < j, in chain order,
              "kendall_tau": {"mean", "hdi_5", "hdi_95" (90% HDI), "p_positive": P(tau > 0)}}}
    Raises:
      WhatmattersError: a hypothesis names a factor the posterior does not have.
    """
    known = [str(f) for f in importance["factor"].values]
    out = {}
    for h in hypotheses:
        order = list(h["order"])
        missing = [f for f in order if f not in known]
        if missing:
            raise WhatmattersError(f"hypothesis {h['name']!r}: factors {missing} are not in the posterior; "
                                   f"it has: {', '.join(known)}")
        s = importance.sel(factor=order).transpose("chain", "draw", "factor").values  # (C, D, K)
        i, j = np.triu_indices(len(order), k=1)                                         # pairs i < j
        sign = np.sign(s[..., i] - s[..., j])                                           # (C, D, P)
        tau = sign.sum(axis=-1) / len(i)                                                # (C, D)
        holds = (s[..., :-1] > s[..., 1:]).all(axis=-1)                                 # (C, D)
        low, high = hdi(tau, INTERVAL)
        out[h["name"]] = {
            "order": order,
            "text": h.get("text", " > ".join(order)),
            "p_holds": float(holds.mean()),
            "pairs": {f"{order[a]} > {order[b]}": float((sign[..., p] > 0).mean())
                      for p, (a, b) in enumerate(zip(i, j))},
            "kendall_tau": {"mean": float(tau.mean()), "hdi_5": low, "hdi_95": high,
                            "p_positive": float((tau > 0).mean())},
        }
    return out


def table(results_by_scope: dict[str, dict]) -> pd.DataFrame:
    """One row per (hypothesis, scope) from {scope: evaluate(...)}.

    Returns:
      long DataFrame grouped by hypothesis, scopes in the given order; columns `hypothesis`,
      `text`, `dataset` (the scope: "pooled" or a dataset name), `p_holds`, `tau_mean`,
      `tau_hdi_5`, `tau_hdi_95`, `p_tau_positive`.
    """
    columns = ["hypothesis", "text", "dataset", "p_holds", "tau_mean", "tau_hdi_5", "tau_hdi_95",
               "p_tau_positive"]
    names = list(dict.fromkeys(n for results in results_by_scope.values() for n in results))
    rows = []
    for name in names:
        for scope, results in results_by_scope.items():
            if name not in results:
                continue
            r, tau = results[name], results[name]["kendall_tau"]
            rows.append([name, r["text"], scope, r["p_holds"], tau["mean"], tau["hdi_5"], tau["hdi_95"],
                         tau["p_positive"]])
    return pd.DataFrame(rows, columns=columns)


def kendall_tau_draws(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau between two scorings of the same K items, row by row.

    Args:
      a, b: (N, K) scores (bigger = ranked higher); row n of `a` is compared with row n of `b`.
    Returns:
      (N,) tau = (concordant - discordant) / (K (K - 1) / 2); ties count as neither.
    """
    i, j = np.triu_indices(a.shape[-1], k=1)
    return (np.sign(a[..., i] - a[..., j]) * np.sign(b[..., i] - b[..., j])).sum(axis=-1) / len(i)
