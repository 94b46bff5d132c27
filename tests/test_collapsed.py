"""collapsed model: the marginal likelihood is exact, planted hierarchies come back, and the
estimands and posterior predictive check give known answers."""

import numpy as np
import pytest
import xarray as xr
from scipy.special import expit
from scipy.stats import halfnorm, multivariate_normal
from scipy.stats import t as student_t

from whatmatters import collapsed as C
from whatmatters import estimands as E
from whatmatters import plots
from whatmatters import posterior as P
from whatmatters import summarize as S
from whatmatters.errors import WhatmattersError
from whatmatters.fitting import fit
from whatmatters.outcomes import empirical_logit
from whatmatters.ppc import additive_misfit, config_spread, replicate
from whatmatters.priors import INTERACTION_LOCAL_DF, INTERACTION_SCALE, zero_sum_basis
from whatmatters.runtable import codes
from whatmatters.simulation import simulate_table

LEVELS = {"a": ["x", "y", "z"], "b": ["p", "q"], "c": ["k", "l", "m", "n"]}


def make_spec(datasets=("d1", "d2", "d3"), interactions=False, method="collapsed", draws=500):
    return {
        "factors": {f: {"levels": lv, "baseline": lv[0]} for f, lv in LEVELS.items()},
        "datasets": list(datasets),
        "outcome": {"name": "test_accuracy", "successes": "n_test_correct", "trials": "n_test"},
        "hypotheses": [{"name": "planted", "order": ["a", "b", "c"], "text": "a > b > c"}],
        "model": {"method": method, "interactions": interactions},
        "sampler": {"chains": 2, "draws": draws, "tune": 500, "target_accept": 0.9, "seed": 3, "cores": 1,
                    "nuts": "pymc"},
        "allow_missing": False,
    }


