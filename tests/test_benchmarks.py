"""Smoke test of ``python -m benchmarks``: every benchmark runs at quick sizes and gives its rows.

Nothing here judges a timing (the benchmarks print ratios against
references; tests never assert on speed). ``--offline`` skips what needs
PyPI (the original datamaestro's virtualenv in ``cli_startup``): those rows
must say they were skipped, every other row must hold a figure.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.__main__ import available, cells  # noqa: E402
from benchmarks._common import Row  # noqa: E402
from benchmarks._peers import S5CMD_VERSION  # noqa: E402
from benchmarks._plot import headroom, parse_target  # noqa: E402


def _installed_version(package: str) -> str | None:
    """The version of a distribution installed in this interpreter's environment, None when it is not."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("name", available())
def test_quick_offline_run_gives_rows_for_every_benchmark(name, tmp_path):
    # one test per benchmark: the parallel test run spreads them over its workers (most of their
    # time is spent waiting on servers and child processes; timings mean nothing here)
    runner = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--offline", "--work", str(tmp_path), name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert runner.returncode == 0, runner.stdout[-2000:] + runner.stderr[-4000:]
    results = json.loads((tmp_path / "results-quick.json").read_text())
    rows = results["rows"]
    assert not [r for r in rows if r["measure"] == "FAILED"], rows
    assert rows and {r["benchmark"] for r in rows} == {name}
    for row in rows:
        # a figure, or the reason why there is none
        assert row["value"] is not None or row["skipped"], row
        if row["skipped"]:
            # only what needs PyPI (the original datamaestro's virtualenv, a reference tool to install) may be skipped
            assert "--offline" in row["skipped"], row
            assert "skipped" in runner.stderr
    if name in ("remote_s3", "remote_packs") and _installed_version("s5cmd") == S5CMD_VERSION:
        # where the s5cmd wheel is installed (the test extra does not install it): its binary is the reference, offline too (nothing skipped)
        assert all(row["value"] is not None and row["reference"] for row in rows), rows
        assert all("s5cmd" in row["note"] for row in rows), rows
    if name == "scaling":
        # the scaling curves: both series (warm prepare and verify each), the generated trees', every point measured
        curves = [c for c in results["curves"] if c["benchmark"] == "scaling"]
        assert len(curves) == 5
        for curve in curves:
            for points in curve["series"].values():
                assert len(points) >= 2 and all(y > 0 for _, y in points), curve
        page = (tmp_path / "results-quick.md").read_text()
        assert "## Scaling curves" in page and "python -m benchmarks --quick --offline" in page
        if importlib.util.find_spec("matplotlib") is not None:
            assert (tmp_path / "results-quick.png").stat().st_size > 0
    # the committed figures are never replaced by a quick run
    assert "results-quick" not in (REPO / "benchmarks" / "results.md").read_text()


def test_targets_on_one_scale():
    assert parse_target("≤ 0.33") == (True, 0.33, "")
    assert parse_target("≥ 3") == (False, 3.0, "")
    assert parse_target("< 100 MB") == (True, 100.0, "MB")
    assert parse_target("") is None
    # an upper bound on the ratio, a lower bound on the ratio, a bound on the value
    assert headroom(Row("b", "m", 1.0, 2.0, 0.5, "≤ 1.2")) == 0.5 / 1.2
    assert headroom(Row("b", "m", 6.0, 2.0, 3.0, "≥ 6")) == 2.0
    assert headroom(Row("b", "m", 20.0, None, None, "< 50 ms", "ms")) == 0.4
    assert headroom(Row("b", "m", None, target="≤ 1", skipped="--offline")) is None


def test_skipped_rows_say_so_next_to_their_target():
    row = Row("cli_startup", "`datamaestro --help`", 0.1, target="≤ 0.33", unit="s", skipped="--offline")
    assert cells(row)[2:6] == ["0.1 s", "skipped", "", "≤ 0.33"]
    row = Row("cli_startup", "search", None, target="≤ 0.5", skipped="--offline")
    assert cells(row)[2:4] == ["skipped", "skipped"]
