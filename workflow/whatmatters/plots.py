"""Figures of a fitted outcome: rank probabilities, importance, level effects, diagnostics.

Each `*_figure` function builds one matplotlib Figure from an InferenceData (or a
diagnostics dict) and touches no global state (no pyplot), so it is safe in a headless
Snakemake job; `plot_outcome` writes them all. Factors are listed most important first
(by pooled expected rank) in every figure, so rows line up across figures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from whatmatters.io import atomic_path  # noqa: E402
from whatmatters.outputs import FIGURES  # noqa: E402
from whatmatters.posterior import (  # noqa: E402
    POOLED, hdi, importance_by_scope, level_dim, provenance_of, spec_of,
)
from whatmatters.summarize import diagnostics, expected_ranks, rank_probabilities  # noqa: E402

RED, GREEN, ORANGE, BLUE = "#c0392b", "#1e8449", "#d68910", "#2e86c1"


def plot_outcome(idata, spec: dict, out_dir) -> list[Path]:
    """Write the figures of `whatmatters.outputs.FIGURES` into `out_dir`, atomically (ppc.png
    only when the posterior holds the runs). Returns the paths written."""
    out = Path(out_dir)
    stamp = _stamp(idata, spec)
    written = []
    for key, fig in (("ranks", ranks_figure(idata)), ("importance", importance_figure(idata)),
                     ("level_effects", level_effects_figure(idata, spec))):
        written += [_save(fig, out / FIGURES[k], stamp) for k in (key, f"{key}_svg")]
    if "constant_data" in idata.groups() and {"run_trials", "run_value"} & set(idata.constant_data):
        written.append(_save(ppc_figure(idata), out / FIGURES["ppc"], stamp))
    written.append(_save(estimands_figure(idata), out / FIGURES["estimands"], stamp))
    written.append(_save(diagnostics_figure(diagnostics(idata)), out / FIGURES["diagnostics"], stamp))
    return written


def ppc_figure(idata, n_draws: int = 100) -> Figure:
    """Posterior predictive check, one column per dataset. Top: the ECDF of the observed run
    accuracies (black) over those of `n_draws` replicated run tables (blue); titles give
    P(T_rep >= T_obs) for the spread (sd) and the worst run (min). Bottom: the spread of the
    config means around their additive fit (`whatmatters.ppc.config_spread`), observed
    (black line) against the replicates (blue histogram). P-values near 0 or 1 mean the
    model does not reproduce that feature of the data."""
    from whatmatters import outcomes
    from whatmatters.ppc import config_spread, replicate

    data = idata.constant_data
    outcome = outcomes.resolve(spec_of(idata)["outcome"])
    get = lambda name: data[name].values if name in data else None       # noqa: E731
    observed = outcomes.observed(outcome, get("run_successes"), get("run_trials"), get("run_value"))
    replicated = replicate(idata, n_draws=n_draws)
    spread = config_spread(idata, n_draws=n_draws)
    datasets = [str(d) for d in idata.posterior["dataset"].values]
    fig = Figure(figsize=(3.6 * len(datasets) + 0.5, 6.2), layout="constrained")
    axes = fig.subplots(2, len(datasets), squeeze=False)
    for i, name in enumerate(datasets):
        ax, low = axes[0, i], axes[1, i]
        mine = data["run_dataset"].values == i
        obs, rep = observed[mine], replicated[:, mine]
        steps = np.arange(1, obs.size + 1) / obs.size
        for row in rep:
            ax.step(np.sort(row), steps, color=BLUE, alpha=0.08, lw=1)
        ax.step(np.sort(obs), steps, color="black", lw=1.6)
        p_sd = float((rep.std(axis=1) >= obs.std()).mean())
        p_min = float((rep.min(axis=1) >= obs.min()).mean())
        ax.set_title(f"{name}\nP(sd_rep >= sd) {p_sd:.2f}, P(min_rep >= min) {p_min:.2f}", fontsize=9)
        ax.set_xlabel(f"run {outcome['label']}")
        if outcome["kind"] == "continuous":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        s = spread[name]
        low.hist(s["replicated"], bins=20, color=BLUE, alpha=0.6)
        low.axvline(s["observed"], color="black", lw=1.6)
        low.set_title(f"config means around the additive fit\nP(rep >= observed) {s['p_value']:.2f}", fontsize=9)
        low.set_xlabel("rms deviation of config means (model scale)")
    axes[0, 0].set_ylabel("fraction of runs")
    axes[1, 0].set_ylabel("replicated tables")
    fig.suptitle(f"posterior predictive check: observed (black) vs {replicated.shape[0]} replicated tables (blue)",
                 fontsize=10)
    return fig


def estimands_figure(idata) -> Figure:
    """Expected rank (dot) and 90% rank interval of each factor under every estimand the
    posterior holds, pooled scope; a line per factor, so a factor whose rank depends on
    the estimand shows as a crossing line. The title gives Kendall's tau between the
    posterior-mean rankings of the first estimand and each other."""
    from whatmatters.estimands import describe, present, rank_agreement
    from whatmatters.summarize import ranks

    names = present(idata.posterior)
    outcome = spec_of(idata).get("outcome")
    order = list(expected_ranks(idata).index)
    fig = Figure(figsize=(2.2 * len(names) + 3, 0.4 * len(order) + 2.2), layout="constrained")
    ax = fig.subplots()
    _rank_lines(ax, [(f"{n}\n({', '.join(describe(n, outcome))})", ranks(importance_by_scope(idata, n)[POOLED]))
                     for n in names], order)
    agreement = rank_agreement(idata.posterior)
    pooled = agreement[(agreement["dataset"] == POOLED) & (agreement["estimand_a"] == names[0])]
    taus = ", ".join(f"{r.estimand_b} {r.tau_of_means:+.2f}" for r in pooled.itertuples())
    ax.set_title(f"pooled ranks by estimand; Kendall tau vs {names[0]}: {taus or 'n/a'}", fontsize=9)
    return fig


def _rank_lines(ax, columns: list[tuple], order: list[str]) -> None:
    """One x position per column (label, rank draws (chain, draw, factor)); per factor its
    expected rank (dot, joined across columns) and central 90% rank interval (bar)."""
    colors = matplotlib.colormaps["tab10"]
    for k, f in enumerate(order):
        offset = (k - len(order) / 2) * 0.03
        means = []
        for x, (_, r) in enumerate(columns):
            rd = r.sel(factor=f).values.ravel()
            low, high = np.quantile(rd, [0.05, 0.95], method="inverted_cdf")
            ax.vlines(x + offset, low, high, color=colors(k % 10), lw=1.2, alpha=0.7)
            means.append(rd.mean())
        ax.plot(np.arange(len(columns)) + offset, means, "o-", color=colors(k % 10), label=f)
    ax.set_xticks(range(len(columns)), [label for label, _ in columns], fontsize=8)
    ax.set_ylim(len(order) + 0.5, 0.5)
    ax.set_ylabel("rank (1 = most important): mean and 90% interval")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def outcomes_figure(posteriors: dict) -> Figure:
    """Pooled importance ranks under every fitted outcome side by side (a line per factor:
    a crossing line is a factor whose importance depends on the outcome), and, below, the
    contrasts of `summarize.CONTRASTS` present: each factor's expected rank under a minus
    under b (> 0: it matters more for a)."""
    from whatmatters.summarize import compare_outcomes, ranks

    table, contrasts = compare_outcomes(posteriors)
    first = next(iter(posteriors.values()))
    order = list(expected_ranks(first).index)
    n_rows = 1 + (contrasts["contrast"].nunique() > 0)
    fig = Figure(figsize=(2.0 * len(posteriors) + 3.5, (0.4 * len(order) + 2.2) * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, 1, squeeze=False)[:, 0]
    _rank_lines(axes[0], [(o.replace("_", "\n"), ranks(importance_by_scope(idata)[POOLED]))
                          for o, idata in posteriors.items()], order)
    axes[0].set_title(f"pooled importance ranks by outcome (factors ordered by {next(iter(posteriors))})",
                      fontsize=9)
    if n_rows > 1:
        ax = axes[1]
        names = list(dict.fromkeys(contrasts["contrast"]))
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            part = contrasts[contrasts["contrast"] == name].set_index("factor").loc[order]
            ax.barh(np.arange(len(order)) + j * width, part["shift"], height=width,
                    label=f"{name} ({part['meaning'].iloc[0]})")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(np.arange(len(order)) + 0.4 - width / 2, order, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("rank under b - rank under a  (> 0: matters more for a)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(axis="x", alpha=0.3)
    return fig


def plot_outcomes(posteriors: dict, out_path) -> Path:
    """Write `outcomes_figure` to `out_path` atomically."""
    first = next(iter(posteriors.values()))
    return _save(outcomes_figure(posteriors), Path(out_path), _stamp(first, spec_of(first)))


def ranks_figure(idata) -> Figure:
    """Heatmap of P(rank = k), factor x rank, one panel pooled and one per dataset."""
    probs = rank_probabilities(idata)
    order = list(expected_ranks(idata).index)
    scopes = list(dict.fromkeys(probs["dataset"]))
    n = len(order)
    fig = Figure(figsize=(0.55 * n * len(scopes) + 2.5, 0.45 * n + 1.6), layout="constrained")
    axes = fig.subplots(1, len(scopes), sharey=True, squeeze=False)[0]
    for ax, scope in zip(axes, scopes):
        table = (probs[probs["dataset"] == scope]
                 .pivot(index="factor", columns="rank", values="probability").loc[order])
        image = ax.imshow(table.values, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, k), p in np.ndenumerate(table.values):
            ax.text(k, i, f"{p:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if p > 0.55 else "black")
        ax.set_xticks(range(n), [str(k) for k in table.columns])
        ax.set_yticks(range(n), order)
        ax.set_title(_scope_title(scope))
    fig.supxlabel("rank (1 = most important)")
    fig.colorbar(image, ax=list(axes), label="posterior probability", shrink=0.9)
    return fig


def importance_figure(idata) -> Figure:
    """Posterior mean (dot), 50% (thick) and 90% (thin) intervals of each factor's
    importance, one panel pooled and one per dataset."""
    scopes = importance_by_scope(idata)
    order = list(expected_ranks(idata).index)
    fig = Figure(figsize=(3.2 * len(scopes) + 1.5, 0.4 * len(order) + 1.5), layout="constrained")
    axes = fig.subplots(1, len(scopes), sharey=True, sharex=True, squeeze=False)[0]
    for ax, (scope, imp) in zip(axes, scopes.items()):
        for y, f in enumerate(order):
            _interval(ax, y, imp.sel(factor=f).values, BLUE)
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_title(_scope_title(scope))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_xlim(0, 1.05 * max(hdi(imp.sel(factor=f).values, 0.90)[1]
                                   for imp in scopes.values() for f in order))
    fig.supxlabel("importance: sd of the factor's level effects (logit scale); mean, 50% and 90% HDI")
    return fig


def level_effects_figure(idata, spec: dict) -> Figure:
    """Per factor, the pooled effect beta_f of each level on the logit scale (mean, 50% and
    90% intervals); the baseline level drawn in orange and labelled."""
    order = list(expected_ranks(idata).index)
    ncols = min(4, len(order))
    nrows = -(-len(order) // ncols)
    height = max(len(spec["factors"][f]["levels"]) for f in order) * 0.35 + 1.0
    fig = Figure(figsize=(3.3 * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()   # own x scale: small effects stay visible
    post = idata.posterior
    for ax, f in zip(axes, order):
        beta = post[f"beta_{f}"]
        baseline = spec["factors"][f]["baseline"]
        levels = [str(v) for v in beta[level_dim(f)].values]
        for y, level in enumerate(levels):
            is_base = level == baseline
            _interval(ax, y, beta.sel({level_dim(f): level}).values, ORANGE if is_base else BLUE)
        ax.set_yticks(range(len(levels)),
                      [f"{lv} (baseline)" if lv == baseline else lv for lv in levels])
        for tick, lv in zip(ax.get_yticklabels(), levels):
            if lv == baseline:
                tick.set_color(ORANGE)
                tick.set_fontweight("bold")
        ax.set_ylim(len(levels) - 0.5, -0.5)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(order):]:
        ax.set_visible(False)
    fig.supxlabel("pooled level effect beta (logit scale; levels of a factor sum to 0)")
    return fig


def diagnostics_figure(diag: dict) -> Figure:
    """Sampler health and model check at a glance: a red WARNING banner naming each problem
    when `diag["ok"]` is False, a green "sampling healthy" line otherwise; an orange MODEL
    CHECK banner with each non-additivity finding; below, R-hat and bulk/tail ESS of every
    importance against their thresholds, and per dataset the posterior of the
    non-additivity share (config residual / all config-to-config variance).

    Args:
      diag: the dict returned by `summarize.diagnostics`.
    """
    fig = Figure(figsize=(14, 5.8))
    if diag["ok"]:
        fig.text(0.5, 0.96, f"sampling healthy: {_overall(diag)}", ha="center", va="center",
                 color=GREEN, fontsize=12, fontweight="bold")
    else:
        fig.text(0.5, 0.94, "WARNING: SAMPLING UNHEALTHY, DO NOT TRUST THESE RESULTS\n"
                 + "\n".join(diag["problems"]) + f"\n{_overall(diag)}",
                 ha="center", va="center", color="white", fontsize=11, fontweight="bold",
                 bbox={"boxstyle": "round,pad=0.6", "facecolor": RED, "edgecolor": RED}, wrap=True)
    notes = [*diag.get("warnings", [])]
    if diag.get("model_check"):
        fig.text(0.5, 0.86, "MODEL CHECK: " + "\n".join(diag["model_check"]), ha="center", va="center",
                 color="white", fontsize=8, wrap=True,
                 bbox={"boxstyle": "round,pad=0.4", "facecolor": ORANGE, "edgecolor": ORANGE})
    if notes:
        fig.text(0.5, 0.78, "; ".join(notes), ha="center", color=ORANGE, fontsize=9)

    rows = diag.get("importance", [])
    labels = [f"{r['factor']} / {r['dataset']}" for r in rows]
    y = np.arange(len(rows))
    ax_r, ax_e, ax_n = fig.subplots(1, 3, gridspec_kw={"top": 0.72, "bottom": 0.1, "left": 0.12, "wspace": 0.35})
    ax_e.sharey(ax_r)
    rhat = np.array([np.nan if r["rhat"] is None else r["rhat"] for r in rows], dtype=float)
    ax_r.scatter(rhat, y, c=[RED if v > diag["thresholds"]["max_rhat"] else GREEN for v in rhat], s=18)
    ax_r.axvline(diag["thresholds"]["max_rhat"], color=RED, ls="--", lw=1, label="max R-hat")
    ax_r.margins(x=0.1)                                   # keep the worst point off the frame
    ax_r.set_xlabel("R-hat of importance")
    ax_r.legend(loc="lower right", fontsize=8)
    for key, marker in (("ess_bulk", "o"), ("ess_tail", "s")):
        ax_e.scatter([np.nan if r[key] is None else r[key] for r in rows], y, marker=marker, s=18,
                     label=key.replace("_", " "))
    ax_e.axvline(diag["thresholds"]["min_ess"], color=ORANGE, ls="--", lw=1, label="min ESS")
    ax_e.set_xlabel("effective sample size of importance")
    ax_e.legend(loc="lower right", fontsize=8)
    ax_r.set_yticks(y, labels, fontsize=7)
    ax_r.set_ylim(len(rows) - 0.5, -0.5)

    from whatmatters.summarize import DOMINANT_SHARE, NONADDITIVE_SHARE
    nonadditive = diag.get("non_additivity", {})
    for i, (name, v) in enumerate(nonadditive.items()):
        color = RED if v["share"] > DOMINANT_SHARE else ORANGE if v["share"] > NONADDITIVE_SHARE else GREEN
        ax_n.hlines(i, *v["share_hdi"], color=color, lw=2)
        ax_n.plot([v["share"]], [i], "o", color=color)
        ax_n.text(1.02, i, f"{v['ratio']:.1f}x seed noise", va="center", fontsize=7)
    for x, color in ((NONADDITIVE_SHARE, ORANGE), (DOMINANT_SHARE, RED)):
        ax_n.axvline(x, color=color, ls="--", lw=1)
    ax_n.set_yticks(range(len(nonadditive)), list(nonadditive), fontsize=8)
    if nonadditive:                      # a posterior without the config residual has none
        ax_n.set_ylim(len(nonadditive) - 0.5, -0.5)
    ax_n.set_xlim(0, 1.25)
    ax_n.set_xlabel("non-additive share of config variance (90% HDI)")
    return fig


def _overall(diag: dict) -> str:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    return (f"{fmt(diag['divergences'], 'd')} divergences, max R-hat {fmt(diag['max_rhat'], '.3f')}"
            f" ({diag.get('worst_rhat_variable') or 'n/a'}), min ESS bulk {fmt(diag['min_ess_bulk'], '.0f')}"
            f" / tail {fmt(diag['min_ess_tail'], '.0f')}; {diag['chains']} chains x {diag['draws']} draws")


def _interval(ax, y: float, draws, color: str) -> None:
    """Mean dot, 50% HDI thick bar, 90% HDI thin bar at height y."""
    lo90, hi90 = hdi(draws, 0.90)
    lo50, hi50 = hdi(draws, 0.50)
    ax.hlines(y, lo90, hi90, color=color, lw=1.2)
    ax.hlines(y, lo50, hi50, color=color, lw=4)
    ax.plot([np.mean(draws)], [y], "o", color="white", mec=color, ms=5)


def _scope_title(scope: str) -> str:
    return "pooled (mean over datasets)" if scope == POOLED else scope


def _stamp(idata, spec: dict) -> str:
    revision = provenance_of(idata).get("code_revision", "unknown")
    return f"whatmatters; outcome {spec['outcome']['name']}; code {revision}"


def _save(fig: Figure, path: Path, stamp: str) -> Path:
    fmt = path.suffix.lstrip(".")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata={"Description": stamp}
                    if fmt in ("png", "svg") else None)
    return path
