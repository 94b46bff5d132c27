"""posterior: the file's contract, exact answers on hand-made draws."""

import numpy as np

from whatmatters import posterior as P


def test_hdi_exact():
    assert P.hdi([0, 1, 2, 3, 4, 5, 6, 7, 8, 100], 0.8) == (0.0, 8.0)     # skips the outlier
    assert P.hdi(np.arange(101.0), 0.5) == (0.0, 50.0)
