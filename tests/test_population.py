"""The config residual's mean over the study's population: exact on a full factorial, the
unseen configs' share drawn with the right variance on a fraction."""

import numpy as np

from whatmatters.population import residual_level_means


def full_factorial(n_levels):
    return np.array(np.meshgrid(*[np.arange(n) for n in n_levels], indexing="ij")).reshape(len(n_levels), -1).T


def test_full_factorial_gives_the_observed_level_means():
    levels = full_factorial([2, 3])                                   # every config run once
    rng = np.random.default_rng(0)
    residual = rng.normal(size=(2, 5, len(levels)))                  # (chain, draw, C)
    means = residual_level_means(residual, levels, np.zeros(len(levels), int), np.full((2, 5, 1), 9.0),
                                 [2, 3], rng)
    for i, n in enumerate([2, 3]):
        for level in range(n):
            expected = residual[:, :, levels[:, i] == level].mean(axis=-1)
            np.testing.assert_allclose(means[i][:, :, 0, level], expected, rtol=1e-12)


def test_unseen_configs_add_their_share_of_variance():
    """One config run of a 4 x 5 grid: a level mean of factor 0 averages 5 configs, 4 unseen
    (sd 2 each) for level 0, 5 for the others: var = (4 or 5) x 4 / 25."""
    levels = np.array([[0, 0]])
    draws = 40_000
    residual = np.full((1, draws, 1), 1.0)
    means = residual_level_means(residual, levels, np.array([0]), np.full((1, draws, 1), 2.0), [4, 5],
                                 np.random.default_rng(1))[0][0, :, 0]           # (draw, L)
    np.testing.assert_allclose(means.mean(axis=0), [0.2, 0, 0, 0], atol=0.02)
    np.testing.assert_allclose(means.var(axis=0), [16 / 25, 20 / 25, 20 / 25, 20 / 25], rtol=0.05)
