"""What a lab's machines do to a store: full disks, read-only rights, a deleted store, other hosts.

Every case runs the real console script and checks, from outside, that the
failure is one clear message (never a traceback), that the store keeps its
promises, and that the next run in a sane environment succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from support.users import read_only_wrapper

from .conftest import write_settings
from .harness import (
    Datamaestro,
    assert_clean_failure,
    assert_recovers,
    fsize_limit,
    readable_problems,
    store_problems,
    tmp_entries,
)

MNIST = "com.lecun.mnist"
#: the store lock of a dataset's step may be held by a process on another host: wait that long at most
LOCK_TIMEOUT = 2


# -- disk full


def test_file_size_limit_during_ingest(served, dm):
    """RLIMIT_FSIZE below the size of MNIST's training images: EFBIG while a file of it is written.

    Which write meets the limit first depends on the order the downloads
    finish (the download itself, its decompression, the object): each is
    one clear message naming the limit.
    """
    limited = Datamaestro(dm.data_dir, dm.store_dir, preexec=fsize_limit(300_000))
    outcome = limited.run("prepare", MNIST)
    assert_clean_failure(outcome, "file too large while", "ulimit -f")
    assert store_problems(dm.store_dir) == []
    assert tmp_entries(dm.store_dir) == []  # the aborted writer removed its file
    assert not (dm.data_dir / served.expected[MNIST].folder / ".view").exists()
    # what fits under the limit is prepared all the same
    assert limited.run("prepare", "org.example").returncode == 0
    assert_recovers(dm, served.expected)


def test_no_space_left_during_ingest(served, tmp_path, small_fs):
    """A store on a 256 KiB file system: the disk fills; more room, and the next run succeeds.

    Which of MNIST's files meets the full disk depends on the order the
    downloads finish: one being written gets ENOSPC, one being expanded is
    stopped first by the expansion's free-space check. Either is one clear
    message pointing to ``store gc``.
    """
    store_dir = small_fs("size=256k") / "store"
    dm = Datamaestro(tmp_path / "data", store_dir)
    outcome = dm.run("prepare", MNIST)
    assert_clean_failure(outcome, "datamaestro store gc")
    full = ("no space left on device", "the store's disk is almost full while expanding")
    assert any(words in outcome.stderr for words in full), outcome.describe()
    assert store_problems(store_dir) == []
    assert tmp_entries(store_dir) == []
    subprocess.run(["mount", "-o", "remount,size=16m", str(store_dir.parent)], check=True)
    assert_recovers(dm, served.expected)


def test_no_inode_left_anywhere_in_a_prepare(served, tmp_path, small_fs, rng):
    """A store whose file system runs out of inodes at a point drawn from the seed.

    Folders, tmp files, locks, action records, views: wherever creating a
    file fails, the message is one line and the store stays sound.
    """
    # a complete prepare of MNIST creates about 40 inodes in the store
    points = sorted(rng.sample(range(2, 45), 4))
    for point in points:
        store_dir = small_fs(f"size=16m,nr_inodes={point}", name=f"fs{point}") / "store"
        dm = Datamaestro(tmp_path / f"data{point}", store_dir)
        outcome = dm.run("prepare", MNIST)
        if outcome.returncode != 0:
            assert_clean_failure(outcome, "no space left on device")
        assert store_problems(store_dir) == [], f"{point} inodes"
        assert readable_problems(dm.data_dir, served.expected) == [], f"{point} inodes"
        subprocess.run(["mount", "-o", "remount,nr_inodes=10000", str(store_dir.parent)], check=True)
        assert_recovers(dm, served.expected)


# -- a store the user may only read


def test_read_only_store(served, tmp_path, dm):
    """Present data works from a read-only store (with one's own data dir); missing data is one clear error."""
    assert dm.run("prepare", MNIST).returncode == 0
    reader = Datamaestro(tmp_path / "reader", dm.store_dir, wrapper=read_only_wrapper(dm.store_dir))
    present = reader.run("prepare", MNIST)
    assert present.returncode == 0, present.describe()
    assert readable_problems(reader.data_dir, served.expected, complete=[MNIST]) == []
    assert json.loads(present.stdout)["train"]["images"]["path"].startswith(str(reader.data_dir))
    missing = reader.run("prepare", "org.example.digits")
    assert_clean_failure(missing, "no permission to write the store", "DATAMAESTRO_STORE")
    assert store_problems(dm.store_dir) == []


@pytest.fixture
def read_only_mount(tmp_path):
    """A function making a read-only bind mount of a folder (``mount --bind D M && mount -o remount,bind,ro M``).

    Skips the test where mounting is not allowed; every mount is undone at the end.
    """
    if os.geteuid() != 0 or not shutil.which("mount") or sys.platform != "linux":
        pytest.skip("a bind mount needs root (CI and the dev container run the tests as root)")
    mounted: list[Path] = []

    def mount(source: Path) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        point.mkdir()
        bound = subprocess.run(["mount", "--bind", str(source), str(point)], capture_output=True, text=True)
        if bound.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bound.stderr.strip()}")
        mounted.append(point)
        remounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here: {remounted.stderr.strip()}")
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=False, capture_output=True)


