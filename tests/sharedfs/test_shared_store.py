"""One store shared by two machines over a real distributed file system whose locks do not meet.

A SeaweedFS server, two FUSE mounts of one folder, two "machines" (their own
host names, each seeing the store through its own mount and keeping its own
data dir). flock/fcntl locks do not cross the mounts and neither
``O_CREAT|O_EXCL`` nor ``link()`` is atomic across them (see
``test_seaweedfs_setup.py``): only the leases keep the work from being done
twice. Every command is the real ``datamaestro`` console script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from datamaestro.store.testpoints import ENV_PAUSE
from support.idxwriter import idx_bytes
from support.lockproject import make_project, served  # noqa: F401 (fixture)
from support.mnistdata import MNIST_FILES
from support.seaweedfs import Machine, mounted_points, two_machines, unavailable_reason

pytestmark = pytest.mark.sharedfs

if unavailable_reason():
    pytest.skip(unavailable_reason(), allow_module_level=True)

MNIST = "com.lecun.mnist"
#: seconds without a heartbeat before a lease is taken over (short, so that a takeover is quick to see)
LEASE_TTL = 3.0
TIMEOUT = 180
#: rounds of the gc-while-preparing race (``DATAMAESTRO_GC_RACE_ROUNDS=20`` to hunt it down)
GC_RACE_ROUNDS = int(os.environ.get("DATAMAESTRO_GC_RACE_ROUNDS", "2"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A SeaweedFS server and two machines, each with its own mount of one folder."""
    with two_machines(tmp_path_factory.mktemp("sharedfs")) as setup:
        yield setup
    left = set(map(str, (m.mountpoint for m in setup.mounts))) & set(mounted_points())
    assert not left, f"still mounted after the module: {left}"


class Site:
    """One machine of the lab: its host name, its view of the shared store, its own data dir."""

    def __init__(self, machine: Machine, store: Path, data: Path):
        self.machine = machine
        self.store = store
        self.data = data

    def start(self, *args: str, cwd: Path | None = None, pauses: str = "") -> subprocess.Popen:
        """Starts ``datamaestro ARGS`` on this machine.

        :param pauses: ``DATAMAESTRO_TEST_PAUSE`` (``point=seconds,...``): where the process waits
        """
        argv = ["datamaestro", "--quiet", "--data", str(self.data), "--store", str(self.store), *args]
        env = {**os.environ, "DATAMAESTRO_LEASE_TTL": str(LEASE_TTL), ENV_PAUSE: pauses}
        return self.machine.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)

    def run(self, *args: str, cwd: Path | None = None, pauses: str = "") -> subprocess.CompletedProcess:
        """Runs ``datamaestro ARGS`` on this machine to its end."""
        process = self.start(*args, cwd=cwd, pauses=pauses)
        out, err = process.communicate(timeout=TIMEOUT)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def sites(shared, request, tmp_path) -> tuple[Site, Site]:
    """Machine A and machine B on a store folder of their own in the shared folder (not created yet)."""
    name = "store-" + request.node.name.replace("[", "-").replace("]", "")
    a, b = shared.machines
    return Site(a, a.path / name, tmp_path / "data-a"), Site(b, b.path / name, tmp_path / "data-b")


def served_counts(server) -> dict[str, int]:
    """GET requests per MNIST file."""
    return {name: server.count(path) for name, path in MNIST_FILES.items()}


def readable_ok(site: Site, server) -> list[str]:
    """What is wrong with the MNIST files of a machine's data dir (nothing: [])."""
    problems = []
    folder = site.data / "data" / "image" / "com" / "lecun" / "mnist"
    for name, array in server.mnist.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{site.machine.name}: {name} is missing")
        elif path.read_bytes() != idx_bytes(np.asarray(array)):
            problems.append(f"{site.machine.name}: {name} holds other bytes")
    return problems


