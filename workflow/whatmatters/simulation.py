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


# ---------------------------------------------------------------------------------------
# Generators that are not the model (validation under misspecification, docs/validation.md)

SCENARIO_FACTORS = {   # the factors of every scenario study, with their level counts
    "optimizer": 4, "learning_rate": 5, "batch_size": 4, "init": 3, "architecture": 4,
    "augmentation": 3, "weight_decay": 3,
}
SCENARIOS = ("control", "interactions", "failures", "heavy_tails", "one_dataset", "near_tie", "ceiling")
CHANCE = 0.1                     # accuracy of a run that failed to train (10 classes)


class Scenario:
    """One simulated study's truth: the expected outcome of every config of the full
    factorial on every dataset, from a process that is not the model's.

    `kind` (one of SCENARIOS) picks what breaks the model's assumptions:
      control       additive main effects, a small config residual: the model's own process
      interactions  strong pairwise interactions of realistic shapes: one optimizer fails
                    with one architecture (-3 logits), learning rate x batch size as a
                    bowl (the best rate moves with the batch size), plus a random pair
      failures      runs fail (chance accuracy) with probability 0.7 when two factors are
                    both at their worst levels (too high a learning rate with a bad init)
      heavy_tails   additive, seed noise Student-t with 3 df
      one_dataset   one factor matters on one dataset only, exactly 0 elsewhere
      near_tie      the two leading factors within 5% of each other
      ceiling       accuracies near 99%

    The truth is model-free (docs/model.md): per dataset, the main effects of the expected
    logit accuracy over the full factorial, failures included; importance is their sd.
    """

    def __init__(self, kind: str, seed: int, n_data: int | None = None):
        if kind not in SCENARIOS:
            raise ValueError(f"scenario {kind!r}: choose one of {SCENARIOS}")
        rng = np.random.default_rng(seed)
        self.kind, self.rng = kind, rng
        self.factors = list(SCENARIO_FACTORS)
        self.sizes = [SCENARIO_FACTORS[f] for f in self.factors]
        self.datasets = [f"data{i}" for i in range(n_data or int(rng.integers(2, 4)))]
        self.trials = int(rng.integers(1000, 2001))
        self.seed_sd = float(rng.uniform(0.05, 0.2))
        base = 0.99 if kind == "ceiling" else float(rng.uniform(0.75, 0.92))
        grid = np.indices(self.sizes).reshape(len(self.sizes), -1).T                 # (N, F)
        self.grid = grid

        top = float(rng.uniform(0.4, 1.0))
        ratios = np.exp(rng.uniform(np.log(1.1), np.log(2.0), size=len(self.factors) - 1))
        planted = top / np.concatenate([[1.0], np.cumprod(ratios)])
        if kind == "near_tie":
            planted[1] = planted[0] * float(rng.uniform(0.95, 1.0))
        planted = planted[rng.permutation(len(self.factors))]
        only = int(rng.integers(len(self.factors))) if kind == "one_dataset" else None
        if only is not None:
            planted[only] = max(planted[only], top)      # it matters, but on data0 only

        def zero_sum(n, sd):
            v = rng.normal(size=n)
            v -= v.mean()
            return v * sd / v.std(ddof=1)

        eta = np.empty((len(self.datasets), len(grid)))
        fail = np.zeros_like(eta)
        pooled = [zero_sum(n, s) for n, s in zip(self.sizes, planted)]
        for d in range(len(self.datasets)):
            value = np.full(len(grid), np.log(base / (1 - base)))
            for i, (n, s) in enumerate(zip(self.sizes, planted)):
                effect = pooled[i] + zero_sum(n, 0.2 * s)
                if i == only and d > 0:
                    effect = np.zeros(n)
                value += effect[grid[:, i]]
            value += rng.normal(size=len(grid)) * (0.1 if kind != "interactions" else 0.0)
            if kind == "interactions":
                opt, arch = self.factors.index("optimizer"), self.factors.index("architecture")
                lr, bs = self.factors.index("learning_rate"), self.factors.index("batch_size")
                bad_opt, bad_arch = rng.integers(self.sizes[opt]), rng.integers(self.sizes[arch])
                value -= 3.0 * ((grid[:, opt] == bad_opt) & (grid[:, arch] == bad_arch))
                z_lr = grid[:, lr] / (self.sizes[lr] - 1) * 2 - 1
                z_bs = grid[:, bs] / (self.sizes[bs] - 1) * 2 - 1
                value -= float(rng.uniform(1.0, 2.0)) * (z_lr - z_bs) ** 2
                f, g = rng.choice([i for i in range(len(self.factors)) if i not in (opt, arch, lr, bs)], 2,
                                  replace=False)
                table = rng.normal(size=(self.sizes[f], self.sizes[g])) * 0.5
                value += table[grid[:, f], grid[:, g]]
            if kind == "failures":
                lr, init = self.factors.index("learning_rate"), self.factors.index("init")
                worst = (grid[:, lr] == self.sizes[lr] - 1) & (grid[:, init] == self.sizes[init] - 1)
                fail[d] = np.where(worst, 0.7, 0.02)
            eta[d] = value
        self.eta, self.fail = eta, fail
        chance = np.log(CHANCE / (1 - CHANCE))
        expected = (1 - fail) * eta + fail * chance                                  # (D, N)
        self.truth = {}
        for i, f in enumerate(self.factors):
            means = np.stack([np.bincount(grid[:, i], weights=expected[d]) / (len(grid) / self.sizes[i])
                              for d in range(len(self.datasets))])                   # (D, L)
            self.truth[f] = {name: float(means[d].std(ddof=1)) for d, name in enumerate(self.datasets)}

    def spec(self) -> dict:
        return {"factors": {f: {"levels": [f"{f}{j}" for j in range(n)], "baseline": f"{f}0"}
                            for f, n in zip(self.factors, self.sizes)},
                "datasets": list(self.datasets),
                "outcome": {"name": "test_accuracy", "successes": "n_test_correct", "trials": "n_test"}}

    def table(self, configs: int, seeds: int, rng: np.random.Generator | None = None) -> pd.DataFrame:
        """A balanced random design of `configs` configs (each level of each factor about
        equally often, no config twice) run with `seeds` seeds on every dataset."""
        rng = rng or self.rng
        picks = balanced_configs(self.sizes, configs, rng)
        rows = []
        for d, name in enumerate(self.datasets):
            for c in picks:
                index = int(np.ravel_multi_index(tuple(c), self.sizes))
                for seed in range(seeds):
                    noise = (rng.standard_t(3) * self.seed_sd / np.sqrt(3.0) if self.kind == "heavy_tails"
                             else rng.normal() * self.seed_sd)
                    failed = rng.random() < self.fail[d, index]
                    p = CHANCE if failed else 1 / (1 + np.exp(-(self.eta[d, index] + noise)))
                    k = int(rng.binomial(self.trials, p))
                    rows.append({"run_id": f"{name}/{index}/{seed}", "dataset": name, "seed": seed,
                                 "status": "diverged" if failed else "ok",
                                 **{f: f"{f}{c[i]}" for i, f in enumerate(self.factors)},
                                 "n_test": self.trials, "n_test_correct": k, "test_accuracy": k / self.trials})
        return pd.DataFrame(rows)