#: the documented warning of a data dir that cannot be registered as a gc root (pipeline.py)
UNREGISTERED = "will not know that"


def test_read_only_mount_serves_what_it_holds(served, tmp_path, read_only_mount):
    """A data dir and its store bind-mounted read-only (EROFS): a warm prepare serves the data with one warning.

    Also with ``--offline``, and with ``--store M/store --data elsewhere``;
    what the mount lacks is one clear error.
    """
    writer = Datamaestro(tmp_path / "D", tmp_path / "D" / "store")
    assert writer.run("prepare", MNIST).returncode == 0
    mount = read_only_mount(tmp_path / "D")
    requests = served.count()
    reader = Datamaestro(mount, mount / "store")
    for args in (("prepare", MNIST), ("--offline", "prepare", MNIST)):
        outcome = reader.run(*args)
        assert outcome.returncode == 0, outcome.describe()
        assert outcome.stderr.count(UNREGISTERED) == 1, outcome.describe()
        assert "Traceback" not in outcome.stderr
        assert json.loads(outcome.stdout)["train"]["images"]["path"].startswith(str(mount))
        assert readable_problems(mount, served.expected, complete=[MNIST]) == []
    elsewhere = Datamaestro(tmp_path / "elsewhere", mount / "store")
    for args in (("prepare", MNIST), ("--offline", "prepare", MNIST)):
        outcome = elsewhere.run(*args)
        assert outcome.returncode == 0, outcome.describe()
        assert outcome.stderr.count(UNREGISTERED) == 1, outcome.describe()
        assert "read-only file system" in outcome.stderr, outcome.describe()
        assert readable_problems(elsewhere.data_dir, served.expected, complete=[MNIST]) == []
    assert served.count() == requests
    missing = elsewhere.run("prepare", "org.example.digits")
    assert_clean_failure(missing, "read-only file system", "DATAMAESTRO_STORE")
    assert store_problems(tmp_path / "D" / "store") == []


def test_read_only_data_dir_is_named_before_any_download(served, tmp_path, read_only_mount):
    """A read-only data dir with a writable store: one error naming the data dir, before any request."""
    (tmp_path / "empty").mkdir()
    mount = read_only_mount(tmp_path / "empty")
    requests = served.count()
    outcome = Datamaestro(mount, tmp_path / "store").run("prepare", MNIST)
    assert_clean_failure(outcome, f"the data dir {mount}", "read-only file system", "--data", "DATAMAESTRO_DIR")
    assert "store's owner" not in outcome.stderr
    assert served.count() == requests


def test_rm_on_a_read_only_mount_is_one_message_and_changes_nothing(served, tmp_path, read_only_mount):
    """``rm`` of a dataset in a read-only data dir (EROFS) is one clear error, not a traceback; with a read-only store only, the folder goes."""
    writer = Datamaestro(tmp_path / "D", tmp_path / "D" / "store")
    assert writer.run("prepare", MNIST).returncode == 0
    mount = read_only_mount(tmp_path / "D")
    removed = Datamaestro(mount, mount / "store").run("rm", MNIST)
    assert_clean_failure(removed, f"the data dir {mount}", "read-only file system", "--data")
    assert readable_problems(mount, served.expected, complete=[MNIST]) == []

    elsewhere = Datamaestro(tmp_path / "elsewhere", mount / "store")
    assert elsewhere.run("prepare", MNIST).returncode == 0
    # the store cannot be written: the folder goes all the same, and one warning says that nothing was freed
    outcome = elsewhere.run("rm", MNIST)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.describe()
    assert "read-only file system" in outcome.stderr and "nothing was freed" in outcome.stderr, outcome.describe()
    assert not (tmp_path / "elsewhere" / "data" / "image" / "com" / "lecun" / "mnist").exists()
    assert store_problems(tmp_path / "D" / "store") == []


