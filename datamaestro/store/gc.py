"""``datamaestro store gc``: what no root reaches is removed (:func:`gc`), under the gc lock (:data:`GC_LOCK`)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import Store
from .digests import PREFIX, format_digest, hex_of, is_digest
from .leases import filesystem_now, live_leases, reap_expired_working_leases
from .roots import Root
from .testpoints import pause
from .rehash import entry_kind
from .walk import _object_batches, _Reach, _Resolver, _age, _age_of, _fanout, _remove_folder, _stray_entries, _tree_folders, _view_folders, not_an_object

GC_LOCK = "gc"


@dataclass
class GcReport:
    """The result of :func:`gc` (with ``dry_run``: what would be deleted).

    :param dry_run: nothing was deleted
    :param roots_live: registered roots still alive
    :param roots_elsewhere: roots of other machines (kept, with what they name)
    :param roots_dropped: roots whose data dir or lock file is gone (notes deleted)
    :param objects_live: objects reachable from a live root
    :param objects_deleted: digests of deleted objects
    :param bytes_deleted: their total size
    :param trees_deleted: digests of deleted materialized trees
    :param views_deleted: manifest digests of deleted views
    :param actions_deleted: action records deleted because they cannot be parsed
    :param kept_young: unreachable entries kept because younger than the grace
        period, or than the oldest lease a process (of any machine) holds
    :param tmp_reaped: leftovers of dead writers removed from ``tmp/`` (not
        previewed in a dry run)
    :param errors: entries that could not be deleted (``path: error``)
    :param left_to_owner: unreachable entries of other members, left alone:
        in a group store only the store's owner (or root) collects them
    :param not_objects: entries of ``objects/`` and ``stamps/`` that are
        not what the store writes there (a name that is not a digest, a
        directory, a symbolic link or a fifo where an unreachable object or
        a stamp should be, a file at the top of ``objects/``), one line each
        naming it whole (see :func:`~.walk.not_an_object`): never deleted,
        opened nor followed
    :param seconds: wall-clock duration
    """

    dry_run: bool
    roots_live: int = 0
    roots_elsewhere: int = 0
    roots_dropped: list[Root] = field(default_factory=list)
    objects_live: int = 0
    objects_deleted: list[str] = field(default_factory=list)
    bytes_deleted: int = 0
    trees_deleted: list[str] = field(default_factory=list)
    views_deleted: list[str] = field(default_factory=list)
    actions_deleted: list[Path] = field(default_factory=list)
    kept_young: int = 0
    tmp_reaped: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    left_to_owner: int = 0
    not_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0


def gc(
    store: Store,
    *,
    dry_run: bool = False,
    grace_seconds: float = 3600,
    now: float | None = None,
    lock_timeout: float = 3600,
) -> GcReport:
    """Deletes everything no live root reaches.

    Roots: data dirs (``data``: the symlinks below ``<data dir>/data/``
    that lead into this store) and lock files (``lock``: the manifests they
    pin, while the file exists). A root whose folder or file is gone is
    dropped. From each live manifest, its object, its view, its file
    objects and its trees (tree object, materialized folder, every file)
    are kept. Unreachable objects, views and materialized trees younger than
    ``grace_seconds`` are kept too: a prepare may be creating them; so is
    everything newer than the oldest live lease (a process of any machine
    producing something it will reference). Ages are measured on the file
    system's clock, not this machine's. Roots of other machines are kept,
    with the manifests they name (their paths cannot be checked here). Action
    records are all kept (they let a pipeline compute downstream recipe keys
    without fetching transient inputs again) except unparsable ones;
    ``quarantine/`` is never touched. Dead writers' ``tmp/`` entries are reaped,
    and the stamps of objects that are gone.

    In a group store, a member (neither the store's owner nor root) removes
    only its own entries: another member's are counted in
    ``left_to_owner``, never touched (the kernel would refuse anyway: the
    store's folders are sticky).

    The store lock ``gc`` is held throughout (not in a dry run).

    :param dry_run: only report what would be deleted
    :param grace_seconds: minimum age of an unreachable entry before it is deleted
    :param now: the current time (for tests)
    :param lock_timeout: seconds to wait for another gc or verify
    """
    start = time.monotonic()
    report = GcReport(dry_run=dry_run)
    guard = contextlib.nullcontext() if dry_run else store.lock(GC_LOCK, timeout=lock_timeout, what="collecting garbage")
    with guard:
        if now is None:
            now = filesystem_now(store.layout)
        # what a live lease produces is referenced only once it is done: keep
        # everything that may be younger than the oldest one (a minute's margin)
        working = [lease.started for lease in live_leases(store.layout, store.lease_ttl) if not lease.mine]
        grace = max(grace_seconds, now - min(working) + 60) if working else grace_seconds
        reach = _live(store, report, grace, now)
        report.objects_live = len(reach.objects)
        pause("gc-sweep")
        _sweep_folders(store, _view_folders(store), reach.views, report.views_deleted, now, grace, report)
        _sweep_folders(store, _tree_folders(store), reach.trees, report.trees_deleted, now, grace, report)
        _sweep_objects(store, reach, now, grace, report)
        _sweep_actions(store, report)
        _sweep_stamps(store, report)
        if not dry_run:
            report.tmp_reaped = store.reap_tmp()
            reap_expired_working_leases(store.layout, store.lease_ttl)
    report.seconds = time.monotonic() - start
    return report


def _live(store: Store, report: GcReport, grace: float, now: float, ignore: Path | None = None) -> _Reach:
    """Marks what the live roots reach; drops (or, dry, lists) dead roots.

    :param ignore: a readable folder whose own links are taken as gone (what
        ``rm`` would free, measured before anything is removed)
    """
    resolver = _Resolver(store)
    reach = _Reach()
    for root in store.roots():
        if root.elsewhere:
            # another machine's path: what it keeps is written in the store
            report.roots_elsewhere += 1
            for manifest in (*root.manifests, *root.published):
                resolver.mark("view", manifest, reach)
            continue
        alive = root.path.is_dir() if root.kind == "data" else root.path.exists()
        if not alive and not _mine(store, root.note, report):
            continue
        if not alive:
            report.roots_dropped.append(root)
            if not report.dry_run:
                root.note.unlink(missing_ok=True)
                shutil.rmtree(root.markers, ignore_errors=True)
            continue
        report.roots_live += 1
        if root.kind == "data":
            linked = set()
            for link, kind, digest in resolver.links(root.path / "data"):
                if ignore is not None and link.parent == ignore:
                    continue
                resolver.mark(kind, digest, reach)
                if kind == "view":
                    linked.add(digest)
            if not report.dry_run:
                _prune_markers(root, linked, grace, now)
        else:
            for manifest in root.manifests:
                resolver.mark("view", manifest, reach)
    return reach


def _prune_markers(root: Root, linked: set[str], grace: float, now: float) -> None:
    """Removes a data root's markers of manifests its data dir no longer links to.

    A marker younger than ``grace`` stays: its publisher may be about to link it.
    """
    for manifest in root.published:
        if manifest in linked:
            continue
        marker = root.markers / hex_of(manifest)
        age = _age(marker, now)
        if age is not None and age >= grace:
            with contextlib.suppress(PermissionError):  # another member's marker (group store)
                marker.unlink(missing_ok=True)


def _mine(store: Store, path: Path, report: Any, st: os.stat_result | None = None) -> bool:
    """True when this process may remove ``path``; else counts it in ``left_to_owner`` (a group store's member).

    :param report: a :class:`GcReport`, or a release's report (any report with a ``left_to_owner`` count)
    :param st: its ``lstat``, when the caller has just made it
    """
    try:
        st = st or os.lstat(path)
    except FileNotFoundError:
        return False
    if store.layout.may_remove(st):
        return True
    report.left_to_owner += 1
    return False


def _collectable(path: Path, now: float, grace: float, report: GcReport, store: Store | None = None, area: str = "") -> bool:
    """True when an unreachable entry is old enough to go (counts the young ones) and this process may remove it.

    :param area: ``objects`` when ``path`` is an object's: anything but a
        regular file there (a directory, a symbolic link, a fifo planted
        where an object should be) is not an object: named in
        ``report.not_objects`` and left as it is
    """
    try:
        st = os.lstat(path)  # one for the kind, the age and the owner
    except FileNotFoundError:
        return False
    if area and not stat.S_ISREG(st.st_mode):
        report.not_objects.append(not_an_object(area, path.parent.name + os.sep + path.name, entry_kind(st.st_mode)))
        return False
    if _age_of(st, now) < grace:
        report.kept_young += 1
        return False
    return store is None or _mine(store, path, report, st)


def _sweep_folders(store: Store, folders, live: set[str], deleted: list[str], now: float, grace: float, report: GcReport) -> None:
    """Removes the unreachable, old enough folders among ``(digest, folder)`` pairs."""
    for digest, path in folders:
        # a name that is no digest is nothing gc understands: leave it alone
        if not is_digest(digest) or digest in live or not _collectable(path, now, grace, report, store):
            continue
        if report.dry_run or _remove_folder(path, report.errors):
            deleted.append(digest)


#: object names listed and compared at a time (memory: one batch, and one fan-out folder's names)
_SWEEP_BATCH = 4096


def _sweep_objects(store: Store, reach: _Reach, now: float, grace: float, report: GcReport) -> None:
    """Removes the unreachable, old enough objects, one fan-out folder listed at a time.

    Each name is made a digest by the listing itself (``blake3:`` + fan-out
    + name, the strings ``reach.objects`` holds) and the live ones are
    dropped by a set lookup done in C: no ``stat``, no ``Path``, no call per
    live object (most of a store), and never a list of the whole store.
    """
    live = reach.objects
    objects = os.fspath(store.layout.objects)
    sep = os.sep
    start = len(PREFIX)
    report.not_objects += [not_an_object("objects", name, "not a fan-out folder") for name in _stray_entries(objects)]
    for batch in _object_batches(objects, _SWEEP_BATCH, prefix=PREFIX):
        for digest in itertools.filterfalse(live.__contains__, batch):
            name = digest[start : start + 2] + sep + digest[start + 2 :]
            # a name that is no digest is nothing gc understands: named, left alone
            if not is_digest(digest):
                report.not_objects.append(not_an_object("objects", name, "its name is not a digest"))
                continue
            path = Path(objects + sep + name)
            if not _collectable(path, now, grace, report, store, area="objects"):
                continue
            remove_object(store, digest, path, report, dry_run=report.dry_run)


def remove_object(store: Store, digest: str, path: Path, report, *, dry_run: bool) -> None:
    """Deletes an object nothing keeps (and its stamp), counting it in ``report`` (a gc or release report); with ``dry_run``, only counts it.

    An object already gone is not counted; one that cannot be deleted is
    named in ``report.errors``.
    """
    try:
        size = os.lstat(path).st_size
        if not dry_run:
            path.unlink()
            with contextlib.suppress(OSError):
                store.layout.stamp_path(digest).unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        report.errors.append(f"{path}: {exc}")
        return
    report.objects_deleted.append(digest)
    report.bytes_deleted += size


def _sweep_actions(store: Store, report: GcReport) -> None:
    """Deletes action records that cannot be parsed (all others are kept)."""
    for name, entry in list(_fanout(store.layout.actions)):
        if not name.endswith(".json"):
            continue
        path = Path(entry.path)
        try:
            path.read_bytes()
        except OSError:
            continue  # unreadable is not unparsable: maybe a permission problem
        key = format_digest(name[: -len(".json")])
        if is_digest(key) and store.actions.get(key) is not None:
            continue
        if not _mine(store, path, report):
            continue
        if not report.dry_run:
            try:
                path.unlink()
            except OSError as exc:
                report.errors.append(f"{path}: {exc}")
                continue
        report.actions_deleted.append(path)


def _sweep_stamps(store: Store, report: GcReport) -> None:
    """Deletes the stamps of objects that are gone (an older datamaestro's gc, a removal by hand).

    One fan-out folder at a time: its stamps' names less its objects' names
    (two listings and a set difference, no ``stat`` per stamp, never a list
    of the whole store); only an orphan stamp is looked at. What is not a
    stamp (a name that is not a digest, anything but a symbolic link) is
    named in ``report.not_objects`` and left as it is.
    """
    if report.dry_run:
        return
    objects = os.fspath(store.layout.objects)
    stamps = os.fspath(store.layout.stamps)
    try:
        fans = [entry.name for entry in os.scandir(stamps) if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for fan in fans:
        folder = stamps + os.sep + fan
        try:
            orphans = set(os.listdir(folder))
        except FileNotFoundError:
            continue
        with contextlib.suppress(FileNotFoundError):
            orphans.difference_update(os.listdir(objects + os.sep + fan))
        for name in orphans:
            if name.startswith("."):
                continue  # a stamp being replaced (record_stamp)
            if not is_digest(PREFIX + fan + name):
                report.not_objects.append(not_an_object("stamps", fan + os.sep + name, "its name is not a digest"))
                continue
            path = folder + os.sep + name
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if not stat.S_ISLNK(st.st_mode):
                    report.not_objects.append(not_an_object("stamps", fan + os.sep + name, entry_kind(st.st_mode)))
                elif store.layout.may_remove(st):
                    os.unlink(path)
