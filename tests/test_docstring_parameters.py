"""Every public parameter is documented, in signature order.

As scikit-learn's ``sklearn/tests/test_docstring_parameters.py``: for every
class and function listed in a public namespace (``skasync.__all__`` and the
``__all__`` of each public subpackage), the numpydoc "Parameters" section
must name exactly the parameters of the signature, in the same order. A
class is checked against its constructor, and so is each public method it
defines (fit, predict, forecast, from_estimator, ...). Result records
(dataclasses and named tuples) document their fields under "Attributes",
which is checked instead.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import dataclasses
import importlib
import inspect
import pkgutil
import warnings

import pytest
from numpydoc.docscrape import NumpyDocString

import skasync


def _public_namespaces():
    subpackages = [
        f"skasync.{info.name}"
        for info in pkgutil.iter_modules(skasync.__path__)
        if info.ispkg and not info.name.startswith("_")
    ]
    return [importlib.import_module(name) for name in ["skasync", *subpackages]]


def _is_record(cls):
    return dataclasses.is_dataclass(cls) or (
        issubclass(cls, tuple) and hasattr(cls, "_fields")
    )


def _public_methods(cls):
    """Public methods ``cls`` defines or inherits from skasync code."""
    for name in sorted(dir(cls)):
        if name.startswith("_") or isinstance(
            inspect.getattr_static(cls, name), property
        ):
            continue
        method = getattr(cls, name)
        # Methods from scikit-learn or builtins (get_params, count, ...)
        # are documented by their own projects.
        if (inspect.isfunction(method) or inspect.ismethod(method)) and getattr(
            method, "__module__", ""
        ).startswith("skasync"):
            yield name, method


def _public_objects():
    """(public name, object) for each class and function in an ``__all__``.

    An object exported twice (``skasync.LagFeatures`` is
    ``skasync.preprocessing.LagFeatures``) is listed once, by its shorter name.
    """
    names, objects = {}, {}
    for module in _public_namespaces():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                public = f"{module.__name__}.{name}"
                if id(obj) not in names or len(public) < len(names[id(obj)]):
                    names[id(obj)], objects[id(obj)] = public, obj
    return sorted((names[key], objects[key]) for key in names)


def _documented_callables():
    """(public name, callable, docstring section) for every checked signature."""
    entries = []
    for public, obj in _public_objects():
        if inspect.isfunction(obj):
            entries.append((public, obj, "Parameters"))
            continue
        entries.append((public, obj, "Attributes" if _is_record(obj) else "Parameters"))
        entries += [
            (f"{public}.{name}", method, "Parameters")
            for name, method in _public_methods(obj)
        ]
    return entries


def _signature_names(obj):
    names = []
    for name, param in inspect.signature(obj).parameters.items():
        if name in ("self", "cls"):
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            name = f"*{name}"
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            name = f"**{name}"
        names.append(name)
    return names


def docstring_parameter_errors(obj, section="Parameters"):
    """Differences between ``obj``'s signature and its numpydoc ``section``.

    Parameters
    ----------
    obj : callable
        Function, method or class (checked against its constructor).
    section : str, default="Parameters"
        The docstring section that must list the signature's parameters.

    Returns
    -------
    errors : list of str
        Empty when the section names exactly the signature's parameters,
        in the same order.
    """
    expected = _signature_names(obj)
    doc = inspect.getdoc(obj)
    if not doc:
        return ["no docstring"] if expected else []
    # numpydoc warns about a misspelt section header; it would hide one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            parsed = NumpyDocString(doc)
        except Exception as error:  # noqa: BLE001 - reported as the failure
            return [f"docstring does not parse: {error}"]
    documented = [
        name.strip()
        for entry in parsed[section]
        for name in entry.name.split(",")
        if name.strip()
    ]
    errors = [
        f"{name!r} is not documented" for name in expected if name not in documented
    ]
    errors += [
        f"{name!r} is documented but not in the signature"
        for name in documented
        if name not in expected
    ]
    errors += [
        f"{name!r} is documented more than once"
        for name in sorted(set(documented))
        if documented.count(name) > 1
    ]
    if not errors and documented != expected:
        position, (doc_name, sig_name) = next(
            (i, pair)
            for i, pair in enumerate(zip(documented, expected))
            if pair[0] != pair[1]
        )
        errors.append(
            f"parameter {position} is documented as {doc_name!r}; "
            f"the signature has {sig_name!r} there"
        )
    return errors


CALLABLES = _documented_callables()


def test_public_api_is_found():
    names = {public for public, _, _ in CALLABLES}
    # A guard on the discovery itself: these must be among the checked names.
    for name in (
        "skasync.ARSieveForestRegressor.fit",
        "skasync.ARSieveForestRegressor.forecast",
        "skasync.AsyncLayerwiseMLPClassifier.partial_fit",
        "skasync.BlockLocalClassifier.predict",
        "skasync.ensemble.ForecastDisplay.from_estimator",
        "skasync.ensemble.ForecastResult",
        "skasync.bootstrap.fit_ar_sieve",
        "skasync.datasets.make_arma",
        "skasync.LagFeatures.transform",
        "skasync.utils.all_estimators",
    ):
        assert name in names


@pytest.mark.parametrize(
    "obj, section", [entry[1:] for entry in CALLABLES], ids=[e[0] for e in CALLABLES]
)
def test_docstring_parameters(obj, section):
    errors = docstring_parameter_errors(obj, section)
    assert not errors, "\n".join(errors)


# --- the checker catches what it is meant to catch ---------------------------


def _missing(a, b, *, c=None):
    """Made up.

    Parameters
    ----------
    a : int
        First.
    c : int, default=None
        Third.
    """


def _misordered(a, b):
    """Made up.

    Parameters
    ----------
    b : int
        Second.
    a : int
        First.
    """


def _not_in_signature(a):
    """Made up.

    Parameters
    ----------
    a : int
        First.
    b : int
        Not a parameter.
    """


class _MadeUp:
    """Made up.

    Parameters
    ----------
    beta : float
        Second.
    alpha : float
        First.
    """

    def __init__(self, alpha, beta):
        self.alpha = alpha
        self.beta = beta


class _MadeUpRecord(tuple):
    """Made up named tuple.

    Attributes
    ----------
    x : float
        First.
    """

    _fields = ("x", "y")

    def __new__(cls, x, y):
        return super().__new__(cls, (x, y))


def test_checker_catches_a_missing_parameter():
    assert docstring_parameter_errors(_missing) == ["'b' is not documented"]


def test_checker_catches_a_misordered_parameter():
    assert docstring_parameter_errors(_misordered) == [
        "parameter 0 is documented as 'b'; the signature has 'a' there"
    ]


def test_checker_catches_a_parameter_not_in_the_signature():
    assert docstring_parameter_errors(_not_in_signature) == [
        "'b' is documented but not in the signature"
    ]


def test_checker_reads_a_class_constructor():
    assert docstring_parameter_errors(_MadeUp) == [
        "parameter 0 is documented as 'beta'; the signature has 'alpha' there"
    ]
    assert docstring_parameter_errors(_MadeUpRecord, "Attributes") == [
        "'y' is not documented"
    ]


def test_checker_accepts_a_matching_docstring():
    def documented(a, b=1, *args, **kwargs):
        """Made up.

        Parameters
        ----------
        a, b : int
            First and second.
        *args : tuple
            Positional extras.
        **kwargs : dict
            Keyword extras.
        """

    assert docstring_parameter_errors(documented) == []
