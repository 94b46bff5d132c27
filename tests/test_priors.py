"""priors: the zero-sum basis both models build their level effects on."""

import numpy as np

from whatmatters.priors import zero_sum_basis


def test_zero_sum_basis_is_orthonormal():
    for n in (2, 3, 7):
        basis = zero_sum_basis(n)
        np.testing.assert_allclose(basis.T @ basis, np.eye(n - 1), atol=1e-12)
        np.testing.assert_allclose(basis.sum(axis=0), 0, atol=1e-12)