def verify_clean(site: Site) -> None:
    done = site.run("store", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


def finish_all(processes: list[subprocess.Popen]) -> list[tuple[int, str]]:
    results = []
    for process in processes:
        out, err = process.communicate(timeout=TIMEOUT)
        results.append((process.returncode, err[-2000:]))
    return results


def test_three_processes_on_each_of_two_machines_prepare_into_a_new_store(sites, served):
    a, b = sites
    # slow enough (about a second a file) that all six overlap, and that a second download would show
    for path in MNIST_FILES.values():
        served.set_fault(path, "throttle", chunk=256, pause=0.05)
    processes = [site.start("prepare", MNIST) for site in (a, b, a, b, a, b)]
    results = finish_all(processes)

    assert [code for code, _ in results] == [0] * 6, results
    assert served_counts(served) == {name: 1 for name in MNIST_FILES}
    assert readable_ok(a, served) + readable_ok(b, served) == []
    assert (a.store / "VERSION").is_file()
    verify_clean(b)


def test_a_holder_killed_on_one_machine_is_taken_over_by_the_other(sites, served):
    a, b = sites
    images = MNIST_FILES["train_images.idx"]
    # the first download of the images (3.4 kB) crawls (about 13 s), the next ones are quick
    served.set_fault(images, "throttle", times=1, chunk=128, pause=0.5)
    holder = a.start("prepare", MNIST)
    deadline = time.monotonic() + 60
    while served.count(images) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.count(images) == 1, "machine A never started downloading"
    waiter = b.start("prepare", MNIST)
    time.sleep(1.0)  # B now waits for A's lease
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.monotonic()
    holder.wait()
    out, err = waiter.communicate(timeout=TIMEOUT)
    took = time.monotonic() - killed

    assert waiter.returncode == 0, err
    assert took < LEASE_TTL + 15, f"B took {took:.1f}s after the kill (lease ttl {LEASE_TTL}s)"
    assert served.count(images) == 2  # A's broken download, then B's
    assert readable_ok(b, served) == []
    verify_clean(b)
    assert not [p for p in (b.store / "tmp").iterdir() if p.name.startswith("machine-a.")]


@pytest.fixture
def busy_cores():
    """Two processes that keep the cores busy (``sh -c 'while :; do :; done'``), as on a loaded machine."""
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("round_", range(GC_RACE_ROUNDS))
def test_gc_on_one_machine_while_the_other_prepares(sites, served, busy_cores, round_):
    a, b = sites
    for path in MNIST_FILES.values():
        served.set_fault(path, "throttle", chunk=128, pause=0.1)
    preparing = b.start("prepare", MNIST)
    collections = 0
    while preparing.poll() is None:
        done = a.run("store", "gc", "--grace", "0")
        assert done.returncode == 0, done.stderr
        collections += 1
    out, err = preparing.communicate()

    assert preparing.returncode == 0, err
    assert collections >= 1
    assert readable_ok(b, served) == []
    # machine A cannot read B's data dir: B's root and what it published are kept
    done = a.run("store", "gc", "--grace", "0")
    assert "roots of other machines" in done.stdout
    assert readable_ok(b, served) == []
    verify_clean(a)


def test_gc_between_the_last_download_and_the_publication_keeps_what_was_downloaded(sites, served):
    # the race of a loaded machine, made to happen every time: B has downloaded
    # everything and waits before publishing (no download lease left, no marker
    # yet); A's gc marks during that wait and sweeps after B has published
    a, b = sites
    preparing = b.start("prepare", MNIST, pauses="before-publish=6")
    collections = 0
    while preparing.poll() is None:
        done = a.run("store", "gc", "--grace", "0", pauses="gc-sweep=3")
        assert done.returncode == 0, done.stderr
        collections += 1
    out, err = preparing.communicate()

    assert preparing.returncode == 0, err
    assert collections >= 2
    assert readable_ok(b, served) == []
    verify_clean(a)


def test_lock_on_one_machine_and_sync_on_the_other_downloads_nothing(sites, served, tmp_path):
    a, b = sites
    project = make_project(tmp_path / "project")
    assert a.run("add", MNIST, cwd=project).returncode == 0
    locked = a.run("lock", cwd=project)
    assert locked.returncode == 0, locked.stderr
    before = served_counts(served)
    assert before == {name: 1 for name in MNIST_FILES}

    synced = b.run("sync", cwd=project)

    assert synced.returncode == 0, synced.stderr
    assert served_counts(served) == before
    assert readable_ok(b, served) == []


def test_a_download_into_a_store_on_a_fuse_mount_keeps_no_partial_file(sites, served):
    # a partial file doubles the writes, which a chunk-based FUSE file system keeps as garbage chunks
    from datamaestro.store import Store

    a, _ = sites
    done = a.run("prepare", MNIST)
    assert done.returncode == 0, done.stderr
    assert Store(a.store).partial_folder() is None
    assert not (a.store / "tmp" / "partial").exists()
    assert readable_ok(a, served) == []
    assert Store(a.data / "local-store").partial_folder() is not None  # a local disk keeps them
