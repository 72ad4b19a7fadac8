"""Fixtures of the reliability suite: the seed of each test, and a server for the five datasets."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# the harness's assertions report their values, as a test's do
pytest.register_assert_rewrite("reliability.harness")

from support.httpserver import ControlledServer  # noqa: E402
from support.mnistdata import PLUGIN_PREFIX  # noqa: E402

from .harness import SEED_ENV, Datamaestro, suite_seed  # noqa: E402
from .samples import Expected, write_samples  # noqa: E402

# the seeds and reported lines go into the reports of the tests (user properties), which
# reach the main process from the workers of a parallel run: tests/conftest.py prints them
from conftest import REPORT_PROPERTY, SEED_PROPERTY  # noqa: E402


def pytest_collection_modifyitems(items):
    """Every test of this folder carries the ``reliability`` marker (``-m reliability`` selects them)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


def replay_command(nodeid: str, seed: int) -> str:
    """The one command that runs a test again with the same seed."""
    return f"{SEED_ENV}={seed} python -m pytest '{nodeid}'"


@pytest.fixture
def rng(request) -> random.Random:
    """The random generator of a test, seeded from ``$DATAMAESTRO_TEST_SEED`` or a new seed.

    The seed is printed (in the captured output of a failure and in the
    summary at the end of the session) with the command that replays it.
    """
    seed = suite_seed()
    request.node.user_properties.append((SEED_PROPERTY, f"{seed:>10}  {request.node.nodeid}   (replay: {replay_command(request.node.nodeid, seed)})"))
    print(f"seed {seed}; replay with: {replay_command(request.node.nodeid, seed)}")
    return random.Random(seed)


@pytest.fixture
def report(request):
    """A function that adds a line to the report printed at the end of the session (passed or failed)."""

    def add(line: str) -> None:
        print(line)
        request.node.user_properties.append((REPORT_PROPERTY, f"{request.node.nodeid}: {line}"))

    return add


@dataclass
class Served:
    """A started test server holding the files of the five datasets.

    :param server: the :class:`ControlledServer` (faults, request counts)
    :param expected: what each dataset's readable folder must hold
    """

    server: ControlledServer
    expected: dict[str, Expected]

    def count(self, dataset_id: str | None = None) -> dict[str, int]:
        """GET requests per served path (of one dataset, or of all)."""
        from .samples import SERVED

        paths = SERVED[dataset_id] if dataset_id else sorted({p for ps in SERVED.values() for p in ps})
        return {path: self.server.count(path) for path in paths}


def write_settings(base_url: str, **values) -> Path:
    """Writes the user settings file: the plugin's URLs mirrored to ``base_url``, short retries.

    A retry waits 0.5 s: one retry (enough to get over a fault that happens
    once) and a one-second read timeout make every fault of the suite cost
    at most a few seconds.
    """
    settings = {"retries": 1, "read_timeout": 1, "connect_timeout": 1, **values}
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in settings.items()]
    lines += ["[mirrors]", f'"{PLUGIN_PREFIX}" = ["{base_url.rstrip("/")}/"]']
    path = Path(os.environ["DATAMAESTRO_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def served(http_server) -> Served:
    """The server with the five datasets' files, and settings that mirror the plugin's URLs to it."""
    expected = write_samples(http_server.root)
    write_settings(http_server.base_url)
    return Served(http_server, expected)


@pytest.fixture
def dm(tmp_path) -> Datamaestro:
    """A :class:`Datamaestro` runner on ``tmp_path/data`` and ``tmp_path/store``."""
    return Datamaestro(tmp_path / "data", tmp_path / "store")


def _mount_tmpfs(target: Path, options: str) -> str | None:
    """Mounts a tmpfs at ``target``; returns why it cannot be done, or None."""
    if not shutil.which("mount") or sys.platform != "linux":
        return "no mount command (Linux only)"
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot mount a small tmpfs here ({result.stderr.strip() or result.returncode}): needs root and CAP_SYS_ADMIN"
    return None


@pytest.fixture
def small_fs(tmp_path):
    """A function mounting a tmpfs with the given options (``size=``, ``nr_inodes=``) at a new folder.

    Skips the test with the reason when mounting is not allowed (CI
    without root or without CAP_SYS_ADMIN). Every mount is undone at the end.
    """
    mounted = []

    def mount(options: str, name: str = "fs") -> Path:
        target = tmp_path / name
        reason = _mount_tmpfs(target, options)
        if reason:
            pytest.skip(reason)
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
