"""The store core on real files: objects, trees, views, action cache, tmp, locks, layout."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3

import datamaestro
from datamaestro.errors import IntegrityError, LockTimeoutError, StoreError
from datamaestro.store import ActionRecord, Output, Store, current_view, manifest_digest, point_readable_path, recipe_key
from datamaestro.store.objects import OBJECT_MODE
from datamaestro.store.tmpsweep import reap_tmp

REPO_ROOT = Path(datamaestro.__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path) -> Store:
    """An empty store."""
    return Store(tmp_path / "store")


def python(code: str, *args: str) -> subprocess.Popen:
    """Starts another Python process running ``code`` (stdout piped, text)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)


def blake3_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def make_folder(root: Path) -> Path:
    """A folder with nested files, an empty folder and an internal relative symlink."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "top.txt").write_text("top")
    (root / "a" / "one.txt").write_text("one")
    (root / "a" / "b" / "two.txt").write_text("two")
    (root / "a" / "link.txt").symlink_to("b/two.txt")
    return root


# -- objects


def test_ingest_stream_names_the_object_by_its_blake3(store):
    chunks = [b"hello ", b"world", b""]
    digest = store.ingest_stream(chunks)
    assert digest == blake3_of(b"hello world")
    path = store.path_of(digest)
    assert path.read_bytes() == b"hello world"
    assert stat.S_IMODE(path.stat().st_mode) == OBJECT_MODE
    assert store.has(digest)
    with store.open(digest) as fp:
        assert fp.read() == b"hello world"
    assert list(store.layout.tmp.iterdir()) == []


def test_ingest_file_copies_or_moves(store, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    digest = store.ingest_file(source)
    assert source.exists()
    assert digest == blake3_of(source.read_bytes())

    moved = tmp_path / "moved.bin"
    moved.write_bytes(b"\x00\x01" * 1000)
    assert store.ingest_file(moved, move=True) == digest
    assert not moved.exists()
    assert stat.S_IMODE(store.path_of(digest).stat().st_mode) == OBJECT_MODE
    assert list(store.layout.tmp.iterdir()) == []


def test_an_empty_file_is_an_object(store, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    digest = store.ingest_file(tmp_path / "empty")
    assert digest == blake3_of(b"")
    assert store.path_of(digest).read_bytes() == b""


def test_an_aborted_writer_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.writer() as out:
            out.write(b"partial")
            raise RuntimeError("transfer failed")
    assert list(store.layout.tmp.iterdir()) == []
    assert list(store.objects.iter_digests()) == []


def _write_parts_out_of_order(writer, data: bytes, part: int) -> None:
    """Writes ``data`` into ``writer`` in parts of ``part`` bytes at their places, last part first, each from a thread of its own."""
    import threading

    for start in reversed(range(0, len(data), part)):
        thread = threading.Thread(target=writer.write_at, args=(start, data[start : start + part]))
        thread.start()
        thread.join()


def test_parts_written_at_their_places_then_hashed_in_order_commit_without_a_flush_of_the_store(store, monkeypatch):
    data = os.urandom(3 * 1024 * 1024 + 123)
    digest = blake3_of(data)
    flushes = []
    monkeypatch.setattr("datamaestro.store.objects.sync_filesystem", lambda path: flushes.append(path))
    with store.objects.writer(expect=digest, limit=len(data)) as writer:
        _write_parts_out_of_order(writer, data, 1024 * 1024)
        for start in range(0, len(data), 1024 * 1024):
            writer.hash_in_order(data[start : start + 1024 * 1024])
            writer.start_writeback(start, 1024 * 1024)
        staged = writer.stage(fsync=True)
    assert staged.synced and staged.size == len(data)
    store.objects.commit_staged([staged])
    assert flushes == []  # the object's own fsync made it durable
    assert store.path_of(digest).read_bytes() == data
    assert list(store.layout.tmp.iterdir()) == []


def test_parts_whose_bytes_are_wrong_are_refused_and_nothing_stays(store):
    data = os.urandom(2 * 1024 * 1024)
    wrong = data[:-10] + b"x" * 10
    with pytest.raises(IntegrityError):
        with store.objects.writer(expect=blake3_of(data), limit=len(data)) as writer:
            _write_parts_out_of_order(writer, wrong, 1024 * 1024)
            writer.hash_in_order(wrong)
            writer.stage(fsync=True)
    assert list(store.layout.tmp.iterdir()) == []
    assert list(store.objects.iter_digests()) == []


def test_a_part_past_the_size_a_document_names_is_refused(store):
    with store.objects.writer(expect=blake3_of(b"abcd"), limit=4) as writer:
        with pytest.raises(IntegrityError, match="more than the 4 bytes"):
            writer.write_at(2, b"cde")


def test_missing_object_is_a_store_error(store):
    with pytest.raises(StoreError, match="not in the store"):
        store.open(blake3_of(b"never stored"))


# -- trees


def test_ingest_tree_stores_and_materializes_a_folder(store, tmp_path):
    folder = make_folder(tmp_path / "src")
    digest = store.ingest_tree(folder)
    tree = store.materialize("tree", digest)
    assert tree == store.trees.path_of(digest)
    assert (tree / "top.txt").read_text() == "top"
    assert (tree / "a" / "b" / "two.txt").read_text() == "two"
    assert (tree / "empty").is_dir()
    assert os.readlink(tree / "a" / "link.txt") == "b/two.txt"
    assert (tree / "a" / "link.txt").read_text() == "two"
    # files are the objects themselves (hard links), folders are read-only
    one = store.path_of(blake3_of(b"one"))
    assert os.stat(tree / "a" / "one.txt").st_ino == os.stat(one).st_ino
    assert not os.stat(tree / "a").st_mode & 0o222
    assert set(store.trees.iter_object_digests(digest)) == {blake3_of(x) for x in (b"top", b"one", b"two")}
    assert store.output_present(Output(kind="tree", digest=digest))

    # the same content elsewhere is the same tree; moving consumes the files
    again = make_folder(tmp_path / "again")
    assert store.ingest_tree(again, move=True) == digest
    assert not (again / "top.txt").exists()


def test_ingest_tree_commits_many_files_in_batches(store, tmp_path, monkeypatch):
    """Files are hashed as met and committed per batch: duplicates, a file larger than a read buffer, batch edges, both modes."""
    import datamaestro.store.objects as objects

    monkeypatch.setattr(objects, "INGEST_BATCH", 7)  # several batches and a partial one
    source = tmp_path / "src"
    contents = {f"d{i % 3}/f{i:02d}": b"same" if i % 5 == 0 else f"file {i}".encode() for i in range(30)}
    contents["big/large.bin"] = os.urandom((1 << 20) + 3)  # streamed into an object of its own
    for name, data in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    copied = store.ingest_tree(source)
    assert all((source / name).read_bytes() == data for name, data in contents.items())  # a copy keeps the files
    moved = shutil.copytree(source, tmp_path / "moved")
    assert store.ingest_tree(moved, move=True) == copied
    assert not any(path.is_file() for path in moved.rglob("*"))  # moving consumes them
    tree = store.trees.path_of(copied)
    for name, data in contents.items():
        assert (tree / name).read_bytes() == data
        digest = blake3_of(data)
        st = os.stat(store.path_of(digest))
        assert st.st_mode & 0o777 == OBJECT_MODE and st.st_ino == os.stat(tree / name).st_ino
        assert os.readlink(store.layout.stamp_path(digest))  # stamped, for the on-use check
    assert {e["path"]: e["size"] for e in store.trees.read(copied)["entries"]} == {n: len(d) for n, d in contents.items()}
    assert not os.listdir(store.layout.tmp)  # nothing left behind


def test_ingest_tree_refuses_an_escaping_symlink(store, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (tmp_path / "secret").write_text("outside")
    (folder / "leak").symlink_to("../secret")
    with pytest.raises(StoreError, match="outside the folder"):
        store.ingest_tree(folder)
    (folder / "leak").unlink()
    (folder / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(StoreError, match="outside the folder"):
        store.ingest_tree(folder)


def test_ingest_tree_refuses_a_fifo(store, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    with pytest.raises(StoreError, match="not a regular file"):
        store.ingest_tree(folder)


# -- views and readable paths


def publish_files(store, **files: bytes) -> tuple[str, Path]:
    """Publishes a view of file objects named after the keyword arguments."""
    entries = {name: ("file", store.ingest_stream([data])) for name, data in files.items()}
    return store.views.publish(entries)


def test_publish_is_idempotent_and_links_resolve(store, tmp_path):
    tree = store.ingest_tree(make_folder(tmp_path / "src"))
    train = store.ingest_stream([b"train"])
    entries = {"train.csv": ("file", train), "sub/folder": ("tree", tree)}
    digest, view = store.views.publish(entries)
    assert digest == manifest_digest(entries)
    assert store.views.publish(entries) == (digest, view)
    assert (view / "train.csv").read_bytes() == b"train"
    assert (view / "sub" / "folder" / "a" / "one.txt").read_text() == "one"
    assert store.views.read_manifest(digest) == entries


def test_point_readable_path_swaps_atomically(store, tmp_path):
    data_dir = tmp_path / "datadir"
    readable = data_dir / "data" / "org" / "example" / "set"
    first, view1 = publish_files(store, **{"x.txt": b"first", "old.txt": b"old"})
    second, view2 = publish_files(store, **{"x.txt": b"second"})

    point_readable_path(readable, view1, data_dir, ["x.txt", "old.txt"])
    assert current_view(readable) == first
    assert (readable / "old.txt").read_bytes() == b"old"
    resolved = (readable / ".view").resolve()
    assert resolved == view1.resolve()
    with open(readable / "x.txt") as held:
        point_readable_path(readable, view2, data_dir, ["x.txt"])
        point_readable_path(readable, view2, data_dir, ["x.txt"])
        assert held.read() == "first"
    assert (resolved / "x.txt").read_text() == "first"
    assert (readable / "x.txt").read_text() == "second"
    assert current_view(readable) == second
    # entries of resources the new view lacks are gone, no temporary link is left
    assert sorted(p.name for p in readable.iterdir()) == [".view", "x.txt"]


def test_point_readable_path_refuses_to_replace_a_real_file(store, tmp_path):
    data_dir = tmp_path / "datadir"
    readable = data_dir / "data" / "set"
    readable.mkdir(parents=True)
    (readable / "x.txt").write_text("a user's own file")
    _, view = publish_files(store, **{"x.txt": b"x"})
    with pytest.raises(StoreError, match="real file or folder"):
        point_readable_path(readable, view, data_dir, ["x.txt"])
    assert (readable / "x.txt").read_text() == "a user's own file"


# -- action cache


def test_action_cache_put_and_get(store):
    key = recipe_key({"url": "https://example.org/a.gz", "transforms": ["gunzip"]})
    assert store.actions.get(key) is None
    output = Output(kind="file", digest=blake3_of(b"a"), source_digest=blake3_of(b"gz"), url="https://example.org/a.gz", size=2)
    store.actions.put(ActionRecord(key=key, recipe={"url": "https://example.org/a.gz"}, output=output, created=12.0))
    record = store.actions.get(key)
    assert record.output == output
    assert record.recipe == {"url": "https://example.org/a.gz"}
    assert record.created == 12.0
    assert [r.key for r in store.actions.iter_records()] == [key]

    store.actions.path_of(key).write_text("{ not json")
    assert store.actions.get(key) is None


# -- tmp reaping


def test_reap_tmp_removes_entries_of_dead_processes_only(store):
    code = (
        "import os, signal, sys\n"
        "from datamaestro.store import Store\n"
        "path = Store(sys.argv[1]).tmp_path('.part')\n"
        "path.write_bytes(b'half an object')\n"
        "print(path, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = python(code, str(store.root))
    dead = Path(proc.stdout.readline().strip())
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert dead.exists()
    alive = store.tmp_path(".part")
    alive.write_bytes(b"in flight")

    assert store.reap_tmp() == [dead]
    assert not dead.exists()
    assert alive.exists()


def test_interrupted_downloads_outlive_their_process_for_a_week(store):
    import os
    import time

    folder = store.partial_folder()
    folder.mkdir(parents=True)
    young, old = folder / "otherhost.abc.data", folder / "otherhost.def.data"
    young.write_bytes(b"kept for the next run")
    old.write_bytes(b"nobody came back for it")
    eight_days_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (eight_days_ago, eight_days_ago))
    assert store.reap_tmp() == [old]
    assert young.exists()


def test_reap_tmp_waits_a_day_for_another_host(store):
    store.layout.mkdir(store.layout.tmp)
    foreign = store.layout.tmp / "otherhost.123.abcdef.part"
    foreign.write_bytes(b"x")
    assert reap_tmp(store.layout) == []
    assert reap_tmp(store.layout, now=time.time() + 2 * 24 * 3600) == [foreign]


def test_reap_tmp_with_a_dotted_host_name(store, monkeypatch):
    monkeypatch.setattr("datamaestro.store.layout.HOST", "node1.example.org")  # names the tmp entry
    monkeypatch.setattr("datamaestro.store.tmpsweep.HOST", "node1.example.org")  # reaps it
    entry = store.tmp_path(".part")
    entry.write_bytes(b"x")
    dead = entry.with_name(entry.name.replace(f".{os.getpid()}.", ".999999999."))
    entry.rename(dead)
    assert reap_tmp(store.layout) == [dead]


# -- locks


HOLDER = (
    "import sys, time\n"
    "from datamaestro.store import Store\n"
    "with Store(sys.argv[1]).lock('download-x', what='downloading x'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


def test_a_held_lock_times_out_naming_its_holder_and_dies_with_it(store):
    holder = python(HOLDER, str(store.root))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeoutError) as error:
            with store.lock("download-x", timeout=0.3, what="downloading x"):
                pass
        assert f"process {holder.pid} " in str(error.value)
        assert "downloading x" in str(error.value)
    finally:
        holder.kill()  # SIGKILL: no chance to release the lock itself
        holder.wait(timeout=30)
    # a dead holder of this host is seen at once: its lease is not waited out
    # (a bound on that, not on the machine's speed, so that a busy machine passes)
    from datamaestro.store.leases import DEFAULT_TTL

    start = time.monotonic()
    with store.lock("download-x", timeout=DEFAULT_TTL * 3):
        pass
    assert time.monotonic() - start < DEFAULT_TTL


# -- layout


def test_a_store_of_another_layout_version_is_refused(store):
    (store.root / "VERSION").write_text("99\n")
    with pytest.raises(StoreError, match="layout version 99"):
        Store(store.root)


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a datamaestro store"):
        Store(tmp_path / "stuff")
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "nothing", create=False)


def test_an_existing_store_reopens(store):
    digest = store.ingest_stream([b"kept"])
    assert Store(store.root, create=False).has(digest)


def _publish_rounds(store_root: str, data_dir: str, rounds: int) -> str:
    """Points ``rounds`` fresh readable folders at one view; returns '' or the first error."""
    from datamaestro.store.views import point_readable_path

    store = Store(Path(store_root))
    digest = store.ingest_stream([b"shared"])
    _, view = store.views.publish({"data.bin": ("file", digest)})
    for index in range(rounds):
        try:
            point_readable_path(Path(data_dir) / "data" / "r" / str(index), view, Path(data_dir), ["data.bin"])
        except Exception as exc:  # the assertion below shows it
            return f"round {index}: {exc}"
    return ""


def test_processes_making_one_readable_folder_at_once_all_succeed(tmp_path):
    """Regression: a link made by another process between our two checks was taken for a real file."""
    from concurrent.futures import ProcessPoolExecutor

    Store(tmp_path / "store")
    with ProcessPoolExecutor(8) as pool:
        errors = list(pool.map(_publish_rounds, [str(tmp_path / "store")] * 8, [str(tmp_path / "data")] * 8, [200] * 8))
    assert errors == [""] * 8


def test_stage_files_links_checks_and_commits_a_batch(tmp_path):
    from datamaestro.errors import IntegrityError

    peer, store = Store(tmp_path / "peer"), Store(tmp_path / "store")
    contents = [b"", b"small", b"x" * (1 << 20), b"y" * ((1 << 20) + 3)]
    digests = [peer.ingest_stream([data]) for data in contents]
    wrong = "blake3:" + blake3(b"not what the file holds").hexdigest()
    pairs = [(d, str(peer.path_of(d))) for d in digests]
    pairs += [(wrong, str(peer.path_of(digests[1]))), (digests[0], str(tmp_path / "absent"))]
    outcomes = store.objects.stage_files(pairs, link=True)
    staged = outcomes[: len(digests)]
    assert [s.digest for s in staged] == digests and [s.size for s in staged] == [len(c) for c in contents]
    assert isinstance(outcomes[-2], IntegrityError) and outcomes[-1] is None
    # linked, not copied: the same inode as the peer's object (same owner, same file system);
    # small objects straight into objects/ (the inode hashed through an open descriptor), large ones through tmp/
    in_place = [s.tmp is None for s in staged]
    assert in_place == [True, True, True, False]
    assert [os.stat(store.path_of(s.digest) if s.tmp is None else s.tmp).st_ino for s in staged] == [os.stat(peer.path_of(d)).st_ino for d in digests]
    assert not store.layout.stamp_path(digests[1]).exists()  # stamped at commit
    store.objects.commit_staged(staged)
    assert [store.path_of(d).read_bytes() for d in digests] == contents
    assert all(os.path.islink(store.layout.stamp_path(d)) for d in digests)
    # an object another writer stored meanwhile is left as it is (None: nothing to commit)
    assert store.objects.stage_files(pairs[1:2], link=True) == [None]
    assert store.objects.absent(digests + [wrong]) == [wrong]
    assert not list((tmp_path / "store" / "tmp").iterdir())
    # many digests: one listing per fan-out folder
    many = ["blake3:" + blake3(bytes([i])).hexdigest() for i in range(70)]
    assert store.objects.absent(digests + many + digests) == many


def test_stage_files_copies_what_it_may_not_link(tmp_path):
    peer, store = Store(tmp_path / "peer"), Store(tmp_path / "store")
    contents = [b"small", b"z" * ((1 << 20) + 1)]
    digests = [peer.ingest_stream([data]) for data in contents]
    # a writable file is not an object: it is copied, never linked
    for digest in digests:
        os.chmod(peer.path_of(digest), 0o644)
    staged = store.objects.stage_files([(d, str(peer.path_of(d))) for d in digests], link=True)
    assert [os.stat(s.tmp).st_ino != os.stat(peer.path_of(s.digest)).st_ino for s in staged] == [True, True]
    assert [stat.S_IMODE(os.stat(s.tmp).st_mode) for s in staged] == [OBJECT_MODE, OBJECT_MODE]
    store.objects.commit_staged(staged)
    assert [store.path_of(d).read_bytes() for d in digests] == contents


def test_stage_files_of_many_objects_links_each_inode_hashed_and_refuses_the_odd_ones(tmp_path):
    """A window of a sync (a thousand objects) with odd files among them: outcomes in order, each linked inode the one hashed, each stamp named."""
    step = 256  # the odd files at four places

    peer, store = Store(tmp_path / "peer"), Store(tmp_path / "store")
    contents = [f"file {i}".encode() for i in range(4 * step)]
    digests = [peer.ingest_stream([data]) for data in contents]
    pairs = [(d, str(peer.path_of(d))) for d in digests]
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "fifo")  # must not block, must not be linked
    (odd / "writable").write_bytes(b"writable")  # not an object: copied
    (odd / "wrong").write_bytes(b"not what its name says")
    os.chmod(odd / "wrong", 0o444)
    writable = "blake3:" + blake3(b"writable").hexdigest()
    pairs[step + 3] = (digests[step + 3], str(odd / "fifo"))
    pairs[2 * step + 5] = (writable, str(odd / "writable"))
    pairs[3 * step + 7] = (digests[3 * step + 7], str(odd / "wrong"))
    pairs[3 * step + 9] = (digests[3 * step + 9], str(odd / "absent"))
    odd_ones = {step + 3, 2 * step + 5, 3 * step + 7, 3 * step + 9}
    outcomes = store.objects.stage_files(pairs, link=True, stamps=str(tmp_path / "peer" / "stamps"))
    assert len(outcomes) == len(pairs)
    assert isinstance(outcomes[step + 3], IntegrityError) and "not a regular file" in outcomes[step + 3].message
    assert isinstance(outcomes[3 * step + 7], IntegrityError) and outcomes[3 * step + 9] is None
    copied = outcomes[2 * step + 5]
    assert copied.digest == writable and os.stat(copied.tmp).st_ino != os.stat(odd / "writable").st_ino
    for index, (digest, source) in enumerate(pairs):
        if index in odd_ones:
            continue
        staged = outcomes[index]
        assert staged.digest == digest
        if index < 2 * step + 5:  # linked in place: the inode hashed
            assert staged.tmp is None and os.stat(store.path_of(digest)).st_ino == os.stat(source).st_ino
        else:  # once a link is refused, the rest of the window is copied (as today)
            assert staged.tmp is not None and os.stat(staged.tmp).st_ino != os.stat(source).st_ino
        assert staged.stamp_source == str(peer.layout.stamp_path(digest))
    assert not store.objects.has(digests[3 * step + 7])  # wrong bytes: nothing kept
    store.objects.commit_staged([o for o in outcomes if not isinstance(o, IntegrityError) and o is not None])
    assert [store.path_of(d).read_bytes() for i, d in enumerate(digests) if i not in odd_ones] == [c for i, c in enumerate(contents) if i not in odd_ones]
    assert store.path_of(writable).read_bytes() == b"writable"


def test_reap_tmp_removes_an_empty_partial_download_nobody_holds(store):
    """A process killed while a source never answered leaves an empty partial download: the next run removes it, not a held one."""
    import fcntl

    from datamaestro.store.layout import HOST
    from datamaestro.store.tmpsweep import reap_tmp

    partial = store.layout.tmp / "partial"
    partial.mkdir(parents=True)
    (partial / f"{HOST}.dead.data").write_bytes(b"")
    (partial / f"{HOST}.dead.json").write_text("{}")
    (partial / f"{HOST}.kept.data").write_bytes(b"some bytes")  # resumable: kept
    held = partial / f"{HOST}.held.data"
    held.write_bytes(b"")
    with open(held, "rb") as fp:
        fcntl.flock(fp, fcntl.LOCK_EX)  # a live download of this host
        reap_tmp(store.layout)
    assert sorted(p.name for p in partial.iterdir()) == [f"{HOST}.held.data", f"{HOST}.kept.data"]
    (partial / f"{HOST}.kept.data").unlink()
    reap_tmp(store.layout)
    assert not partial.exists()  # the held one's process is gone (its lock free, nothing in it): the folder goes too


def test_a_write_the_disk_refuses_is_reported_once_the_writer_is_dropped(tmp_path):
    """EFBIG (the file-size limit) in the middle of an object: the error says it, and dropping the writer does not raise again.

    The object's file is buffered: the bytes the disk refused are still in
    the buffer when the writer is dropped, and closing the file flushes them.
    """
    script = (
        "import resource, signal, sys\n"
        "from datamaestro.store import Store\n"
        "from datamaestro.errors import StoreError\n"
        "store = Store(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))\n"
        "try:\n"
        "    with store.writer() as writer:\n"
        "        writer.write(b'a' * 4000)\n"
        "        writer.write(b'b' * 3000)\n"
        "        writer.write(b'c' * 9000)\n"
        "        writer.commit()\n"
        "except StoreError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "file too large while writing an object" in done.stdout
    assert [entry for entry in (tmp_path / "store" / "tmp").iterdir() if entry.name != "partial"] == []
