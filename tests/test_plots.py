"""plots: every figure is written in every format, and the warning banner shows when it must."""

import arviz as az
import numpy as np
import pytest

from whatmatters import plots, summarize

SPEC = {
    "factors": {"init": {"levels": ["default", "he", "small"], "baseline": "default"},
                "loss": {"levels": ["ce", "smooth"], "baseline": "ce"}},
    "datasets": ["d1", "d2"],
    "outcome": {"name": "test_accuracy"},
}


def fake_idata(chains=2, draws=200, shift=0.0, seed=0):
    """A posterior with the variables plots read; chain c is offset by c * shift."""
    rng = np.random.default_rng(seed)
    offset = shift * np.arange(chains)[:, None, None]
    beta_init = rng.normal([0.8, 0.2, -1.0], 0.1, (chains, draws, 3)) + offset
    beta_loss = rng.normal([0.1, -0.1], 0.05, (chains, draws, 2))
    imp = np.abs(rng.normal([1.0, 0.15], 0.1, (chains, draws, 2)))[..., None] * [1.0, 1.2]
    return az.from_dict(
        posterior={"beta_init": beta_init, "beta_loss": beta_loss, "importance": imp,
                   "importance_pooled": imp.mean(-1)},
        sample_stats={"diverging": np.zeros((chains, draws), bool)},
        coords={"factor": ["init", "loss"], "dataset": ["d1", "d2"],
                "level_init": SPEC["factors"]["init"]["levels"], "level_loss": SPEC["factors"]["loss"]["levels"]},
        dims={"beta_init": ["level_init"], "beta_loss": ["level_loss"],
              "importance": ["factor", "dataset"], "importance_pooled": ["factor"]},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    return out, plots.plot_outcome(fake_idata(), SPEC, out)


def test_plot_outcome_writes_every_figure(written):
    out, paths = written
    expected = {f"{n}.{fmt}" for n in ("ranks", "importance", "level_effects") for fmt in ("png", "svg")}
    assert {p.name for p in paths} == expected | {"estimands.png", "diagnostics.png"}   # no runs stored: no ppc
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    assert (out / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "ranks.svg").read_text()[:2000]
    assert not list(out.glob(".*.tmp"))


def _texts(fig):
    return " ".join(t.get_text() for t in fig.texts)


def test_diagnostics_figure_healthy():
    diag = summarize.diagnostics(fake_idata())
    assert diag["ok"], diag["problems"]
    assert "sampling healthy" in _texts(plots.diagnostics_figure(diag))


def test_diagnostics_figure_warns_loudly(tmp_path):
    diag = summarize.diagnostics(fake_idata(shift=2.0))    # chains disagree
    assert not diag["ok"]
    fig = plots.diagnostics_figure(diag)
    banner = [t for t in fig.texts if "WARNING" in t.get_text()]
    assert banner and "R-hat" in banner[0].get_text()
    assert banner[0].get_bbox_patch().get_facecolor()[:3] == pytest.approx((0xC0 / 255, 0x39 / 255, 0x2B / 255))
    paths = plots.plot_outcome(fake_idata(shift=2.0), SPEC, tmp_path)
    assert (tmp_path / "diagnostics.png") in paths


def test_ranks_rows_follow_expected_rank():
    fig = plots.ranks_figure(fake_idata())
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["init", "loss"]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["pooled (mean over datasets)", "d1", "d2"]


def test_level_effects_marks_baseline():
    fig = plots.level_effects_figure(fake_idata(), SPEC)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert "default (baseline)" in labels and "ce (baseline)" in labels


def test_outcomes_are_compared_side_by_side_with_the_optimization_contrast(tmp_path):
    """Two outcomes with opposite planted orders: the comparison table says so, the
    contrast puts a > 0 shift on the factor that matters for train accuracy only."""
    from whatmatters import plots, summarize
    from whatmatters.fitting import fit
    from whatmatters.outcomes import OUTCOMES
    from whatmatters.simulation import simulate_table

    spec = {"factors": {f: {"levels": ["l0", "l1", "l2"], "baseline": "l0"} for f in ("a", "b", "c")},
            "datasets": ["d1"], "hypotheses": [], "model": {"method": "collapsed", "interactions": False},
            "sampler": {"chains": 2, "draws": 200, "tune": 200, "target_accept": 0.9, "seed": 1, "cores": 1,
                        "nuts": "auto"}, "allow_missing": False}
    posteriors = {}
    for outcome, planted in (("train_accuracy", {"a": 1.0, "b": 0.3, "c": 0.05}),
                             ("test_accuracy", {"a": 0.05, "b": 0.3, "c": 1.0})):
        table, _ = simulate_table(spec, planted, configs=27, seeds=2, trials=2000, random_seed=3)
        table["n_train_correct"], table["n_train"] = table["n_test_correct"], table["n_test"]
        posteriors[outcome] = fit(table, {**spec, "outcome": {"name": outcome, **OUTCOMES[outcome]}})
    ranks, contrasts = summarize.compare_outcomes(posteriors)
    top = ranks.loc[ranks.groupby("outcome")["expected_rank"].idxmin()].set_index("outcome")["factor"]
    assert top.to_dict() == {"train_accuracy": "a", "test_accuracy": "c"}
    shift = contrasts.set_index("factor")
    assert set(contrasts["contrast"]) == {"train_accuracy vs test_accuracy"}
    assert shift.loc["a", "shift"] > 1.5 and shift.loc["a", "p_more_for_a"] > 0.9
    assert shift.loc["c", "shift"] < -1.5
    out = plots.plot_outcomes(posteriors, tmp_path / "outcomes.png")
    assert out.stat().st_size > 10_000
