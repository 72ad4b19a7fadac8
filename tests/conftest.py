"""The test suite's set-up: the test plugin on the path, then the shared fixtures.

The test repository (``tests/plugins/datamaestro_testimage``) is never
installed: its folder, which holds its package and the metadata that
declares its entry point, goes first on ``sys.path`` here and on
``PYTHONPATH`` for the processes the tests start. Running the tests thus
changes nothing in the user's environment, and always uses this checkout's
copy of the plugin.
"""

import functools
import os
import re
import sys
from pathlib import Path

import pytest

TEST_PLUGIN = str(Path(__file__).parent / "plugins" / "datamaestro_testimage")

if TEST_PLUGIN not in sys.path:
    sys.path.insert(0, TEST_PLUGIN)
os.environ["PYTHONPATH"] = os.pathsep.join([TEST_PLUGIN, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

pytest_plugins = ["support.httpserver", "support.dmfixtures", "support.mnistdata"]

#: user properties of a test's reports: the seed of a seeded reliability test (with the
#: command that replays it), and a line it reports (timings); listed at the end of the session
SEED_PROPERTY = "reliability seed"
REPORT_PROPERTY = "reliability report"
_SUMMARY = {SEED_PROPERTY: [], REPORT_PROPERTY: []}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """The parallel run's scheduler: a module with a module-scoped fixture goes whole to one worker, other tests one by one.

    Each worker would otherwise start its own copy of such a fixture (a
    SeaweedFS server and two FUSE mounts, Unix users), which costs more than
    the parallel run saves; and its tests may build on one another's state.
    (``--dist loadgroup`` would do it with ``xdist_group`` marks, but
    pytest-xdist 3.8 groups nothing under pytest 9.2: it renames
    ``item._nodeid``, which pytest no longer reads.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if _has_module_fixture(config.rootpath / module) else nodeid

    return ModuleFixtureScheduling(config, log)


_MODULE_FIXTURE = re.compile(r"""@pytest\.fixture\(\s*scope\s*=\s*["']module["']""")


@functools.cache
def _has_module_fixture(module: Path) -> bool:
    """True when a test module defines a module-scoped fixture."""
    try:
        return _MODULE_FIXTURE.search(module.read_text()) is not None
    except OSError:
        return False


def pytest_runtest_logreport(report):
    """Gathers what the tests put in their reports' user properties (in the main process of a parallel run)."""
    if report.when != "teardown":
        return
    for name, value in report.user_properties:
        if name in _SUMMARY:
            _SUMMARY[name].append(value)


def pytest_terminal_summary(terminalreporter):
    """Lists the seed of every seeded reliability test, passed or failed, and what tests reported."""
    for name, lines in _SUMMARY.items():
        if lines:
            terminalreporter.section(name + ("s" if name == SEED_PROPERTY else ""))
            for line in lines:
                terminalreporter.write_line(line)