def test_a_project_new_to_a_read_only_store_is_served_what_it_holds(served, tmp_path, read_only_mount):
    """A project whose lock was never registered in a read-only store (a clone of it): sync and prepare serve the data, one warning each, no error."""
    from support.lockproject import lock_project, make_project

    project = lock_project(make_project(tmp_path / "project"), tmp_path / "D", MNIST)
    assert Datamaestro(tmp_path / "D", tmp_path / "D" / "store", cwd=project).run("sync", "--frozen").returncode == 0
    clone = tmp_path / "clone"
    shutil.copytree(project, clone)
    mount = read_only_mount(tmp_path / "D")
    requests = served.count()
    reader = Datamaestro(tmp_path / "E", mount / "store", cwd=clone)
    for args in (("sync", "--frozen"), ("prepare", MNIST)):
        outcome = reader.run(*args)
        assert outcome.returncode == 0, outcome.describe()
        assert f"will not know that the lock file {clone / 'datamaestro.lock'} pins its data" in outcome.stderr, outcome.describe()
        assert "Traceback" not in outcome.stderr
    assert readable_problems(tmp_path / "E", served.expected, complete=[MNIST]) == []
    assert served.count() == requests


# -- the store deleted while a process uses it


def test_store_deleted_under_a_running_prepare(served, tmp_path, rng):
    """``rm -rf`` of the store at random points of a prepare: a clean end, then the next run succeeds."""
    for path in served.count():
        served.server.set_fault(path, "throttle", chunk=32 * 1024, pause=0.01)
    for point in range(4):
        dm = Datamaestro(tmp_path / f"data{point}", tmp_path / f"store{point}")
        process = dm.start("prepare", MNIST)
        time.sleep(rng.uniform(0.3, 1.2))
        shutil.rmtree(dm.store_dir, ignore_errors=True)
        out, err = process.communicate(timeout=90)
        where = f"store deleted at point {point}"
        if process.returncode != 0:
            assert "Traceback" not in err and "error: " in err, f"{where}: exit {process.returncode}\n{err}"
        assert_recovers(dm, served.expected)


# -- other hosts on a shared store


def holder_note(host: str, pid: int, what: str) -> str:
    """The holder note a process on ``host`` leaves next to a store lock (store/locking.py's format)."""
    return json.dumps({"host": host, "pid": pid, "time": time.time() - 600, "what": what})


def test_lock_files_and_tmp_entries_of_a_dead_process_on_another_host(served, tmp_path, dm):
    """A dead process of another host left lock files, holder notes and tmp entries: nothing waits for it.

    Its tmp entries are reaped only once older than a day, since its
    liveness cannot be checked from here.
    """
    reference = Datamaestro(tmp_path / "ref-data", tmp_path / "ref-store")
    assert reference.run("prepare", MNIST).returncode == 0
    lock_names = sorted(p.name for p in (reference.store_dir / "locks").glob("*.lock"))
    assert lock_names

    assert dm.run("store", "init").returncode == 0
    locks = dm.store_dir / "locks"
    locks.mkdir(exist_ok=True)
    for name in lock_names:
        (locks / name).touch()
        (locks / name.replace(".lock", ".holder")).write_text(holder_note("node-b.cluster", 4242, "preparing"))
    tmp = dm.store_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    young = tmp / "node-b.cluster.4242.0123456789ab.part"
    old = tmp / "node-b.cluster.4243.ba9876543210.part"
    young.write_bytes(b"half")
    old.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))

    write_settings(served.server.base_url, lock_timeout=LOCK_TIMEOUT)
    outcome = dm.run("prepare", MNIST)
    assert outcome.returncode == 0, outcome.describe()
    assert readable_problems(dm.data_dir, served.expected, complete=[MNIST]) == []
    assert tmp_entries(dm.store_dir) == [young.name]
    assert store_problems(dm.store_dir) == []


def test_a_lock_held_on_another_host_names_it(served, tmp_path, dm):
    """A live holder (its note names another host) makes a waiting prepare time out naming that host."""
    reference = Datamaestro(tmp_path / "ref-data", tmp_path / "ref-store")
    assert reference.run("prepare", "org.example").returncode == 0
    # the lock of the download (a publication takes the store's gc lock too)
    (name,) = [p.name for p in (reference.store_dir / "locks").glob("*.lock") if p.name != "gc.lock"]
    assert dm.run("store", "init").returncode == 0
    (dm.store_dir / "locks").mkdir(exist_ok=True)
    lock = dm.store_dir / "locks" / name
    (dm.store_dir / "locks" / name.replace(".lock", ".holder")).write_text(
        holder_note("node-b.cluster", 4242, "preparing org.example/readme.txt")
    )
    # the lock is held by a live process here, as the NFS lock manager would hold it for node-b
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import filelock, sys\nwith filelock.FileLock({str(lock)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        write_settings(served.server.base_url, lock_timeout=LOCK_TIMEOUT)
        outcome = dm.run("prepare", "org.example")
        assert_clean_failure(outcome, f"timed out after {LOCK_TIMEOUT}s waiting for process 4242 on node-b.cluster", "preparing org.example/readme.txt")
    finally:
        holder.communicate("")
    assert_recovers(dm, served.expected, "org.example")
