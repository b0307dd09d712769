# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""scikit-learn's common checks on every public estimator, at its defaults.

The estimators are found with :func:`skasync.utils.discovery.all_estimators`,
so a new public estimator is checked without editing this file. Checks an
estimator is known to fail are declared, with the reason, by its own
``_expected_failed_checks``; fast or mode-specific variants live beside
the estimator's own tests, never instead of these.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync.utils.discovery import all_estimators

ESTIMATORS = [cls() for _, cls in all_estimators()]


def _expected_failed_checks(estimator):
    declared = getattr(estimator, "_expected_failed_checks", None)
    return {} if declared is None else declared()


def test_discovery_finds_every_public_estimator():
    import skasync

    public = {
        name
        for name in skasync.__all__
        if isinstance(getattr(skasync, name), type)
        and hasattr(getattr(skasync, name), "get_params")
    }
    assert {type(est).__name__ for est in ESTIMATORS} == public


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_estimators_at_their_defaults(estimator, check):
    check(estimator)
