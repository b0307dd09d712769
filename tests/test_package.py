"""Package-level contracts: public names, lazy torch import, discovery, CLI."""

import re
import subprocess
import sys

import pytest
from sklearn.base import is_classifier, is_regressor

import skasync
from skasync._cli import main
from skasync._demo._tables import format_table
from skasync.utils import all_estimators
from skasync.utils._threads import available_cpus

EXPECTED = {
    "ARSieveForestRegressor",
    "AsyncLayerwiseMLPClassifier",
    "BlockLocalClassifier",
    "LagFeatures",
}


def test_all_estimators_lists_public_classes_only():
    found = dict(all_estimators())
    assert set(found) == EXPECTED
    assert not any(name.startswith("Base") for name in found)
    assert is_regressor(found["ARSieveForestRegressor"]())
    assert is_classifier(found["AsyncLayerwiseMLPClassifier"]())
    assert is_classifier(found["BlockLocalClassifier"]())


def test_top_level_exports():
    for name in skasync.__all__:
        assert getattr(skasync, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        skasync.NotAThing  # noqa: B018


def _fresh_python(code):
    """What ``code`` prints in a new interpreter (nothing imported yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_forest_import_does_not_import_torch():
    code = (
        "import sys, skasync; skasync.ARSieveForestRegressor; "
        "skasync.make_lag_matrix; print('torch' in sys.modules)"
    )
    assert _fresh_python(code) == "False"


def test_forest_fit_and_forecast_do_not_import_statsmodels_or_torch():
    # statsmodels' import was most of a forest's first fit (the sieve is
    # fitted in NumPy): a fit must stay free of it, as of torch.
    code = (
        "import sys\n"
        "from skasync import ARSieveForestRegressor, make_lag_matrix\n"
        "from skasync.datasets import make_ar\n"
        "y = make_ar(200, random_state=0)\n"
        "for bootstrap in ('ar-sieve', 'moving'):\n"
        "    forest = ARSieveForestRegressor(n_estimators=5, bootstrap=bootstrap,\n"
        "                                    oob_score=True, random_state=0)\n"
        "    forest.fit(*make_lag_matrix(y, 3)).forecast(y, 3, quantiles=(0.1, 0.9))\n"
        "print(sorted(m for m in ('statsmodels', 'torch') if m in sys.modules))"
    )
    assert _fresh_python(code) == "[]"


def test_cli_version_and_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert skasync.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["demo", "--only", "nothing"])
    assert info.value.code == 2
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as info:
            main(["demo", "--n-jobs", bad])
        assert info.value.code == 2
    assert "--n-jobs" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "skasync", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "demo" in out


def test_table_formatting_aligns_columns():
    table = format_table(["name", "score"], [["a", 0.5], ["longer", 12.25]])
    lines = table.splitlines()
    assert len(lines[0]) == len(lines[2]) == len(lines[3])  # right-aligned numbers
    assert lines[2].endswith("0.5000") and lines[3].endswith("12.2500")
    assert lines[3].startswith("longer")
    assert "0.5000" in table and "12.2500" in table


def test_demo_forest_section_prints_baselines_and_writes_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import io

    from skasync._demo import run_demo

    stream = io.StringIO()
    report = run_demo(tmp_path, sections=["forest"], n_jobs=1, verbose=0, stream=stream)
    assert stream.getvalue().strip() == report.strip()
    rows = {line.split()[0] for line in report.splitlines() if line}
    for bootstrap in [
        "ar-sieve",
        "iid",
        "moving",
        "stationary",
        "circular",
        "nonoverlapping",
        "sklearn",
    ]:
        assert bootstrap in rows
    # the bootstrap is chosen by TimeSeriesSplit CV, and its row says so
    chosen = re.search(r"chosen by TimeSeriesSplit\(3\) CV: '([a-z-]+)'", report)
    assert chosen is not None
    choice_rows = [line for line in report.splitlines() if "(CV choice)" in line]
    assert len(choice_rows) == 1 and choice_rows[0].split()[0] == chosen.group(1)
    assert (tmp_path / "forest_forecast.png").stat().st_size > 0


def test_demo_backend_table_derives_its_verdict_and_auto_from_a_cold_pool():
    from skasync import AsyncLayerwiseMLPClassifier
    from skasync._demo._torch import _compare_backends
    from skasync.utils._processes import processes_supported, shutdown_pool

    if not processes_supported() or available_cpus() < 2:
        pytest.skip("worker processes need Linux and 2 CPUs")
    shutdown_pool()  # a first fit in this Python process
    try:
        text = _compare_backends(
            AsyncLayerwiseMLPClassifier(
                hidden_layer_sizes=(32,), max_iter=3, random_state=0
            )
        )
    finally:
        shutdown_pool()
    modes = ("sync", "hogwild", "d-asgd", "pd-asgd")
    rows = [line.split() for line in text.splitlines()]
    fit_seconds = {
        (row[0], row[1]): float(row[5])
        for row in rows
        if len(row) == 6 and row[0] in modes
    }
    assert set(fit_seconds) == {(m, b) for m in modes for b in ("threads", "processes")}
    # the verdict is the one the rows call for: the time processes save a
    # fit (warm pool) against the pool's first start, both as printed
    pool_start = float(re.search(r"first start: ([0-9.]+) s", text).group(1))
    saved = {m: fit_seconds[m, "threads"] - fit_seconds[m, "processes"] for m in modes}
    best = max(saved.values())
    if best <= 0:
        assert "On this data the processes do not pay" in text
    elif best < pool_start:
        printed = re.search(r"save at most ([0-9.]+) s a fit", text)
        assert printed and float(printed.group(1)) == pytest.approx(best, abs=0.006)
    else:
        assert "On this data the processes pay even on a first fit" in text
    assert pool_start > 0.1  # a cold start: interpreters and torch imports
    # digits is too small for processes to pay for their start on a first
    # fit, so auto keeps the threads there (as docs/benchmarks.rst says)
    assert (
        "backend='auto' picked 'threads' for a first pd-asgd fit (no pool yet" in text
    )


def test_cli_demo_dispatches_to_the_demo_sections(tmp_path, monkeypatch, capsys):
    # The CLI holds no demo code: `skasync demo --only X` runs the section
    # registered under X in skasync._demo, with the parsed --n-jobs.
    import skasync._demo

    calls = []

    def fake_section(progress, output_dir, n_jobs):
        calls.append((output_dir, n_jobs))
        progress.update("fake")
        return "fake async table", None

    monkeypatch.setitem(skasync._demo.SECTIONS, "async", (fake_section, 1))
    argv = ["demo", "--only", "async", "--output", str(tmp_path), "--n-jobs", "3"]
    assert main([*argv, "--quiet"]) == 0
    assert calls == [(tmp_path, 3)]
    out = capsys.readouterr().out
    assert out.startswith("fake async table\n")
    assert "none (install the 'plot' extra)" in out
