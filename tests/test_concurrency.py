"""Real processes on one store: one download for everybody, and kill -9 at random points."""

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from datamaestro.store import Store
from datamaestro.store.digests import digest_of_file
from datamaestro.store.testpoints import ENV_PAUSE, ENV_PAUSE_LOG
from support.mnistdata import MNIST_FILES




def start(data_dir: Path, store_dir: Path, *, pauses: str = "") -> subprocess.Popen:
    """Starts ``datamaestro prepare com.lecun.mnist``; ``pauses`` is ``DATAMAESTRO_TEST_PAUSE`` (where it waits)."""
    return subprocess.Popen(
        ["datamaestro", "--quiet", "--data", str(data_dir), "--store", str(store_dir), "prepare", "com.lecun.mnist"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, ENV_PAUSE: pauses},
    )


def assert_store_sound(store_dir: Path) -> None:
    """Every object's name is the digest of its content; tmp is empty."""
    store = Store(store_dir, create=False)
    for digest in store.objects.iter_digests():
        assert digest_of_file(store.path_of(digest)) == digest
    assert list((store_dir / "tmp").iterdir()) == []


def assert_mnist_readable(data_dir: Path, arrays) -> None:
    from datamaestro.data.tensor import IDX

    folder = data_dir / "data" / "image" / "com" / "lecun" / "mnist"
    for name in MNIST_FILES:
        np.testing.assert_array_equal(IDX.C(path=folder / name).data(), arrays[name])


def test_eight_processes_download_each_file_once(mnist_server, tmp_path):
    for relative in MNIST_FILES.values():
        mnist_server.set_fault(relative, "slow", delay=0.3)  # make the processes overlap
    store_dir = tmp_path / "store"
    processes = [start(tmp_path / "data", store_dir) for _ in range(8)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out)
    assert len(set(outputs)) == 1  # all eight print the same paths
    for relative in MNIST_FILES.values():
        assert mnist_server.count(relative) == 1
    assert_store_sound(store_dir)
    assert_mnist_readable(tmp_path / "data", mnist_server.mnist)


def test_kill_9_at_random_points_of_a_cold_prepare(mnist_server, tmp_path):
    seed = int(os.environ.get("DATAMAESTRO_TEST_SEED", random.randrange(1 << 30)))
    print(f"kill -9 test seed: {seed} (replay with DATAMAESTRO_TEST_SEED={seed})")
    rng = random.Random(seed)
    for relative in MNIST_FILES.values():
        mnist_server.set_fault(relative, "slow", delay=0.05)

    started = time.monotonic()
    reference = start(tmp_path / "reference", tmp_path / "reference-store")
    assert reference.wait(timeout=120) == 0
    duration = time.monotonic() - started

    # a new seed every run: the points of many runs add up (DATAMAESTRO_FAULT_ROUNDS=100 for a long hunt)
    for point in range(int(os.environ.get("DATAMAESTRO_FAULT_ROUNDS", "6"))):
        data_dir, store_dir = tmp_path / f"data{point}", tmp_path / f"store{point}"
        process = start(data_dir, store_dir)
        time.sleep(rng.uniform(0.1, duration))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # the next prepare succeeds on what the killed one left, and leaves a sound store
        recovery = start(data_dir, store_dir)
        out, err = recovery.communicate(timeout=120)
        assert recovery.returncode == 0, f"seed {seed}, point {point}: {err}"
        assert_store_sound(store_dir)
        assert_mnist_readable(data_dir, mnist_server.mnist)


# a loaded machine is slow to schedule a new thread: the signal may come while
# the first download has begun and the next thread is still being started
@pytest.mark.parametrize("pauses", ["", "download-thread-started=1"], ids=["at-once", "while-starting-threads"])
def test_sigterm_cleans_up_at_once(mnist_server, tmp_path, pauses):
    """A scheduler's SIGTERM unwinds the prepare: no half-written file stays in tmp/."""
    for relative in MNIST_FILES.values():
        mnist_server.set_fault(relative, "slow", delay=5)
    process = start(tmp_path / "data", tmp_path / "store", pauses=pauses)
    deadline = time.monotonic() + 60
    tmp = tmp_path / "store" / "tmp"
    while not (tmp.is_dir() and any(tmp.iterdir())):  # a download has begun
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143 and "terminated" in err
    assert list(tmp.iterdir()) == []


def test_sigterm_while_a_thread_creates_in_tmp(mnist_server, tmp_path):
    """SIGTERM reaches the process while a download thread, past its last check, is about to create its tmp file.

    On a loaded machine such a thread may stay unscheduled for seconds (seen
    in busy runs of the suite: a ``.part`` and a partial download created
    after the process had swept its tmp entries). Here it waits 6 s at that
    point and stays there once its file is made, as a thread the exit leaves
    unscheduled would; the process waits 6 s after its last sweep, so that
    whatever the thread creates late is still there to be seen.
    """
    for relative in MNIST_FILES.values():
        mnist_server.set_fault(relative, "slow", delay=5)
    log = tmp_path / "pauses.log"
    process = subprocess.Popen(
        ["datamaestro", "--quiet", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "store"), "prepare", "com.lecun.mnist"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, ENV_PAUSE: "tmp-create=6,tmp-created=60,tmp-swept=6", ENV_PAUSE_LOG: str(log)},
    )
    deadline = time.monotonic() + 60
    while not (log.exists() and "tmp-create" in log.read_text()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "terminated" in err
    tmp = tmp_path / "store" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_gc_that_marked_before_a_publication_deletes_none_of_it(mnist_server, tmp_path):
    """A gc marks while a dataset's data is unreachable; a prepare reuses that data: it stays readable.

    The gc waits between its mark and its sweep (a pause of the tests); the
    prepare finds every file in the store and publishes them meanwhile. The
    publication waits for the gc's lock, then sees the files gone and
    downloads them again.
    """
    data_dir, store_dir = tmp_path / "data", tmp_path / "store"
    first = start(data_dir, store_dir)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    shutil.rmtree(data_dir / "data")  # the dataset's data is in the store, unreachable
    gc = subprocess.Popen(
        ["datamaestro", "--store", str(store_dir), "--data", str(tmp_path / "other"), "store", "gc", "--grace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, ENV_PAUSE: "gc-sweep=4"},
    )
    deadline = time.monotonic() + 60
    while not (store_dir / "leases" / "gc").is_dir():  # the gc holds its lock: it marks now
        assert time.monotonic() < deadline and gc.poll() is None
        time.sleep(0.05)
    again = start(data_dir, store_dir)
    _, err = again.communicate(timeout=120)
    gc_out, gc_err = gc.communicate(timeout=120)

    assert gc.returncode == 0, gc_err
    assert again.returncode == 0, err
    assert_mnist_readable(data_dir, mnist_server.mnist)
    assert_store_sound(store_dir)
