"""Smoke test of ``python -m benchmarks``: every benchmark runs at quick sizes and gives its rows.

Nothing here judges a timing (the benchmarks print ratios against
references; tests never assert on speed). ``--offline`` skips what needs
PyPI (the original datamaestro's virtualenv in ``cli_startup``): those rows
must say they were skipped, every other row must hold a figure.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.__main__ import available, cells  # noqa: E402
from benchmarks._common import Row  # noqa: E402
from benchmarks._plot import headroom, parse_target  # noqa: E402


#: rough seconds of each benchmark's quick run on a 2-core machine (others: about 3 s), to balance the two runners
QUICK_SECONDS = {"remote_s3": 25, "prepare_warm": 10, "sharedfs": 9, "sync": 7, "ingest_memory": 7, "scaling": 5}


def balanced_groups(names: list[str], count: int = 3) -> list[list[str]]:
    """The benchmarks in ``count`` groups of about the same quick-run time (longest first, each to the lightest group)."""
    groups: list[list[str]] = [[] for _ in range(count)]
    load = [0] * count
    for name in sorted(names, key=lambda n: -QUICK_SECONDS.get(n, 3)):
        lightest = load.index(min(load))
        groups[lightest].append(name)
        load[lightest] += QUICK_SECONDS.get(name, 3)
    return [group for group in groups if group]


def test_quick_offline_run_gives_rows_for_every_benchmark(tmp_path):
    # three runners at once, each with a third of the benchmarks by time: most of their time is spent
    # waiting on servers and child processes, and the suite has a time budget (timings mean nothing here)
    names = available()
    groups = balanced_groups(names)
    runners = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--quick", "--offline", "--work", str(tmp_path / f"group{i}"), *group],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, group in enumerate(groups)
    ]
    outputs = [runner.communicate(timeout=600) for runner in runners]
    for runner, (stdout, stderr) in zip(runners, outputs):
        assert runner.returncode == 0, stdout[-2000:] + stderr[-4000:]
    rows, curves = [], []
    for i in range(len(groups)):
        part = json.loads((tmp_path / f"group{i}" / "results-quick.json").read_text())
        rows += part["rows"]
        curves += part["curves"]
    results = {"rows": rows, "curves": curves}
    done = subprocess.CompletedProcess([], 0, "".join(o[0] for o in outputs), "".join(o[1] for o in outputs))
    assert not [r for r in rows if r["measure"] == "FAILED"], rows
    assert {r["benchmark"] for r in rows} == set(names)
    for row in rows:
        # a figure, or the reason why there is none
        assert row["value"] is not None or row["skipped"], row
        if row["skipped"]:
            # only what needs PyPI (the original datamaestro's virtualenv, a reference tool to install) may be skipped
            assert "--offline" in row["skipped"], row
    assert "skipped" in done.stderr
    # the scaling curves: both series, every point measured
    curves = [c for c in results["curves"] if c["benchmark"] == "scaling"]
    assert len(curves) == 4
    for curve in curves:
        for points in curve["series"].values():
            assert len(points) >= 2 and all(y > 0 for _, y in points), curve
    scaling = tmp_path / f"group{next(i for i, names in enumerate(groups) if 'scaling' in names)}"
    page = (scaling / "results-quick.md").read_text()
    assert "## Scaling curves" in page and "python -m benchmarks --quick --offline" in page
    if importlib.util.find_spec("matplotlib") is not None:
        assert (scaling / "results-quick.png").stat().st_size > 0
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
