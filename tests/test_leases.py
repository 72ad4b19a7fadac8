"""Leases on the store: real processes, real kill -9, holders on another host (their own UTS namespace).

These run on the local file system; ``tests/sharedfs`` runs the same store
over two SeaweedFS mounts whose locks do not meet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamaestro.store import Store
from datamaestro.store.leases import acquire, lease_folder, live_leases
from datamaestro.store.gc import gc
from datamaestro.store.layout import HOST
from support.seaweedfs import Machine, can_make_machines

HOLD = """
import sys, time
from pathlib import Path
from datamaestro.store import Store
from datamaestro.store.leases import acquire
store = Store(Path(sys.argv[1]))
lease = acquire(store.layout, sys.argv[2], ttl=float(sys.argv[3]), what="holding for a test")
print("held", flush=True)
time.sleep(float(sys.argv[4]))
lease.release()
print("released", flush=True)
"""

needs_machines = pytest.mark.skipif(not can_make_machines(), reason="`unshare --uts` needs root")


def hold(store: Path, name: str, ttl: float, seconds: float, machine: Machine | None = None) -> subprocess.Popen:
    """Starts a process (on ``machine``: another host name) that holds a lease; returns once it holds it."""
    args = [sys.executable, "-c", HOLD, str(store), name, str(ttl), str(seconds)]
    process = machine.popen(args, stdout=subprocess.PIPE, text=True) if machine else subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def test_a_second_process_waits_for_the_lease_and_is_told_by_whom(store):
    holder = hold(store.root, "key", ttl=30, seconds=1.0)
    waited_for = []
    start = time.monotonic()
    with acquire(store.layout, "key", ttl=30, timeout=20, on_wait=waited_for.append):
        waited = time.monotonic() - start
    holder.wait(timeout=10)
    assert 0.5 < waited < 10
    assert [(info.host, info.pid, info.what) for info in waited_for] == [(HOST, holder.pid, "holding for a test")]
    assert "holding for a test" in waited_for[0].describe()
    assert not (lease_folder(store.layout) / "key").exists()


def test_a_lease_of_a_dead_process_of_this_host_is_taken_at_once(store):
    holder = hold(store.root, "key", ttl=30, seconds=60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with acquire(store.layout, "key", ttl=30, timeout=90):
        assert time.monotonic() - start < 30  # not waited out: its pid says it is dead


@needs_machines
def test_a_lease_of_a_dead_process_on_another_host_expires_after_its_ttl(store):
    ttl = 2.0
    holder = hold(store.root, "key", ttl=ttl, seconds=60, machine=Machine("other-node"))
    part = store.layout.tmp / f"other-node.{holder.pid}.0123.part"
    part.write_bytes(b"half a download")
    # written after the holder's last heartbeat, maybe: the breaker reaps it all the same
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    killed = time.monotonic()
    with acquire(store.layout, "key", ttl=ttl, timeout=60):
        took = time.monotonic() - killed
    # its pid cannot be checked from here: only the missing heartbeat says it is dead
    # (no upper bound but the timeout: a busy machine may be slow to notice)
    assert ttl * 0.5 < took
    assert list(store.layout.tmp.glob("other-node.*")) == []  # its half-written files are reaped


@needs_machines
def test_a_live_holder_on_another_host_keeps_its_lease_past_the_ttl(store):
    ttl = 1.0
    holder = hold(store.root, "key", ttl=ttl, seconds=3.5, machine=Machine("other-node"))
    start = time.monotonic()
    with acquire(store.layout, "key", ttl=ttl, timeout=20):
        waited = time.monotonic() - start
        assert holder.wait(timeout=10) == 0
    assert waited > 2.5  # the heartbeat kept it alive three ttls long


def test_a_lease_times_out_with_the_holder_named(store):
    from datamaestro.errors import LockTimeoutError

    holder = hold(store.root, "key", ttl=30, seconds=10)
    try:
        with pytest.raises(LockTimeoutError, match=rf"waiting for process {holder.pid} on {HOST} \(holding for a test"):
            acquire(store.layout, "key", ttl=30, timeout=0.5)
    finally:
        holder.kill()
        holder.wait()


def test_gc_keeps_what_a_live_lease_may_reference_and_collects_it_after(store):
    holder = hold(store.root, "work", ttl=30, seconds=60)
    try:
        digest = store.ingest_stream([b"an output nobody references yet"])
        report = gc(store, grace_seconds=0, now=time.time() + 5)
        assert digest not in report.objects_deleted and store.has(digest)
        assert [lease.pid for lease in live_leases(store.layout)] == [holder.pid]
    finally:
        holder.kill()
        holder.wait()
    report = gc(store, grace_seconds=0, now=time.time() + 5)
    assert digest in report.objects_deleted and not store.has(digest)


def test_gc_keeps_what_a_root_of_another_machine_names(store, tmp_path):
    kept = store.ingest_stream([b"used on another machine"])
    manifest, _ = store.views.publish({"data.bin": ("file", kept)})
    lost = store.ingest_stream([b"used by nobody"])
    note = store.layout.roots / "data" / "elsewhere.json"
    store.layout.mkdir(note.parent)
    note.write_text(json.dumps({"kind": "data", "path": str(tmp_path / "not-here"), "manifests": [], "host": "other-node"}))
    markers = note.with_suffix(".manifests")
    markers.mkdir()
    (markers / manifest[7:]).touch()

    report = gc(store, grace_seconds=0, now=time.time() + 5)

    assert report.roots_elsewhere == 1 and report.roots_dropped == []
    assert store.has(kept) and manifest not in report.views_deleted
    assert lost in report.objects_deleted
    assert note.exists()


def test_a_data_root_records_what_it_published(store, tmp_path):
    root = store.register_root("data", tmp_path / "data-dir")
    digest = store.ingest_stream([b"x"])
    manifest, _ = store.views.publish({"x": ("file", digest)})
    store.mark_published(root, manifest)
    store.mark_published(root, manifest)
    (found,) = [r for r in store.roots() if r.note == root.note]
    assert (found.host, found.published) == (HOST, (manifest,))

