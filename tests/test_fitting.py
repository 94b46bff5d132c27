"""fitting: every method the study accepts has a fit."""

from whatmatters import fitting, study


def test_every_method_the_study_accepts_is_fitted():
    assert tuple(fitting.METHODS) == study.METHODS
