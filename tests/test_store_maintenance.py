"""Store maintenance on real stores: info, verify, gc, disk usage, group setup."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3

import datamaestro
from datamaestro.errors import LockTimeoutError, StoreError
from datamaestro.store import ActionRecord, Output, Store, point_readable_path, recipe_key
from datamaestro.store.du import disk_usage
from datamaestro.store.gc import gc
from datamaestro.store.info import store_info
from datamaestro.store.init import init_store
from datamaestro.store.layout import HOST
from datamaestro.store.verify import verify

REPO_ROOT = Path(datamaestro.__file__).resolve().parents[1]


def blake3_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def later() -> float:
    """A time safely after every entry created so far (file times are coarse)."""
    return time.time() + 1


@pytest.fixture
def store(tmp_path) -> Store:
    """An empty store outside any data dir (as on a shared disk)."""
    return Store(tmp_path / "store")


def add_dataset(store: Store, data_dir: Path, path: str, files: dict[str, bytes], tree: dict[str, bytes] | None = None):
    """Publishes a dataset of file objects (and one folder) and points ``<data_dir>/data/<path>`` at it.

    Returns the manifest digest.
    """
    entries = {name: ("file", store.ingest_stream([data])) for name, data in files.items()}
    if tree is not None:
        folder = data_dir.parent / f"src-{path.replace('/', '-')}"
        for name, data in tree.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        entries["folder"] = ("tree", store.ingest_tree(folder))
    manifest, view = store.views.publish(entries)
    point_readable_path(data_dir / "data" / path, view, data_dir, list(entries))
    store.register_root("data", data_dir)
    return manifest


@pytest.fixture
def two_datasets(store, tmp_path):
    """Two data dirs with one dataset each; both use ``shared.bin``; A also has a folder."""
    a_dir, b_dir = tmp_path / "project-a", tmp_path / "project-b"
    a = add_dataset(store, a_dir, "org/a", {"shared.bin": b"S" * 1000, "a.bin": b"A" * 100}, tree={"t/x.txt": b"X" * 10, "y.txt": b"Y" * 20})
    b = add_dataset(store, b_dir, "org/b", {"shared.bin": b"S" * 1000, "b.bin": b"B" * 200})
    return {"a": (a_dir, a), "b": (b_dir, b)}


def all_files(store: Store) -> set[Path]:
    return {p for p in store.root.rglob("*") if not p.is_dir() and "locks" not in p.parts}


# -- info


def test_store_info_counts_what_the_store_holds(store, two_datasets):
    info = store_info(store)
    # 5 data files (shared once) + 1 tree + 2 manifests
    assert (info.objects, info.trees, info.views) == (8, 1, 2)
    assert info.object_bytes == sum(p.stat().st_size for p in (store.root / "objects").rglob("*") if p.is_file())
    assert info.roots == {"data": 2, "lock": 0}
    assert (info.location, info.layout_version, info.shared, info.group) == (store.root, "objects 1, actions 1, views 1, roots 1, trees 2", False, None)
    assert (info.actions, info.tmp_entries, info.quarantined) == (0, 0, 0)


# -- verify


def test_verify_finds_nothing_wrong_in_a_good_store(store, two_datasets):
    calls = []
    report = verify(store, jobs=2, progress=lambda done, total: calls.append((done, total)))
    assert report.ok
    assert report.checked == 8
    assert report.bytes == store_info(store).object_bytes
    assert (report.corrupt, report.trees_removed) == ([], [])
    assert calls[-1] == (8, 8) and len(calls) == 8


def test_verify_lists_the_store_as_it_goes_and_stamps_again_every_object_without_a_stamp(store):
    """More objects than verify keeps names or stamps to record at once: each is rehashed once, each missing stamp recorded, progress counts to the end."""
    from datamaestro.store.stamps import read_stamp, stamp_matches

    count = 4200  # more than a batch of stamps to record (4,096), in every fan-out folder
    written = set()
    for number in range(count):
        data = b"object %d" % number
        path = store.path_of(blake3_of(data))  # written straight into the store, as a restored backup: no stamp
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.add(blake3_of(data))
    calls = []
    report = verify(store, jobs=1, progress=lambda done, total: calls.append((done, total)))
    assert report.ok and report.checked == count
    assert calls == [(done, count) for done in range(1, count + 1)]
    for digest in written:
        recorded = read_stamp(store.layout, digest)
        assert recorded is not None and stamp_matches(recorded, os.lstat(store.path_of(digest)), store.layout.precise_stat)[0], digest
    # several threads, stamps all right: the same objects, once each
    again = verify(store, jobs=3)
    assert again.ok and again.checked == count and again.bytes == sum(len(b"object %d" % n) for n in range(count))


def test_verify_quarantines_a_corrupt_object_and_drops_its_tree(store, two_datasets, tmp_path):
    a_dir, manifest = two_datasets["a"]
    tree = store.views.read_manifest(manifest)["folder"][1]
    victim = blake3_of(b"X" * 10)
    path = store.path_of(victim)
    os.chmod(path, 0o644)
    path.write_bytes(b"bit rot!!!")

    report = verify(store, jobs=1)
    assert not report.ok
    assert [(c.digest, c.actual) for c in report.corrupt] == [(victim, blake3_of(b"bit rot!!!"))]
    quarantined = report.corrupt[0].quarantined
    assert quarantined.parent == store.root / "quarantine"
    assert quarantined.read_bytes() == b"bit rot!!!"
    note = json.loads(quarantined.with_name(quarantined.name + ".json").read_text())
    assert (note["digest"], note["actual"]) == (victim, blake3_of(b"bit rot!!!"))
    assert not store.has(victim)
    assert report.trees_removed == [tree]
    assert not store.trees.has(tree)

    # nothing else is wrong; storing the folder again repairs the dataset
    assert verify(store).ok
    folder = tmp_path / "again"
    (folder / "t").mkdir(parents=True)
    (folder / "t" / "x.txt").write_bytes(b"X" * 10)
    (folder / "y.txt").write_bytes(b"Y" * 20)
    assert store.ingest_tree(folder) == tree
    assert (a_dir / "data" / "org" / "a" / "folder" / "t" / "x.txt").read_bytes() == b"X" * 10
    assert quarantined.exists()


def test_verify_checks_objects_of_every_size_and_quarantines_a_large_corrupt_one(store):
    from datamaestro.store.digests import SMALL_FILE

    # around the limit between the pooled reads and the mapped, multi-threaded hashing
    sizes = [0, 1, SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1, 3 * SMALL_FILE + 7]
    contents = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    digests = [store.ingest_stream([data]) for data in contents]
    report = verify(store, jobs=3)
    assert report.ok and report.checked == len(sizes) and report.bytes == sum(sizes)

    victim = digests[-1]
    path = store.path_of(victim)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fp:
        fp.seek(2 * SMALL_FILE)
        fp.write(b"rot")
    report = verify(store)
    assert [c.digest for c in report.corrupt] == [victim]
    assert report.corrupt[0].quarantined.stat().st_size == sizes[-1]
    assert report.checked == len(sizes)
    assert all(store.has(d) for d in digests[:-1])


def test_verify_reports_a_tree_object_that_does_not_parse(store):
    # the hash matches, so it is not corrupt: only malformed
    digest = store.ingest_stream([b'{"format": "datamaestro-tree/1"}'])
    store.layout.mkdir(store.trees.path_of(digest))
    report = verify(store)
    assert report.malformed == [digest]
    assert report.corrupt == []
    assert store.has(digest)


def test_verify_in_worker_processes_finds_what_one_process_finds(store):
    """The whole store rehashed by worker processes (a share of the fan-out folders each): corrupt objects, stamps and large objects alike."""
    from datamaestro.store.digests import SMALL_FILE
    from datamaestro.store.stamps import read_stamp, stamp_matches

    digests = [store.ingest_stream([b"object %d" % n]) for n in range(600)]
    large = store.ingest_stream([b"L" * (SMALL_FILE + 5)])
    small_victim, no_stamp, wrong_stamp = digests[:3]
    for victim, content in ((small_victim, b"rot"), (large, b"R" * (SMALL_FILE + 5))):
        os.chmod(store.path_of(victim), 0o644)
        store.path_of(victim).write_bytes(content)
    os.unlink(store.layout.stamp_path(no_stamp))
    os.unlink(store.layout.stamp_path(wrong_stamp))
    os.symlink("size=1,mtime_s=1", store.layout.stamp_path(wrong_stamp))

    report = verify(store, jobs=3)
    assert sorted((c.digest, c.actual) for c in report.corrupt) == sorted([(small_victim, blake3_of(b"rot")), (large, blake3_of(b"R" * (SMALL_FILE + 5)))])
    assert all(c.quarantined.is_file() for c in report.corrupt)
    assert report.checked == len(digests) + 1
    assert report.bytes == sum(len(b"object %d" % n) for n in range(600)) - len(b"object 0") + 3 + SMALL_FILE + 5
    for digest in (no_stamp, wrong_stamp):
        assert stamp_matches(read_stamp(store.layout, digest), os.lstat(store.path_of(digest)), store.layout.precise_stat)[0]
    again = verify(store, jobs=2)
    assert again.ok and again.checked == len(digests) - 1


@pytest.mark.parametrize("planted", ["x\nM {good} " + "0" * 64, "y z", "w\udcff"], ids=["forged-line", "space", "not-utf8"])
def test_a_name_planted_among_the_objects_is_named_whole_by_the_workers(store, planted):
    """A name a group member planted in a fan-out folder (a line break forging an event, a space, bytes that are not UTF-8) reaches the command whole from the workers: the same finding as in one process, and the good object is left alone."""
    good = store.ingest_stream([b"a good object"])
    fan = store.path_of(good).parent
    name = planted.format(good=good[len("blake3:") :])
    (fan / name).write_bytes(b"junk")
    found = [verify(store, jobs=jobs) for jobs in (1, 2)]
    assert found[0].not_objects == found[1].not_objects == [f"{'objects/' + fan.name + os.sep + name!r}: not an object (its name is not a digest), left as it is"]
    assert not found[0].ok and not found[0].corrupt and not found[1].corrupt
    assert store.path_of(good).read_bytes() == b"a good object" and not list(store.layout.quarantine.rglob("*"))


def test_verify_rehashes_itself_the_folders_of_a_worker_process_that_ended_early(store, monkeypatch, caplog):
    """A worker that dies (killed, out of memory, an interpreter that cannot run it) leaves its share to the command: every object is still rehashed."""
    import datamaestro.store.verify as verify_module

    digests = [store.ingest_stream([b"object %d" % n]) for n in range(300)]
    victim = digests[0]
    os.chmod(store.path_of(victim), 0o644)
    store.path_of(victim).write_bytes(b"rot")
    # the first worker rehashes half its folders and ends; the second dies at once
    script = (
        "import os, runpy, sys\n"
        "try:\n    open(os.environ['FIRST'], 'x').close()\n"
        "except FileExistsError:\n    sys.exit(3)\n"
        "sys.argv = sys.argv[:5] + sys.argv[5:][: len(sys.argv[5:]) // 2]\n"
        "runpy.run_path(os.environ['REHASH'], run_name='__main__')\n"
    )
    monkeypatch.setenv("FIRST", str(store.root.parent / "first-worker"))
    real = verify_module.worker_command
    monkeypatch.setenv("REHASH", real("", "", False, 0, [])[2])
    monkeypatch.setattr(verify_module, "worker_command", lambda *args: [sys.executable, "-c", script, *real(*args)[3:]])
    report = verify(store, jobs=2)
    assert [c.digest for c in report.corrupt] == [victim]
    assert report.checked == len(digests) and not store.has(victim)
    assert "ended (exit status 3) after 0 of its" in caplog.text and "ended (exit status 0) after" in caplog.text


# -- gc


def test_gc_removes_only_the_unique_data_of_a_deleted_dataset(store, two_datasets):
    a_dir, a = two_datasets["a"]
    b_dir, b = two_datasets["b"]
    a_entries = store.views.read_manifest(a)
    tree = a_entries["folder"][1]
    key = recipe_key({"url": "https://example.org/a.bin"})
    store.actions.put(ActionRecord(key=key, recipe={"url": "https://example.org/a.bin"}, output=Output("file", blake3_of(b"A" * 100))))
    broken = store.actions.path_of(recipe_key({"broken": True}))
    store.layout.mkdir(broken.parent)
    broken.write_text("{ truncated")
    store.layout.mkdir(store.layout.quarantine)
    (store.layout.quarantine / "evidence").write_bytes(b"kept forever")
    dead_tmp = store.layout.tmp / f"{HOST}.999999999.0123456789ab.part"
    dead_tmp.write_bytes(b"left by a crash")

    gone = {blake3_of(b"A" * 100), blake3_of(b"X" * 10), blake3_of(b"Y" * 20), tree, a}
    gone_bytes = sum(store.path_of(digest).stat().st_size for digest in gone)

    shutil.rmtree(a_dir / "data" / "org" / "a")
    report = gc(store, grace_seconds=0, now=later())

    assert set(report.objects_deleted) == gone
    assert report.bytes_deleted == gone_bytes
    assert report.views_deleted == [a] and report.trees_deleted == [tree]
    assert report.actions_deleted == [broken] and not broken.exists()
    assert report.tmp_reaped == [dead_tmp]
    assert report.roots_dropped == [] and report.roots_live == 2
    for digest in gone:
        assert not store.has(digest)
    assert not store.trees.has(tree) and not store.views.path_of(a).exists()
    # shared and B's data stay; B still reads; the action record stays
    assert store.has(blake3_of(b"S" * 1000)) and store.has(b)
    assert (b_dir / "data" / "org" / "b" / "b.bin").read_bytes() == b"B" * 200
    assert (b_dir / "data" / "org" / "b" / "shared.bin").read_bytes() == b"S" * 1000
    assert store.actions.get(key) is not None
    assert (store.layout.quarantine / "evidence").exists()
    assert gc(store, grace_seconds=0, now=later()).objects_deleted == []


def test_gc_sweeps_the_store_batch_by_batch_and_removes_exactly_the_unreachable_objects_and_orphan_stamps(store, two_datasets, tmp_path):
    """More objects than a sweep batch (4,096), in every fan-out folder: only the unreachable ones go, with their stamps.

    A stamp whose object is gone goes too; a name that is no digest and a
    fan-out folder that is a symbolic link (to objects outside the store)
    are left alone.
    """
    from datamaestro.store.stamps import record_stamp

    kept = {digest for digest in [blake3_of(b"S" * 1000), blake3_of(b"B" * 200), two_datasets["b"][1]]}
    unreachable = set()
    for number in range(4200):
        data = b"unreachable %d" % number
        digest = blake3_of(data)
        path = store.path_of(digest)  # written straight into the store (ingesting one by one would cost an fsync each)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        store.layout.mkdir(store.layout.stamp_path(digest).parent)
        record_stamp(store.layout, digest, os.lstat(path))
        unreachable.add(digest)
    orphan_stamp = blake3_of(b"removed by hand")
    store.layout.mkdir(store.layout.stamp_path(orphan_stamp).parent)
    record_stamp(store.layout, orphan_stamp, os.lstat(store.path_of(blake3_of(b"S" * 1000))))
    stranger = store.path_of(blake3_of(b"S" * 1000)).parent / "not-a-digest"
    stranger.write_bytes(b"nothing gc understands")
    # one fan-out folder of unreachable objects moved out of the store, a link left in its place
    moved = sorted(unreachable)[0]
    fan = store.path_of(moved).parent
    outside = tmp_path / "outside"
    os.rename(fan, outside)
    fan.symlink_to(outside)
    beyond = {digest for digest in unreachable if store.path_of(digest).parent == fan}

    report = gc(store, grace_seconds=0, now=later())

    deleted = set(report.objects_deleted)
    assert deleted == unreachable - beyond
    assert not deleted & kept
    for digest in unreachable - beyond:
        assert not store.has(digest) and not os.path.lexists(store.layout.stamp_path(digest))
    for digest in kept:
        assert store.has(digest)
    assert not os.path.lexists(store.layout.stamp_path(orphan_stamp))
    assert stranger.exists()
    assert beyond and all((outside / store.path_of(digest).name).exists() for digest in beyond)
    assert gc(store, grace_seconds=0, now=later()).objects_deleted == []


def test_gc_dry_run_deletes_nothing(store, two_datasets):
    a_dir, _ = two_datasets["a"]
    shutil.rmtree(a_dir / "data" / "org" / "a")
    before = all_files(store)
    dry = gc(store, dry_run=True, grace_seconds=0, now=later())
    assert dry.dry_run and len(dry.objects_deleted) == 5
    assert all_files(store) == before
    real = gc(store, grace_seconds=0, now=later())
    assert (sorted(real.objects_deleted), real.views_deleted, real.trees_deleted) == (
        sorted(dry.objects_deleted),
        dry.views_deleted,
        dry.trees_deleted,
    )
    assert real.bytes_deleted == dry.bytes_deleted


def test_gc_keeps_unreachable_entries_younger_than_the_grace_period(store, two_datasets):
    a_dir, _ = two_datasets["a"]
    shutil.rmtree(a_dir / "data" / "org" / "a")
    young = gc(store)
    assert (young.objects_deleted, young.views_deleted, young.trees_deleted) == ([], [], [])
    assert young.kept_young == 5 + 1 + 1
    old = gc(store, now=time.time() + 2 * 3600)
    assert len(old.objects_deleted) == 5 and old.kept_young == 0


def test_a_lock_root_keeps_its_manifests_while_its_file_exists(store, tmp_path):
    digest = store.ingest_stream([b"pinned"])
    manifest, view = store.views.publish({"data.bin": ("file", digest)})
    lock_file = tmp_path / "project" / "datamaestro.lock"
    lock_file.parent.mkdir()
    lock_file.write_text("# pins\n")
    root = store.register_root("lock", lock_file, [manifest])

    kept = gc(store, grace_seconds=0, now=later())
    assert kept.objects_deleted == [] and kept.roots_live == 1
    assert (view / "data.bin").read_bytes() == b"pinned"

    lock_file.unlink()
    dropped = gc(store, grace_seconds=0, now=later())
    assert dropped.roots_dropped == [root]
    assert not root.note.exists() and store.roots() == []
    assert set(dropped.objects_deleted) == {digest, manifest}
    assert dropped.views_deleted == [manifest]


def test_a_data_root_whose_folder_is_gone_is_dropped(store, two_datasets):
    b_dir, b = two_datasets["b"]
    shutil.rmtree(b_dir)
    report = gc(store, grace_seconds=0, now=later())
    assert [r.path for r in report.roots_dropped] == [b_dir]
    assert set(report.objects_deleted) == {blake3_of(b"B" * 200), b}
    assert [r.kind for r in store.roots()] == ["data"]


def test_gc_waits_for_another_gc(store):
    code = (
        "import sys, time\n"
        "from datamaestro.store import Store\n"
        "with Store(sys.argv[1]).lock('gc', what='collecting garbage'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    holder = subprocess.Popen([sys.executable, "-c", code, str(store.root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeoutError, match=f"process {holder.pid} "):
            gc(store, lock_timeout=0.2)
        assert gc(store, dry_run=True).dry_run  # a dry run takes no lock
    finally:
        holder.kill()
        holder.wait(timeout=30)


# -- disk usage


def test_disk_usage_counts_shared_bytes_once(store, two_datasets):
    a_dir, a = two_datasets["a"]
    b_dir, b = two_datasets["b"]
    usage = disk_usage(store)
    by_path = {str(d.path): d for d in usage.datasets}
    assert set(by_path) == {"org/a", "org/b"}
    def size(digest: str) -> int:
        return store.path_of(digest).stat().st_size

    tree = store.views.read_manifest(a)["folder"][1]
    a_unique = 100 + 10 + 20 + size(tree) + size(a)
    b_unique = 200 + size(b)
    assert (by_path["org/a"].bytes, by_path["org/a"].unique_bytes) == (1000 + a_unique, a_unique)
    assert (by_path["org/b"].bytes, by_path["org/b"].unique_bytes) == (1000 + b_unique, b_unique)
    assert (by_path["org/a"].manifest, by_path["org/a"].data_dir) == (a, a_dir)
    assert usage.total_bytes == 1000 + a_unique + b_unique
    assert usage.total_bytes == store_info(store).object_bytes
    assert [str(d.path) for d in disk_usage(store, [b_dir]).datasets] == ["org/b"]


# -- group stores


def test_init_store_sets_up_a_group_store(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name
    gid = grp.getgrnam(group).gr_gid
    plain = init_store(tmp_path / "store")
    assert not plain.shared
    digest = plain.ingest_stream([b"before"])
    folder = tmp_path / "src" / "sub"
    folder.mkdir(parents=True)
    (folder / "f.txt").write_text("in a tree")
    tree = plain.ingest_tree(tmp_path / "src")

    shared = init_store(tmp_path / "store", group=group)
    assert shared.shared
    assert (shared.root / "SHARED").read_text().strip() == group
    # sticky: a member adds entries but never renames, replaces or removes another member's
    for folder in [shared.root, shared.root / "objects", shared.path_of(digest).parent, shared.root / "locks", shared.root / "stamps" / "ff"]:
        st = folder.stat()
        assert stat.S_IMODE(st.st_mode) == 0o3775 and st.st_gid == gid, folder
    # a dead member's lease must be breakable by the others
    assert stat.S_IMODE((shared.root / "leases").stat().st_mode) == 0o2775
    assert stat.S_IMODE(shared.path_of(digest).stat().st_mode) == 0o444
    materialized = shared.trees.path_of(tree)
    assert not materialized.stat().st_mode & 0o222 and not (materialized / "sub").stat().st_mode & 0o222
    # new folders inherit the setup; a second init changes nothing
    fresh = shared.ingest_stream([b"after"])
    assert stat.S_IMODE(shared.path_of(fresh).parent.stat().st_mode) == 0o3775
    again = init_store(tmp_path / "store", group=group)
    assert again.shared and store_info(again).group == group
    assert verify(again).ok


def test_init_store_refuses_an_unknown_group(tmp_path):
    with pytest.raises(StoreError, match="unknown Unix group 'no-such-group-dm'"):
        init_store(tmp_path / "store", group="no-such-group-dm")
    assert not (tmp_path / "store").exists()


def test_gc_keeps_what_a_tree_names_even_when_its_document_does_not_parse(store, tmp_path):
    """gc reads the digests a tree names from its bytes (no parse): an unparsable document keeps its objects (verify reports it)."""
    data_dir = tmp_path / "data-dir"
    add_dataset(store, data_dir, "ds", {}, tree={"a.txt": b"alpha", "sub/b.txt": b"beta"})
    named = [blake3_of(b"alpha"), blake3_of(b"beta")]
    loose = store.ingest_stream([b"nobody's"])
    report = gc(store, grace_seconds=0, now=later())
    assert loose in report.objects_deleted
    assert all(store.objects.has(d) for d in named)

    # a document that names objects but is not a tree: what it names is kept all the same
    named = [store.ingest_stream([b"only named by"]), store.ingest_stream([b"an odd document"])]
    odd = store.ingest_stream([("not json " + " ".join(named)).encode()])
    manifest = store.views.store_manifest({"folder": ("tree", odd)})  # a view of it could not be made: a lock pins it
    lock = tmp_path / "datamaestro.lock"
    lock.write_text("pins the odd tree\n")
    store.register_lock_root(lock, [manifest])
    report = gc(store, grace_seconds=0, now=later())
    assert not report.objects_deleted
    assert all(store.objects.has(d) for d in [*named, odd])


def test_du_counts_a_trees_files_at_the_sizes_it_records(store, tmp_path):
    data_dir = tmp_path / "data-dir"
    add_dataset(store, data_dir, "ds", {"one": b"1" * 10}, tree={"a.txt": b"a" * 100, "b/c.txt": b"c" * 1000})
    usage = disk_usage(store)
    (dataset,) = usage.datasets
    documents = sum(os.path.getsize(store.path_of(d)) for d in (dataset.manifest, *[d for k, d in store.views.read_manifest(dataset.manifest).values() if k == "tree"]))
    assert dataset.bytes == 10 + 100 + 1000 + documents
    assert usage.total_bytes == dataset.bytes == dataset.unique_bytes


def test_du_reads_the_sizes_from_a_trees_text_in_either_format_whatever_its_file_names(store, tmp_path):
    """du finds each file's digest and size in a tree's text: file names that look like entries do not fool it, in format 2 or 1."""
    fake = '{"digest":"' + blake3_of(b"not in the tree") + '","kind":"file","path":"x","size":999999}'
    tree = {
        'q","size":777}': b"q" * 3,  # what ends an entry, inside a name
        fake: b"f" * 5,  # a whole entry, inside a name
        "line\nbreak \\ back\\": b"n" * 7,
        "same-a": b"s" * 11,  # the same object twice: counted once
        "same-b": b"s" * 11,
        "sub/deep.bin": b"d" * 300_000,
    }
    objects = 3 + 5 + 7 + 11 + 300_000
    modern = add_dataset(store, tmp_path / "modern", "ds", {}, tree=tree)
    digest = store.views.read_manifest(modern)["folder"][1]
    legacy = store.trees.as_pinned(digest, store.trees.legacy_digest(digest))
    assert store.objects.path_of(legacy).read_bytes().startswith(b'{"entries":[')
    old, view = store.views.publish({"folder": ("tree", legacy)})
    point_readable_path(tmp_path / "old" / "data" / "ds", view, tmp_path / "old", ["folder"])
    store.register_root("data", tmp_path / "old")
    usage = disk_usage(store)
    by_dir = {d.data_dir.name: d for d in usage.datasets}
    size = lambda d: os.path.getsize(store.path_of(d))  # noqa: E731
    assert by_dir["modern"].bytes == objects + size(digest) + size(modern)
    assert by_dir["old"].objects == 5 + 2  # five distinct files, the tree, the manifest
    assert by_dir["old"].bytes == objects + size(legacy) + size(old)
    assert by_dir["modern"].unique_bytes == size(digest) + size(modern)
    assert usage.total_bytes == objects + size(digest) + size(modern) + size(legacy) + size(old)
