"""Run tables drawn from the model's generative process with planted effects, and the truth.

For validation by simulation (`benchmarks/recovery.py`, docs/validation.md) and the tests:
`simulate_table` plants each factor's importance, draws runs (diverged ones included) and
returns the true value of the estimand beside the table.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd


def simulate_table(spec: dict, importance: dict[str, float], *, configs: int = 50, seeds: int = 3,
                   trials: dict[str, int] | int = 1000, accuracy: dict[str, float] | float = 0.85,
                   dataset_deviation: float = 0.2, seed_sd: float = 0.15,
                   diverged_fraction: float = 0.03, diverged_accuracy: float = 0.1,
                   unstable: tuple[str, int, float] | None = None,
                   random_seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A run table drawn from the model's generative process with planted importances,
    plus diverged runs, and the true value of the importance estimand.

    Each factor's pooled level effects are a random zero-sum vector rescaled so its
    finite-population sd is exactly `importance[f]` (logit scale); each dataset adds a
    deviation of relative size `dataset_deviation`; every run adds seed noise of sd
    `seed_sd`. The same `configs` distinct random configs run on every dataset with
    `seeds` seeds. A run diverges (accuracy ~`diverged_accuracy`, status "diverged") with
    probability `diverged_fraction`, plus `extra` on the configs whose factor `f` is at
    level index `j` when `unstable = (f, j, extra)` (a learning rate that blows up).

    Diverged runs are data (DESIGN.md, "Failure is data"): the estimand is the sd of the
    level effects on a run's *expected* logit accuracy, failures included. With
    divergence probability q_c and converged logit eta_c, that expectation is
    (1 - q_c) eta_c + q_c logit(diverged_accuracy); its main effects, averaged over the
    full factorial grid, are (1 - mean q) times the planted effects for a factor that does
    not drive divergence, and (1 - q_j) e_j - q_j (a_d - logit(diverged_accuracy)),
    centred, for the factor that does. So divergence at random dilutes every importance,
    and an unstable level adds importance to its factor.

    Returns:
      (table, truth): table with the columns the fit expects (`whatmatters.runtable`) (outcome columns
      `n_test`, `n_test_correct`, `test_accuracy`, and `train` ones); truth maps
      `beta` -> {factor: pooled planted effects}, `planted` -> {factor: {dataset: sd of the
      converged runs' effects}} and `importance` -> {factor: {dataset: the estimand's true
      value}}.
    """
    rng = np.random.default_rng(random_seed)
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    trials = trials if isinstance(trials, dict) else {d: trials for d in datasets}
    accuracy = accuracy if isinstance(accuracy, dict) else {d: accuracy for d in datasets}
    sizes = [len(spec["factors"][f]["levels"]) for f in factors]
    if unstable is not None and (unstable[0] not in factors
                                 or not 0 <= unstable[1] < sizes[factors.index(unstable[0])]):
        raise ValueError(f"unstable={unstable!r}: expected (factor, level index, extra probability) "
                         f"with a factor of {factors}")

    def zero_sum(n_levels, sd):
        v = rng.normal(size=n_levels)
        v -= v.mean()
        return v * sd / v.std(ddof=1) if sd > 0 else np.zeros(n_levels)

    def divergence(f, j):          # probability of divergence contributed by factor f at level j
        return unstable[2] if unstable is not None and (f, j) == tuple(unstable[:2]) else 0.0

    beta = {f: zero_sum(len(spec["factors"][f]["levels"]), importance.get(f, 0.0)) for f in factors}
    effect = {(f, d): beta[f] + zero_sum(len(beta[f]), dataset_deviation * importance.get(f, 0.0))
              for f in factors for d in datasets}
    picks = rng.choice(int(np.prod(sizes)), size=min(configs, int(np.prod(sizes))), replace=False)
    choices = [dict(zip(factors, np.unravel_index(i, sizes))) for i in picks]   # distinct configs
    chance = np.log(diverged_accuracy / (1 - diverged_accuracy))

    rows = []
    for d in datasets:
        for c in choices:
            config_id = hashlib.sha1(json.dumps({f: int(c[f]) for f in factors}).encode()).hexdigest()[:10]
            q = diverged_fraction + sum(divergence(f, c[f]) for f in factors)
            for seed in range(seeds):
                eta = (np.log(accuracy[d] / (1 - accuracy[d])) + rng.normal(0, seed_sd)
                       + sum(effect[f, d][c[f]] for f in factors))
                diverged = rng.random() < q
                p = diverged_accuracy if diverged else 1 / (1 + np.exp(-eta))
                n = trials[d]
                k = int(rng.binomial(n, p))
                k_train = int(rng.binomial(n, diverged_accuracy if diverged else min(1.0, p + 0.05)))
                rows.append({
                    "run_id": f"{d}/{config_id}/{seed}", "dataset": d, "config_id": config_id,
                    "seed": seed, "status": "diverged" if diverged else "ok",
                    **{f: spec["factors"][f]["levels"][c[f]] for f in factors},
                    "n_test": n, "n_test_correct": k, "test_accuracy": k / n,
                    "n_train": n, "n_train_correct": k_train, "train_accuracy": k_train / n,
                })
    table = pd.DataFrame(rows)

    def true_effects(f, d):         # main effects of the expected logit over the full grid
        q = diverged_fraction + np.array([divergence(f, j) for j in range(len(beta[f]))])   # per level of f
        others = sum(np.mean([divergence(g, j) for j in range(len(beta[g]))]) for g in factors if g != f)
        a = np.log(accuracy[d] / (1 - accuracy[d]))
        # the expectation is linear in every other factor's zero-sum effects, which average out,
        # except through q: E over the grid of q_c * e_g[c_g] is extra * e_g[j] / K_g, the same
        # for every level of f, so it drops out of f's centred effects.
        marginal = effect[f, d] - (q + others) * (a - chance + effect[f, d])
        return marginal - marginal.mean()

    truth = {
        "beta": {f: beta[f].tolist() for f in factors},
        "planted": {f: {d: float(np.std(effect[f, d], ddof=1)) for d in datasets} for f in factors},
        "importance": {f: {d: float(np.std(true_effects(f, d), ddof=1)) for d in datasets} for f in factors},
    }
    return table, truth