def balanced_configs(sizes: list[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, F) distinct configs, each factor's levels used as evenly as n allows: each column
    a shuffled repeat of its levels, duplicates repaired by re-shuffling their rows."""
    columns = [rng.permutation(np.resize(np.arange(k), n)) for k in sizes]
    configs = np.column_stack(columns)
    for _ in range(1000):
        _, first = np.unique(configs, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if dup.size == 0:
            break
        for i in range(configs.shape[1]):
            swap = rng.integers(n, size=dup.size)
            configs[dup, i], configs[swap, i] = configs[swap, i], configs[dup, i].copy()
    return configs


# ---------------------------------------------------------------------------------------
# Training that fails: the `trained` outcome and accuracy among the runs that trained

def simulate_trained(spec: dict, trained: dict[str, float], *, pair: tuple[str, str, float] | None = None,
                     accuracy_importance: dict[str, float] | None = None, configs: int = 48, seeds: int = 3,
                     trained_rate: float = 0.7, dataset_deviation: float = 0.2, classes: int = 10,
                     trials: int = 500, accuracy: float = 0.85, seed_sd: float = 0.15,
                     random_seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A run table whose runs fail to train with planted, per-config probabilities, and the truth.

    On dataset d, config c trains with probability p_{c,d}, where

        logit p_{c,d} = logit(trained_rate) + sum_f t_{f,d}[l_f(c)] - size * [c has f and g at their last levels]

    t_{f,d} = a zero-sum vector of sd exactly `trained[f]` (pooled) plus a dataset deviation
    of relative size `dataset_deviation`; `pair = (f, g, size)` is a two-factor failure (a
    learning rate too high *with* a bad init). Each of a config's `seeds` runs trains or not,
    independently. A run that trained has test accuracy from additive logit effects of sd
    `accuracy_importance[f]` (and seed noise `seed_sd`) and a training accuracy above
    it; one that did not either diverged (status "diverged") or is stuck near chance, with
    training accuracy at most chance + `whatmatters.outcomes.TRAINED_MARGIN` (chance = 1/classes),
    and test accuracy at chance. `balanced_configs` picks the `configs` configs.

    The truth is model-free (docs/model.md, "The estimand"), over the full factorial of the
    spec's levels: per dataset, factor f's importance for `trained` is the sd over its
    levels of the marginal means of logit p_{c,d}; for `test_accuracy_trained` it is the sd
    of the planted accuracy effects (among runs that trained the expected logit accuracy is
    additive).

    Returns:
      (table, truth): the table has the run-table columns both outcomes read (`status`,
      `train_accuracy`, `n_test`, `n_test_correct`, ...); truth maps "trained" and
      "test_accuracy_trained" -> {factor: {dataset: importance}}, and "trained_rate" ->
      {dataset: mean p over the full factorial}.
    """
    from whatmatters.outcomes import TRAINED_MARGIN

    rng = np.random.default_rng(random_seed)
    factors, datasets = list(spec["factors"]), list(spec["datasets"])
    sizes = [len(spec["factors"][f]["levels"]) for f in factors]
    accuracy_importance = accuracy_importance or {}
    if pair is not None and not (pair[0] in factors and pair[1] in factors and pair[0] != pair[1]):
        raise ValueError(f"pair={pair!r}: expected (factor, another factor, size) with factors of {factors}")

    def zero_sum(n, sd):
        v = rng.normal(size=n)
        v -= v.mean()
        return v * sd / v.std(ddof=1) if sd > 0 else np.zeros(n)

    def effects(importance):       # {(f, d): (L_f,)} pooled effect plus a dataset deviation
        pooled = {f: zero_sum(n, importance.get(f, 0.0)) for f, n in zip(factors, sizes)}
        return {(f, d): pooled[f] + zero_sum(n, dataset_deviation * importance.get(f, 0.0))
                for f, n in zip(factors, sizes) for d in datasets}

    t, a = effects(trained), effects(accuracy_importance)
    grid = np.indices(sizes).reshape(len(sizes), -1).T                               # (N, F) full factorial
    logit_p = {}
    for d in datasets:
        value = np.full(len(grid), np.log(trained_rate / (1 - trained_rate)))
        for i, f in enumerate(factors):
            value = value + t[f, d][grid[:, i]]
        if pair is not None:
            i, j = factors.index(pair[0]), factors.index(pair[1])
            value = value - pair[2] * ((grid[:, i] == sizes[i] - 1) & (grid[:, j] == sizes[j] - 1))
        logit_p[d] = value                                                             # (N,)

    def level_sd(values, i):       # sd over factor i's levels of the marginal means over the grid
        return float((np.bincount(grid[:, i], weights=values) / (len(grid) / sizes[i])).std(ddof=1))

    truth = {
        "trained": {f: {d: level_sd(logit_p[d], i) for d in datasets} for i, f in enumerate(factors)},
        "test_accuracy_trained": {f: {d: float(np.std(a[f, d], ddof=1)) for d in datasets} for f in factors},
        "trained_rate": {d: float(np.mean(1 / (1 + np.exp(-logit_p[d])))) for d in datasets},
    }

    chance = 1.0 / classes
    ceiling = int(np.floor((chance + TRAINED_MARGIN) * trials))    # a stuck run's most correct training examples
    rows = []
    for c in balanced_configs(sizes, configs, rng):
        index = int(np.ravel_multi_index(tuple(c), sizes))
        for d in datasets:
            p = 1 / (1 + np.exp(-logit_p[d][index]))
            for seed in range(seeds):
                status = "ok"
                if rng.random() < p:
                    eta = (np.log(accuracy / (1 - accuracy)) + rng.normal(0, seed_sd)
                           + sum(a[f, d][c[i]] for i, f in enumerate(factors)))
                    k_test = int(rng.binomial(trials, 1 / (1 + np.exp(-eta))))
                    k_train = max(int(rng.binomial(trials, 1 / (1 + np.exp(-(eta + 0.5))))), ceiling + 1)
                else:
                    status = "diverged" if rng.random() < 0.5 else "ok"
                    k_test = int(rng.binomial(trials, chance))
                    k_train = min(int(rng.binomial(trials, chance + TRAINED_MARGIN / 2)), ceiling)
                rows.append({"run_id": f"{d}/{index}/{seed}", "dataset": d, "config_id": str(index), "seed": seed,
                             "status": status, **{f: spec["factors"][f]["levels"][c[i]] for i, f in enumerate(factors)},
                             "n_test": trials, "n_test_correct": k_test, "test_accuracy": k_test / trials,
                             "n_train": trials, "n_train_correct": k_train, "train_accuracy": k_train / trials})
    return pd.DataFrame(rows), truth
