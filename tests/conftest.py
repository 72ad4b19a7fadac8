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
    """The parallel run's scheduler: a module with a module-scoped fixture goes whole to one worker, other tests one by one, the longest first.

    Each worker would otherwise start its own copy of such a fixture (a
    SeaweedFS server and two FUSE mounts, Unix users), which costs more than
    the parallel run saves; and its tests may build on one another's state.
    (``--dist loadgroup`` would do it with ``xdist_group`` marks, but
    pytest-xdist 3.8 groups nothing under pytest 9.2: it renames
    ``item._nodeid``, which pytest no longer reads.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if _has_module_fixture(config.rootpath / module) else nodeid

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the queue is whole at the first assignment: the longest work goes first
                self._ordered = True
                queue = sorted(self.workqueue.items(), key=lambda item: _start_rank(item[0]))
                self.workqueue.clear()
                self.workqueue.update(queue)
            super()._assign_work_unit(node)

    return ModuleFixtureScheduling(config, log)


#: The longest work of a parallel run, longest first (prefixes of node ids): it starts first, so
#: that no worker begins a long group or test when the others are about to finish (the run ends
#: when its most loaded worker does). The rest follows in xdist's order (groups by their number of
#: tests, then the collection's order). From the durations of whole runs (``--durations=40``): the
#: modules that share a SeaweedFS server (one worker each), then the longest single tests.
LONGEST_FIRST = (
    "tests/test_remote_packs.py",
    "tests/sharedfs/test_shared_store.py",
    "tests/test_remote_s3.py",
    "tests/test_signed_records_s3.py",
    "tests/test_hostile_inputs.py",
    "tests/sharedfs/test_seaweedfs_setup.py",
    "tests/reliability/test_group_store.py",
    "tests/reliability/test_faults.py",
    "tests/test_benchmarks.py::test_quick_offline_run_gives_rows_for_every_benchmark",
    "tests/test_tree_slices.py",
    "tests/test_concurrency.py::test_kill_9",
    "tests/reliability/test_lock_kill.py",
    "tests/test_tree_format.py",
    "tests/test_remote_cache.py",
    "tests/test_lock_entries.py",
    "tests/reliability/test_load.py",
    "tests/test_plugins.py",
)


def _start_rank(scope: str) -> int:
    """Where a group or test of the parallel run starts: the index of the first prefix of :data:`LONGEST_FIRST` it has, else after them all."""
    return next((rank for rank, prefix in enumerate(LONGEST_FIRST) if scope.startswith(prefix)), len(LONGEST_FIRST))


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