def brute_force_loglik(table, spec, c, sigma, tau, sigma_seed, sigma_config, sigma_int):
    """log p(cell means, within-cell SS | scales) from the dense multivariate normal, the
    config residual a separate term of each cell mean's covariance."""
    lc, dc = codes(table, spec)
    y, _ = empirical_logit(table.n_test_correct, table.n_test)
    keys, inv, m = np.unique(np.column_stack([dc, lc]), axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    ybar = np.bincount(inv, weights=y) / m
    ss = np.bincount(inv, weights=(y - ybar[inv]) ** 2)
    noise = c.variance[c.group_of_cell] + sigma_seed[keys[:, 0]] ** 2
    bases = [zero_sum_basis(len(lv)) for lv in LEVELS.values()]
    main = np.hstack([b[keys[:, 1 + i]] for i, b in enumerate(bases)])
    n_data = len(spec["datasets"])
    x = [np.eye(n_data)[keys[:, 0]], main]
    if n_data > 1:
        x.append((zero_sum_basis(n_data)[keys[:, 0]][:, :, None] * main[:, None, :]).reshape(len(m), -1))
    if c.pairs:
        for f, g in [(0, 1), (0, 2), (1, 2)]:
            x.append((bases[f][keys[:, 1 + f]][:, :, None] * bases[g][keys[:, 1 + g]][:, None, :]).reshape(len(m), -1))
    x = np.hstack(x)
    lam = C.prior_variance(c, sigma, tau, sigma_int, xp=np)
    cov = np.diag(noise / m + sigma_config[keys[:, 0]] ** 2) + x @ np.diag(lam) @ x.T
    return (multivariate_normal(x @ c.m0, cov).logpdf(ybar)
            + np.sum(-(m - 1) / 2 * np.log(noise) - ss / (2 * noise)))


@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("datasets,interactions", [(("d1", "d2", "d3"), False), (("d1", "d2", "d3"), True),
                                                    (("d1",), False)])
def test_marginal_likelihood_is_exact(datasets, interactions, form):
    spec = make_spec(datasets, interactions)
    table, _ = simulate_table(spec, {"a": 1.0, "b": 0.3, "c": 0.1}, configs=15, seeds=3, trials=300, random_seed=1)
    table = table.drop(index=[0, 4, 5, 9]).reset_index(drop=True)    # cells of 1, 2 and 3 seeds
    lc, dc = codes(table, spec)
    c = C.prepare(lc, dc, *empirical_logit(table.n_test_correct, table.n_test), [3, 2, 4], list(LEVELS), list(datasets),
                  interactions=interactions)
    model = C.build_model(c, form=form)
    logp = model.compile_logp()
    n_data = len(datasets)

    def point(sigma, tau, sigma_seed, sigma_config, sigma_int):
        p = {"sigma_log__": np.log(sigma), "sigma_seed_log__": np.log(sigma_seed),
             "sigma_config_log__": np.log(sigma_config)}
        if n_data > 1:
            p["tau_log__"] = np.log(tau)
        if interactions:   # sigma_int = pair_scale * pair_multiplier: the shared scale fixed at 0.5
            p["pair_scale_log__"] = np.log(0.5)
            p["pair_multiplier_log__"] = np.log(sigma_int / 0.5)
        return p

    def prior(sigma, tau, sigma_seed, sigma_config, sigma_int):   # HalfNormal priors, log-transform Jacobian
        lp = (halfnorm(scale=1).logpdf(sigma) + np.log(sigma)).sum()
        lp += (halfnorm(scale=0.5).logpdf(sigma_seed) + np.log(sigma_seed)).sum()
        lp += (halfnorm(scale=1).logpdf(sigma_config) + np.log(sigma_config)).sum()
        if n_data > 1:
            lp += (halfnorm(scale=0.5).logpdf(tau) + np.log(tau)).sum()
        if interactions:   # the shared scale at 0.5, half-Student-t multipliers sigma_int / 0.5
            lp += halfnorm(scale=INTERACTION_SCALE).logpdf(0.5) + np.log(0.5)
            multiplier = sigma_int / 0.5
            lp += (np.log(2) + student_t(INTERACTION_LOCAL_DF).logpdf(multiplier) + np.log(multiplier)).sum()
        return lp

    one = (np.array([1.0, 0.3, 0.1]), np.array([0.2, 0.3, 0.4]), np.array([0.1, 0.2, 0.15])[:n_data],
           np.array([0.3, 0.01, 0.6])[:n_data], np.array([0.1, 0.4, 0.02]))
    two = (np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.1, 0.4]), np.array([0.3, 0.05, 0.15])[:n_data],
           np.array([0.05, 0.5, 0.2])[:n_data], np.array([0.3, 0.2, 0.6]))
    # constants cancel in a difference of log densities
    expected = (brute_force_loglik(table, spec, c, *one) + prior(*one)
                - brute_force_loglik(table, spec, c, *two) - prior(*two))
    assert logp(point(*one)) - logp(point(*two)) == pytest.approx(expected, rel=1e-8, abs=1e-6)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_gradient_matches_finite_differences(form):
    spec = make_spec(interactions=True)
    table, _ = simulate_table(spec, {"a": 1.0, "b": 0.3, "c": 0.1}, configs=15, seeds=3, trials=300, random_seed=2)
    lc, dc = codes(table, spec)
    c = C.prepare(lc, dc, *empirical_logit(table.n_test_correct, table.n_test), [3, 2, 4], list(LEVELS), spec["datasets"],
                  interactions=True)
    model = C.build_model(c, form=form)
    f = model.logp_dlogp_function(ravel_inputs=True)
    f.set_extra_values({})
    n_free = sum(np.size(v) for v in model.initial_point().values())   # the log-scales
    x = np.random.default_rng(0).normal(-1, 0.5, size=n_free)
    _, grad = f(x)
    h = 1e-6
    numeric = np.array([(f(x + h * e)[0] - f(x - h * e)[0]) / (2 * h) for e in np.eye(x.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_primal_and_dual_draws_agree():
    """For fixed scales, theta and the config residuals drawn by the primal conditional and by
    the dual (pathwise) rule have the same mean and covariance: both are exact."""
    spec = make_spec(datasets=("d1", "d2"), interactions=True)
    table, _ = simulate_table(spec, {"a": 1.0, "b": 0.3, "c": 0.1}, configs=12, seeds=2, trials=300, random_seed=3)
    lc, dc = codes(table, spec)
    c = C.prepare(lc, dc, *empirical_logit(table.n_test_correct, table.n_test), [3, 2, 4], list(LEVELS),
                  spec["datasets"], interactions=True)
    n = 2000
    post = xr.Dataset({
        "sigma": (("chain", "draw", "factor"), np.tile([0.8, 0.3, 0.2], (1, n, 1))),
        "tau": (("chain", "draw", "factor"), np.tile([0.3, 0.3, 0.3], (1, n, 1))),
        "sigma_seed": (("chain", "draw", "dataset"), np.tile([0.1, 0.2], (1, n, 1))),
        "sigma_config": (("chain", "draw", "dataset"), np.tile([0.3, 0.05], (1, n, 1))),
        "sigma_interaction": (("chain", "draw", "pair"), np.tile([0.2, 0.1, 0.3], (1, n, 1))),
    })
    primal, dual = (C.draw_effects(c, post, seed=7, form=form) for form in ("primal", "dual"))
    for name in ["alpha", "beta_a", "gamma_c", "interaction_a__c", "residual_level_b"]:
        p, d = primal[name].values.reshape(n, -1), dual[name].values.reshape(n, -1)
        sd = p.std(axis=0)
        np.testing.assert_allclose(d.mean(axis=0), p.mean(axis=0), atol=0.1 * sd.max() + 1e-9)
        np.testing.assert_allclose(d.std(axis=0), sd, rtol=0.1, atol=1e-6)


def test_binomial_method_refuses_interactions():
    spec = make_spec(interactions=True, method="binomial")
    table, _ = simulate_table(spec, {"a": 1.0}, configs=10, seeds=2, random_seed=1)
    with pytest.raises(WhatmattersError, match="interactions"):
        fit(table, spec)


@pytest.mark.parametrize("limit,pairs", [(C.AUTO_PAIRS_MAX, True), (10, False)])
def test_auto_interactions_fit_pairs_when_the_algebra_is_small(monkeypatch, limit, pairs):
    """analysis.interactions: auto models the pairs when min(cells, columns) is within the
    cost limit, else main effects; the provenance says which and why."""
    monkeypatch.setattr(C, "AUTO_PAIRS_MAX", limit)
    spec = make_spec(datasets=("d1",), interactions="auto", draws=50)
    spec["sampler"] = {**spec["sampler"], "tune": 50, "chains": 1}
    table, _ = simulate_table(spec, {"a": 1.0, "b": 0.3}, configs=12, seeds=2, random_seed=1)
    idata = fit(table, spec)
    prov = P.provenance_of(idata)
    assert prov["interactions"] is pairs and ("<=" in prov["interactions_why"]) is pairs
    assert bool(P.interaction_names(idata.posterior)) is pairs


def test_binomial_method_takes_auto_as_main_effects():
    spec = make_spec(datasets=("d1",), interactions="auto", method="binomial", draws=50)
    spec["sampler"] = {**spec["sampler"], "tune": 50, "chains": 1}
    table, _ = simulate_table(spec, {"a": 1.0}, configs=8, seeds=2, random_seed=1)
    assert not P.interaction_names(fit(table, spec).posterior)


PLANTED = {"a": 1.0, "b": 0.45, "c": 0.1}


@pytest.fixture(scope="module")
def fitted():
    spec = make_spec()
    table, truth = simulate_table(spec, PLANTED, configs=20, seeds=3, trials=1000, random_seed=5)
    return spec, table, truth, fit(table, spec)


def test_planted_hierarchy_recovered_with_healthy_sampling(fitted):
    spec, table, truth, idata = fitted
    diag = S.diagnostics(idata)
    assert diag["divergences"] == 0 and diag["max_rhat"] <= 1.01, diag["problems"]
    assert list(S.expected_ranks(idata).index) == ["a", "b", "c"]
    table_ = S.importance_table(idata)
    pooled = table_[table_.dataset == "pooled"].set_index("factor")
    assert pooled.loc["a", "p_rank_1"] > 0.95
    for f in PLANTED:   # the pooled truth is the mean over datasets
        s = np.mean(list(truth["importance"][f].values()))
        assert pooled.loc[f, "hdi_5"] - 0.1 <= s <= pooled.loc[f, "hdi_95"] + 0.1


def test_fit_stores_runs_estimands_and_provenance(fitted):
    spec, table, truth, idata = fitted
    post = idata.posterior
    for name in ("importance", "importance_natural", "tunability"):
        assert post[name].dims == ("chain", "draw", "factor", "dataset")
        assert post[f"{name}_pooled"].dims == ("chain", "draw", "factor")
    assert "importance_total" not in post                     # interactions off
    assert (post["tunability"] >= 0).all() and (post["importance_natural"] >= 0).all()
    data = idata.constant_data
    assert list(data["run"].values) == table.run_id.tolist()
    assert (data["run_trials"].values == table.n_test.values).all()
    prov = P.provenance_of(idata)
    assert prov["method"] == "collapsed" and prov["sampler_used"] == "pymc" and prov["max_variance_shift"] < 0.1


def test_posterior_predictive_reproduces_the_runs(fitted, tmp_path):
    spec, table, truth, idata = fitted
    rep = replicate(idata, n_draws=40, seed=1)
    assert rep.shape == (40, len(table)) and ((rep >= 0) & (rep <= 1)).all()
    # per run that did not diverge, the replicated mean tracks the observed accuracy
    ok = (table.status == "ok").to_numpy()
    assert np.corrcoef(rep.mean(axis=0)[ok], table.test_accuracy[ok])[0, 1] > 0.9
    assert abs(rep.mean() - table.test_accuracy.mean()) < 0.03
    fig = plots.ppc_figure(idata, n_draws=20)
    assert len(fig.axes) == 2 * len(spec["datasets"])      # run accuracies; config means' spread
    # additive truth: the config means scatter as the model expects, and nothing is flagged
    spread = config_spread(idata, n_draws=40)
    assert set(spread) == set(spec["datasets"]) and all(0.02 < v["p_value"] for v in spread.values())
    diag = S.diagnostics(idata)
    assert diag["model_check"] == [] and diag["verdict"] == "healthy"
    assert all(v["share"] < S.NONADDITIVE_SHARE for v in diag["non_additivity"].values())


def test_additive_misfit_is_zero_for_additive_means_and_the_interaction_rms_otherwise():
    levels = np.array([[i, j] for i in range(3) for j in range(2)] * 2)          # 2 seeds per config
    additive = np.array([0.5, -0.5, 0.0])[levels[:, 0]] + np.array([1.0, -1.0])[levels[:, 1]]
    assert additive_misfit(additive, levels) == pytest.approx(0.0, abs=1e-12)
    # a pure interaction +-0.3 (zero-sum over both factors) on top: the residual sum of
    # squares is 6 x 0.09 over (6 configs - 4 parameters) degrees of freedom
    interaction = np.array([[0.3, -0.3], [-0.3, 0.3], [0.0, 0.0]])[levels[:, 0], levels[:, 1]]
    expected = np.sqrt((interaction[:6] ** 2).sum() / 2)
    assert additive_misfit(additive + interaction, levels) == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_strong_interactions_are_flagged_and_widen_the_intervals():
    """A table whose config means scatter far beyond seed noise (an optimizer that fails with
    one architecture, learning rate x batch size): the fit names it, and its intervals
    cover the model-free truth better than they would without the config residual."""
    from whatmatters.simulation import Scenario

    scenario = Scenario("interactions", seed=11, n_data=2)
    table = scenario.table(40, 3, np.random.default_rng(0))
    spec = {**scenario.spec(), "hypotheses": [], "model": {"method": "collapsed", "interactions": False},
            "sampler": {"chains": 2, "draws": 500, "tune": 500, "target_accept": 0.9, "seed": 1, "cores": 1,
                        "nuts": "pymc"}}
    idata = fit(table, spec)
    diag = S.diagnostics(idata)
    assert diag["model_check"] and diag["verdict"] != "healthy"
    assert all(v["ratio"] > 3 for v in diag["non_additivity"].values())
    assert any("interactions: true" in m for m in diag["model_check"])


def _posterior(effect_a, effect_b, delta=None, alpha=0.0):
    """A one-draw, one-dataset posterior with given level effects (chain, draw = 1, 1)."""
    post = xr.Dataset({
        "alpha": (("chain", "draw", "dataset"), np.full((1, 1, 1), alpha)),
        "beta_a": (("chain", "draw", "level_a"), np.array(effect_a, float)[None, None]),
        "beta_b": (("chain", "draw", "level_b"), np.array(effect_b, float)[None, None]),
    }, coords={"dataset": ["d1"], "level_a": ["x", "y", "z"], "level_b": ["p", "q"]})
    if delta is not None:
        post["interaction_a__b"] = (("chain", "draw", "level_a", "level_b"), np.array(delta, float)[None, None])
    return post


SPEC_AB = {"factors": {"a": {"levels": ["x", "y", "z"], "baseline": "x"},
                       "b": {"levels": ["p", "q"], "baseline": "q"}}, "datasets": ["d1"]}
FULL_GRID = np.array([[i, j] for i in range(3) for j in range(2)])


def test_estimands_known_answer():
    post = _posterior([-1.0, 0.0, 1.0], [0.5, -0.5])
    E.add_estimands(post, SPEC_AB, FULL_GRID, np.zeros(6, int))
    imp = post["importance"].sel(dataset="d1")
    assert imp.sel(factor="a").values.item() == pytest.approx(1.0)
    assert imp.sel(factor="b").values.item() == pytest.approx(np.std([0.5, -0.5], ddof=1))
    # accuracy with a set to each level, averaged over b's two levels
    acc_a = [np.mean(expit(e + np.array([0.5, -0.5]))) for e in (-1.0, 0.0, 1.0)]
    assert post["importance_natural"].sel(factor="a", dataset="d1").values.item() == pytest.approx(100 * np.std(acc_a, ddof=1))
    assert post["tunability"].sel(factor="a", dataset="d1").values.item() == pytest.approx(100 * (acc_a[2] - acc_a[0]))
    acc_b = [np.mean(expit(np.array([-1.0, 0.0, 1.0]) + e)) for e in (0.5, -0.5)]
    # b's baseline "q" is its worse level: tuning gains the gap
    assert post["tunability"].sel(factor="b", dataset="d1").values.item() == pytest.approx(100 * (acc_b[0] - acc_b[1]))
    assert "importance_total" not in post


def test_total_importance_adds_interactions():
    delta = np.array([[0.3, -0.3], [0.0, 0.0], [-0.3, 0.3]])          # doubly centred
    post = _posterior([-1.0, 0.0, 1.0], [0.5, -0.5], delta)
    E.add_estimands(post, SPEC_AB, FULL_GRID, np.zeros(6, int))
    total = post["importance_total"].sel(dataset="d1")
    square = np.mean(delta ** 2)
    assert total.sel(factor="a").values.item() == pytest.approx(np.sqrt(1.0 + 3 / 2 * square))
    assert total.sel(factor="b").values.item() == pytest.approx(np.sqrt(0.5 + 2 / 1 * square))
    # the accuracy of a level includes its interactions with the other factor's levels
    acc_z = np.mean(expit(np.array([1.0 - 0.3 + 0.5, 1.0 + 0.3 - 0.5])))
    assert post["level_natural_a"].sel(dataset="d1", level_a="z").values.item() == pytest.approx(100 * acc_z)


def test_rank_agreement_is_one_when_estimands_agree():
    post = _posterior([-1.0, 0.0, 1.0], [0.5, -0.5])
    E.add_estimands(post, SPEC_AB, FULL_GRID, np.zeros(6, int))
    agreement = E.rank_agreement(post)
    assert set(agreement["dataset"]) == {"pooled", "d1"}
    assert (agreement["tau_of_means"] == 1.0).all()


def test_continuous_outcome_recovers_planted_effects_on_the_log_scale():
    """A continuous outcome (here the odds of an error, exp(-logit accuracy) x a seed factor)
    is fitted on the log scale with no measurement variance: its importances are the
    accuracy's, and lower is better for tunability."""
    from whatmatters.outcomes import OUTCOMES

    spec = make_spec(datasets=("d1", "d2"), draws=1000)   # R-hat <= 1.01 needs more than 2 x 500 draws
    table, truth = simulate_table(spec, PLANTED, configs=20, seeds=3, trials=100_000,
                                    diverged_fraction=0.0, random_seed=6)
    table["train_loss"] = (table.n_test - table.n_test_correct) / table.n_test_correct
    spec["outcome"] = {"name": "final_train_loss", **OUTCOMES["final_train_loss"]}
    idata = fit(table, spec)
    assert S.diagnostics(idata)["ok"]
    assert list(S.expected_ranks(idata).index) == ["a", "b", "c"]
    imp = S.importance_table(idata)
    pooled = imp[imp.dataset == "pooled"].set_index("factor")
    for f in PLANTED:
        s = np.mean(list(truth["importance"][f].values()))
        assert pooled.loc[f, "hdi_5"] - 0.05 <= s <= pooled.loc[f, "hdi_95"] + 0.05
    # natural scale: the level means of the odds; tunability = baseline - best >= 0
    post = idata.posterior
    assert (post["tunability"] >= 0).all()
    est = S.estimands_table(idata)
    assert set(est.loc[est.estimand == "importance", "unit"]) == {"log"}
    assert set(est.loc[est.estimand == "importance_natural", "unit"]) == {"nats"}
    assert "run_value" in idata.constant_data
    assert replicate(idata, n_draws=5).shape == (5, len(table))


def test_continuous_outcome_refuses_missing_values_and_the_binomial_method():
    from whatmatters.outcomes import OUTCOMES

    spec = make_spec(datasets=("d1",))
    table, _ = simulate_table(spec, PLANTED, configs=10, seeds=2, random_seed=1)
    table["ece"] = 0.05
    table.loc[3, "ece"] = float("nan")
    spec["outcome"] = {"name": "calibration_error", **OUTCOMES["calibration_error"]}
    with pytest.raises(WhatmattersError, match=r"'ece' is missing for run\(s\) \['d1/"):
        fit(table, spec)
    table.loc[3, "ece"] = 0.05
    spec["model"]["method"] = "binomial"
    with pytest.raises(WhatmattersError, match="continuous"):
        fit(table, spec)
