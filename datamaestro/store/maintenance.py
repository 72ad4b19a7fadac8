"""Store maintenance: information, verification, garbage collection, disk usage, setup.

Every function takes a :class:`~datamaestro.store.Store` and returns a
dataclass describing what it found or did; none prints. The CLI wraps them
(``datamaestro store info|verify|gc|du|init``).

Reachability, shared by :func:`gc` and :func:`disk_usage`: a data dir keeps
alive whatever the symlinks below its ``data/`` folder lead to (each
dataset folder's ``.view`` link, hence the view, its manifest and the
objects and trees the manifest names); a lock file root keeps alive the
manifests it lists while the lock file exists.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import shutil
import stat
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import StoreError, UntrustedInputError
from . import SHARED_FILE, Store, create_store, group_id, make_folders, replace_store_file
from .digests import digest_of_file, digest_of_mapped_file, format_digest, hex_of, is_digest, read_small_file, small_file_buffer
from .leases import filesystem_now, live_leases, reap_expired_working_leases
from .integrity import QUARANTINE_NOTE, owner_name, quarantine_object
from .objects import SHARED_DIR_MODE, SHARED_LEASE_DIR_MODE, disk_error, make_writable, read_stamp, record_stamp, stamp_matches
from .roots import ROOT_KINDS, Root
from .testpoints import pause
from .views import VIEW_LINK

GC_LOCK = "gc"


# -- shared helpers


def _fanout(base: Path) -> Iterator[tuple[str, os.DirEntry]]:
    """``(hex name, entry)`` for every entry of a two-level fan-out folder (``base/ab/cdef...``)."""
    if not base.is_dir():
        return
    for fan in os.scandir(base):
        if len(fan.name) == 2 and fan.is_dir(follow_symlinks=False):
            for entry in os.scandir(fan.path):
                yield fan.name + entry.name, entry


def _view_folders(store: Store) -> list[tuple[str, Path]]:
    """``(manifest digest, folder)`` of every view."""
    views = store.layout.views
    return [(format_digest(name), views / name) for name in sorted(os.listdir(views))] if views.is_dir() else []


def _tree_folders(store: Store) -> list[tuple[str, Path]]:
    """``(tree digest, folder)`` of every materialized tree."""
    return [(format_digest(hexdigest), Path(entry.path)) for hexdigest, entry in _fanout(store.layout.trees)]


def _age(path: Path, now: float) -> float | None:
    """Seconds since ``path`` was created or renamed into place (None when gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    # rename (how every entry arrives) updates ctime; mtime covers file systems that do not
    return now - max(st.st_ctime, st.st_mtime)


def _remove_folder(path: Path, errors: list[str]) -> bool:
    """Removes a (possibly read-only) folder; failures go to ``errors``."""
    failures = []
    try:
        make_writable(path)
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror or exc}")
        return False
    shutil.rmtree(path, onerror=lambda _f, p, exc_info: failures.append(f"{p}: {exc_info[1]}"))
    errors.extend(failures)
    return not failures


@dataclass
class _Reach:
    """What a set of roots keeps alive: digests of views (manifests), trees and objects."""

    views: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)


class _Resolver:
    """Turns paths into the store entries they lead to and marks what they keep alive."""

    def __init__(self, store: Store):
        self.store = store
        layout = store.layout
        self.bases = {
            "view": os.path.realpath(layout.views),
            "tree": os.path.realpath(layout.trees),
            "object": os.path.realpath(layout.objects),
        }

    def classify(self, path: str) -> tuple[str, str] | None:
        """``(kind, digest)`` of the store entry a path resolves into, or None."""
        resolved = os.path.realpath(path)
        for kind, base in self.bases.items():
            if not resolved.startswith(base + os.sep):
                continue
            parts = resolved[len(base) + 1 :].split(os.sep)
            hexdigest = parts[0] if kind == "view" else "".join(parts[:2])
            digest = format_digest(hexdigest)
            return (kind, digest) if is_digest(digest) else None
        return None

    def links(self, folder: Path) -> Iterator[tuple[Path, str, str]]:
        """``(link path, kind, digest)`` for every symlink below ``folder`` leading into the store.

        :raises StoreError: when a folder cannot be read: gc must not delete
            what it could not see being used
        """
        for dirpath, dirnames, filenames in os.walk(folder, onerror=_unreadable_folder):
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    target = self.classify(full)
                    if target is not None:
                        yield Path(full), *target

    def mark(self, kind: str, digest: str, reach: _Reach) -> None:
        """Adds an entry and everything it needs to ``reach`` (malformed digests are ignored)."""
        if not is_digest(digest or ""):
            return
        if kind == "view":
            self._mark_view(digest, reach)
        elif kind == "tree":
            self._mark_tree(digest, reach)
        else:
            reach.objects.add(digest)

    def _mark_view(self, manifest: str, reach: _Reach) -> None:
        if manifest in reach.views:
            return
        reach.views.add(manifest)
        reach.objects.add(manifest)
        try:
            entries = self.store.views.read_manifest(manifest)
        except StoreError:
            # the manifest is gone or damaged (quarantined by verify): the view's
            # own links still say what it needs
            for _, kind, digest in self.links(self.store.views.path_of(manifest)):
                self.mark(kind, digest, reach)
            return
        for kind, digest in entries.values():
            self.mark("tree" if kind == "tree" else "object", digest, reach)

    def _mark_tree(self, digest: str, reach: _Reach) -> None:
        if digest in reach.trees:
            return
        reach.trees.add(digest)
        reach.objects.add(digest)
        with contextlib.suppress(StoreError, UntrustedInputError):
            reach.objects.update(self.store.trees.iter_object_digests(digest))


def _unreadable_folder(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # a folder that is gone links to nothing
        raise StoreError(f"cannot read {exc.filename}: {exc.strerror}", hint="fix its permissions, then run again") from None


def _data_dirs(store: Store, given: Iterable[Path] | None) -> list[Path]:
    """The data dirs to scan: the given ones, else the existing registered data roots."""
    if given is not None:
        candidates = [Path(d) for d in given]
    else:
        candidates = [root.path for root in store.roots() if root.kind == "data" and root.path.is_dir()]
    unique = {}
    for folder in candidates:
        unique.setdefault(os.path.realpath(folder), folder)
    return list(unique.values())


# -- info


@dataclass
class StoreInfo:
    """What a store holds.

    :param location: the store folder
    :param layout_version: the version of each part of the layout, in one
        line (``objects 1, actions 1, views 1, roots 1``)
    :param shared: True for a group store
    :param group: the Unix group of a group store (None otherwise)
    :param objects: number of file objects
    :param object_bytes: total size of the file objects
    :param trees: number of materialized trees
    :param views: number of dataset views
    :param actions: number of action-cache records
    :param roots: number of registered gc roots, by kind (``data``, ``lock``)
    :param tmp_entries: entries in ``tmp/`` (in-flight writes or leftovers)
    :param quarantined: objects moved to ``quarantine/`` by :func:`verify`
    :param layout_versions: the version of each part of the layout
    """

    location: Path
    layout_version: str
    shared: bool
    group: str | None
    objects: int
    object_bytes: int
    trees: int
    views: int
    actions: int
    roots: dict[str, int]
    tmp_entries: int
    quarantined: int
    layout_versions: dict[str, int] = field(default_factory=dict)


def _count(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> int:
    return sum(1 for name in os.listdir(folder) if keep(name)) if folder.is_dir() else 0


def store_info(store: Store) -> StoreInfo:
    """Counts what a store holds (one pass over its folders, no hashing)."""
    layout = store.layout
    objects = object_bytes = 0
    for _, entry in _fanout(layout.objects):
        with contextlib.suppress(FileNotFoundError):
            object_bytes += entry.stat(follow_symlinks=False).st_size
            objects += 1
    roots = dict.fromkeys(ROOT_KINDS, 0)
    for root in store.roots():
        roots[root.kind] = roots.get(root.kind, 0) + 1
    return StoreInfo(
        location=store.root,
        layout_version=", ".join(f"{part} {version}" for part, version in store.layout_versions.items()),
        shared=store.shared,
        group=_group_of(store) if store.shared else None,
        objects=objects,
        object_bytes=object_bytes,
        trees=len(_tree_folders(store)),
        views=len(_view_folders(store)),
        actions=sum(1 for name, _ in _fanout(layout.actions) if name.endswith(".json")),
        roots=roots,
        tmp_entries=_count(layout.tmp),
        quarantined=_count(layout.quarantine, lambda name: not name.endswith(QUARANTINE_NOTE)),
        layout_versions=dict(store.layout_versions),
    )


def _group_of(store: Store) -> str:
    """The group named in the ``SHARED`` marker, else the store folder's group."""
    name = (store.root / SHARED_FILE).read_text().strip()
    if name:
        return name
    gid = os.stat(store.root).st_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- verify


@dataclass
class CorruptObject:
    """An object whose bytes no longer match its name.

    :param digest: the object's name (what its content should hash to)
    :param actual: what its content hashes to now
    :param quarantined: where it was moved (a ``.json`` note sits beside it);
        None when this user may not move it (another member's object in a
        group store: its owner or the store's owner must run ``store verify``)
    :param owner: the user owning the object
    """

    digest: str
    actual: str
    quarantined: Path | None
    owner: str = ""


@dataclass
class VerifyReport:
    """The result of :func:`verify`.

    :param checked: objects rehashed
    :param bytes: bytes rehashed
    :param corrupt: objects whose content did not match their name (now quarantined)
    :param trees_removed: digests of materialized trees removed because they held a corrupt object
    :param malformed: tree or manifest objects (named by ``trees/`` or ``views/``)
        whose hash matches but which do not parse as trees or manifests
    :param missing: tree or manifest objects named by ``trees/`` or ``views/``
        that are not in the store
    :param errors: objects that could not be read (``digest: error``)
    :param seconds: wall-clock duration
    """

    checked: int = 0
    bytes: int = 0
    corrupt: list[CorruptObject] = field(default_factory=list)
    trees_removed: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong with the store."""
        return not (self.corrupt or self.malformed or self.missing or self.errors)


def _unordered_map(fn, items: list, workers: int, batch: int = 256) -> Iterator:
    """``fn(chunk)`` over chunks of ``items`` on a thread pool, the chunks' results as they finish.

    Items go to the pool in batches (a future per small object cost more
    than hashing it), and at most a few batches per worker are queued, so a
    store of millions of objects does not hold millions of futures.
    """
    if workers == 1:
        # no pool: a second thread would only take turns with this one
        for index in range(0, len(items), batch):
            yield from fn(items[index : index + batch])
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = set()
        for index in range(0, len(items), batch):
            if len(pending) >= 4 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
            pending.add(pool.submit(fn, items[index : index + batch]))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


def _hash_small_objects(objects: str, stamps: str, precise: bool, hexdigests: list[str]) -> list[tuple]:
    """Rehashes a batch of objects that fit in one read; larger ones come back with digest ``LARGE``.

    One ``os.open``/``os.read`` per object and no ``Path`` nor file object:
    on many small objects the per-file Python work, not hashing, is what
    bounds verify. A right object's stamp is compared here too, by the same
    thread (one ``stat``, one ``readlink``). Result per object: ``(hex,
    actual hex or None or LARGE, size, error, stamp to record again)``.
    """
    from blake3 import blake3

    results = []
    append = results.append
    sep = os.sep
    buffer = small_file_buffer()
    view = memoryview(buffer)
    limit = len(buffer)
    for hexdigest in hexdigests:
        name = hexdigest[:2] + sep + hexdigest[2:]
        path = objects + sep + name
        try:
            st = os.lstat(path)  # for the stamp, and the size to read
            size = read_small_file(path, buffer, st.st_size) if st.st_size < limit else None
        except FileNotFoundError:
            append((hexdigest, None, 0, None, False))  # removed meanwhile (gc): nothing to check
            continue
        except OSError as exc:
            append((hexdigest, None, 0, exc, False))
            continue
        if size is None:
            append((hexdigest, _LARGE, 0, None, False))
            continue
        actual = blake3(view[:size]).hexdigest()
        append((hexdigest, actual, size, None, actual == hexdigest and _stamp_is_stale(st, stamps + sep + name, precise)))
    return results


def _stamp_is_stale(st: os.stat_result, stamp: str, precise: bool) -> bool:
    """Whether an object's stamp is missing or says something else than its ``stat`` (to be recorded again)."""
    try:
        recorded = os.readlink(stamp)
    except OSError:
        return True
    return not stamp_matches(recorded, st, precise)[0]


_LARGE = "large"


def verify(
    store: Store,
    *,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    digests: Iterable[str] | None = None,
) -> VerifyReport:
    """Rehashes every object (or the ``digests`` given); quarantines those that do not match their name.

    A corrupt object is moved to ``quarantine/<hex>`` with a ``<hex>.json``
    note (expected and actual digest, size, date), never deleted. Every
    materialized tree holding a corrupt object is removed (its files are hard
    links to the same damaged inode) so that the next prepare rebuilds it.
    Tree objects named by ``trees/`` and manifests named by ``views/`` must
    also parse; one that does not but whose hash matches is reported as
    ``malformed`` (the hash is the truth: it is not quarantined). An object
    whose bytes are right but whose stamp (what the on-use check compares a
    ``stat`` with) says otherwise is stamped again.

    Small objects are read and hashed in batches by ``jobs`` threads; large
    ones afterwards, one at a time, mapped into memory and hashed by blake3
    on every core (as ``b3sum`` does).

    :param jobs: threads reading small objects (default: one on a local file
        system, where threads only slow each other down on small files, as
        measured; four per CPU on a network file system, where each read
        waits on the server)
    :param progress: called as ``progress(objects_done, objects_total)``
        after each object
    :param digests: only these objects (``sync --verify full``: a project's
        data); absent ones are skipped, and only the trees holding a corrupt
        one are looked at
    """
    start = time.monotonic()
    report = VerifyReport()
    objects = os.fspath(store.layout.objects)
    whole = digests is None
    hexdigests = store.objects.hexdigests() if whole else [hex_of(d) for d in dict.fromkeys(digests)]
    total = len(hexdigests)

    def check(digest: str):
        path = store.objects.path_of(digest)
        try:
            size = os.lstat(path).st_size
            return digest, digest_of_file(path), size, None
        except FileNotFoundError:
            return digest, None, 0, None  # removed meanwhile (gc): nothing to check
        except OSError as exc:
            return digest, None, 0, exc

    def check_large(hexdigest: str):
        """Like a small object's result in :func:`_hash_small_objects`, hashed from a mapping on every core."""
        name = hexdigest[:2] + os.sep + hexdigest[2:]
        try:
            st = os.stat(objects + os.sep + name)
            actual = hex_of(digest_of_mapped_file(objects + os.sep + name))
        except FileNotFoundError:
            return hexdigest, None, 0, None, False
        except OSError as exc:
            return hexdigest, None, 0, exc, False
        return hexdigest, actual, st.st_size, None, actual == hexdigest and _stamp_is_stale(st, stamps + os.sep + name, precise)

    mismatched = []
    stale = []  # right objects whose stamp is missing or says otherwise
    large = []
    done = 0

    def count(hexdigest: str, actual: str | None, size: int, error: OSError | None, restamp: bool) -> None:
        nonlocal done
        done += 1
        if error is not None:
            report.errors.append(f"{format_digest(hexdigest)}: {error}")
        elif actual is not None:
            report.checked += 1
            report.bytes += size
            if actual != hexdigest:
                mismatched.append(format_digest(hexdigest))
            elif restamp:
                stale.append(format_digest(hexdigest))
        if progress is not None:
            progress(done, total)

    workers = jobs or (1 if store.layout.local else 4 * (os.cpu_count() or 1))
    stamps, precise = os.fspath(store.layout.stamps), store.layout.precise_stat
    for hexdigest, actual, size, error, restamp in _unordered_map(partial(_hash_small_objects, objects, stamps, precise), hexdigests, workers):
        if actual is _LARGE:
            large.append(hexdigest)
        else:
            count(hexdigest, actual, size, error, restamp)
    for hexdigest in large:
        count(*check_large(hexdigest))
    _restamp(store, stale)

    if mismatched:
        # gc must not run while objects move to quarantine and trees go
        with store.lock(GC_LOCK, what="moving corrupt objects to quarantine"):
            for digest in mismatched:
                # hash again under the lock: gc may have deleted the object and a
                # prepare stored a good copy since
                _, actual, size, _ = check(digest)
                if actual is None or actual == digest:
                    continue
                try:
                    target = quarantine_object(store.layout, digest, actual, size)
                except PermissionError:
                    # another member's object in a sticky folder: reported, left for its owner
                    with contextlib.suppress(OSError):
                        owner = owner_name(os.lstat(store.objects.path_of(digest)).st_uid)
                        report.corrupt.append(CorruptObject(digest, actual, None, owner))
                    continue
                if target is not None:
                    report.corrupt.append(CorruptObject(digest, actual, target))
    corrupt = {c.digest for c in report.corrupt}
    if whole or corrupt:
        _check_trees(store, corrupt, report)
    if whole:
        _check_manifests(store, corrupt, report)
    report.seconds = time.monotonic() - start
    return report


def _restamp(store: Store, digests: list[str]) -> None:
    """Stamps again rehashed, right objects whose stamp was found missing or saying otherwise (a ``touch``, a restore)."""
    precise = store.layout.precise_stat
    for digest in digests:
        with contextlib.suppress(OSError):
            st = os.lstat(store.objects.path_of(digest))
            recorded = read_stamp(store.layout, digest)
            if recorded is None or not stamp_matches(recorded, st, precise)[0]:
                # the on-use check compares with this stat from now on
                record_stamp(store.layout, digest, st, replace=True)


def _report_unreadable(store: Store, digest: str, report: VerifyReport) -> None:
    """Files a tree or manifest object that did not parse as missing or malformed."""
    (report.malformed if store.objects.has(digest) else report.missing).append(digest)


def _check_trees(store: Store, corrupt: set[str], report: VerifyReport) -> None:
    """Removes materialized trees that hold a corrupt object; checks the others parse."""
    for digest, path in _tree_folders(store):
        if not is_digest(digest):
            continue
        # a tree whose own object is corrupt cannot be trusted either
        damaged = digest in corrupt
        if not damaged:
            try:
                damaged = not corrupt.isdisjoint(set(store.trees.iter_object_digests(digest)))
            except (StoreError, UntrustedInputError):
                _report_unreadable(store, digest, report)
                continue
        if damaged:
            with store.lock(GC_LOCK, what="removing damaged trees"):
                if _remove_folder(path, report.errors):
                    report.trees_removed.append(digest)


def _check_manifests(store: Store, corrupt: set[str], report: VerifyReport) -> None:
    """Checks that the manifest of every view parses."""
    for digest, _ in _view_folders(store):
        if not is_digest(digest) or digest in corrupt:
            continue
        try:
            store.views.read_manifest(digest)
        except StoreError:
            _report_unreadable(store, digest, report)


# -- gc


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


def _mine(store: Store, path: Path, report: "GcReport | ReleaseReport") -> bool:
    """True when this process may remove ``path``; else counts it in ``left_to_owner`` (a group store's member)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if store.layout.may_remove(st):
        return True
    report.left_to_owner += 1
    return False


def _collectable(path: Path, now: float, grace: float, report: GcReport, store: Store | None = None) -> bool:
    """True when an unreachable entry is old enough to go (counts the young ones) and this process may remove it."""
    age = _age(path, now)
    if age is None:
        return False
    if age < grace:
        report.kept_young += 1
        return False
    return store is None or _mine(store, path, report)


def _sweep_folders(store: Store, folders, live: set[str], deleted: list[str], now: float, grace: float, report: GcReport) -> None:
    """Removes the unreachable, old enough folders among ``(digest, folder)`` pairs."""
    for digest, path in folders:
        # a name that is no digest is nothing gc understands: leave it alone
        if not is_digest(digest) or digest in live or not _collectable(path, now, grace, report, store):
            continue
        if report.dry_run or _remove_folder(path, report.errors):
            deleted.append(digest)


def _sweep_objects(store: Store, reach: _Reach, now: float, grace: float, report: GcReport) -> None:
    for hexdigest, entry in list(_fanout(store.layout.objects)):
        digest = format_digest(hexdigest)
        path = Path(entry.path)
        if not is_digest(digest) or digest in reach.objects or not _collectable(path, now, grace, report, store):
            continue
        try:
            size = os.lstat(path).st_size
            if not report.dry_run:
                path.unlink()
                with contextlib.suppress(OSError):
                    store.layout.stamp_path(digest).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.errors.append(f"{path}: {exc}")
            continue
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
    """Deletes the stamps of objects that are gone (an older datamaestro's gc, a removal by hand)."""
    if report.dry_run:
        return
    for hexdigest, entry in list(_fanout(store.layout.stamps)):
        if entry.name.startswith(".") or store.objects.has(format_digest(hexdigest)):
            continue
        with contextlib.suppress(OSError):
            if store.layout.may_remove(entry.stat(follow_symlinks=False)):
                os.unlink(entry.path)


# -- what keeps an entry alive, and freeing one dataset


@dataclass
class Keeper:
    """A root that keeps an entry of the store alive.

    :param root: the root
    :param via: how: the dataset folders (relative to ``<data dir>/data``) of a
        data root that lead to it, or the manifests of a lock root (or of a
        root of another machine) that hold it
    """

    root: Root
    via: list[str] = field(default_factory=list)


def keepers(store: Store, digest: str) -> list[Keeper]:
    """The roots that keep ``digest`` (an object, a tree or a manifest) alive, and through what.

    A root of this machine whose path is gone keeps nothing (the next gc drops it).
    """
    resolver = _Resolver(store)
    found = []
    for root in store.roots():
        via = []
        if root.kind == "data" and not root.elsewhere:
            data = root.path / "data"
            if not data.is_dir():
                continue
            for link, kind, manifest in resolver.links(data):
                if kind == "view" and link.name == VIEW_LINK:
                    reach = _Reach()
                    resolver.mark(kind, manifest, reach)
                    if digest in reach.objects or digest in reach.views:
                        via.append(str(link.parent.relative_to(data)))
        else:
            if root.kind == "lock" and not root.elsewhere and not root.path.exists():
                continue
            for manifest in dict.fromkeys((*root.manifests, *root.published)):
                reach = _Reach()
                resolver.mark("view", manifest, reach)
                if digest in reach.objects or digest in reach.views:
                    via.append(manifest)
        if via:
            found.append(Keeper(root, sorted(via)))
    return found


@dataclass
class ReleaseReport:
    """What :func:`release` freed (with ``dry_run``: would free).

    :param manifest: the manifest released
    :param objects_deleted: digests of the objects no root reaches any more
    :param bytes_deleted: their total size
    :param trees_deleted: materialized trees deleted
    :param views_deleted: views deleted
    :param kept: the roots that still keep the manifest (then nothing of it is freed)
    :param kept_objects: objects of the dataset kept because something else uses them
    :param errors: entries that could not be deleted (``path: error``)
    :param left_to_owner: entries of other members, left alone (a group
        store: only the store's owner, or root, collects them; as gc does)
    """

    manifest: str
    dry_run: bool
    objects_deleted: list[str] = field(default_factory=list)
    bytes_deleted: int = 0
    trees_deleted: list[str] = field(default_factory=list)
    views_deleted: list[str] = field(default_factory=list)
    kept: list[Keeper] = field(default_factory=list)
    kept_objects: int = 0
    errors: list[str] = field(default_factory=list)
    left_to_owner: int = 0


def release(
    store: Store, manifest: str, *, folder: Path, data_dir: Path, dry_run: bool = False, lock_timeout: float = 3600
) -> ReleaseReport:
    """Frees what only one readable folder kept alive: the reachability of :func:`gc`, for one manifest.

    The caller removes (or, in a dry run, will not remove) ``folder``, whose
    own links are ignored; its data dir's marker of the manifest goes too.
    Then the manifest's view, trees and objects that no live root reaches are
    deleted, under the store lock ``gc``, whatever their age: they belong to
    a dataset the user removed. While a process (of any machine) holds a
    lease, nothing is freed: it may be about to use them.

    :param folder: the dataset's readable folder
    :param data_dir: its data dir (whose root's marker of ``manifest`` is removed)
    """
    report = ReleaseReport(manifest=manifest, dry_run=dry_run)
    guard = contextlib.nullcontext() if dry_run else store.lock(GC_LOCK, timeout=lock_timeout, what="freeing a removed dataset")
    with guard:
        if not dry_run:
            absolute = Path(data_dir).absolute()
            for root in store.roots():
                if root.kind == "data" and not root.elsewhere and root.path == absolute:
                    (root.markers / hex_of(manifest)).unlink(missing_ok=True)
        now = filesystem_now(store.layout)
        live = _live(store, GcReport(dry_run=True), float("inf"), now, ignore=Path(folder))
        own = _Reach()
        _Resolver(store).mark("view", manifest, own)
        if manifest in live.views:
            # in a dry run the folder is still there: it is not what keeps the data
            own_via = str(Path(folder).relative_to(Path(data_dir) / "data"))
            for keeper in keepers(store, manifest):
                if keeper.root.kind == "data" and not keeper.root.elsewhere and keeper.root.path == Path(data_dir).absolute():
                    keeper.via = [via for via in keeper.via if via != own_via]
                if keeper.via:
                    report.kept.append(keeper)
            return report
        if any(not lease.mine for lease in live_leases(store.layout, store.lease_ttl)):
            report.errors.append("another process holds a store lease (it may be using this data): nothing freed; run `datamaestro store gc` later")
            return report
        views = store.views.path_of(manifest)
        # another member's entries (a group store) are left to the store's owner, as gc leaves them
        if views.is_dir() and _mine(store, views, report):
            if dry_run or _remove_folder(views, report.errors):
                report.views_deleted.append(manifest)
        for digest, path in _tree_folders(store):
            if digest in own.trees and digest not in live.trees and _mine(store, path, report):
                if dry_run or _remove_folder(path, report.errors):
                    report.trees_deleted.append(digest)
        for digest in sorted(own.objects):
            if digest in live.objects:
                report.kept_objects += 1
                continue
            path = store.objects.path_of(digest)
            if os.path.lexists(path) and not _mine(store, path, report):
                continue
            try:
                size = os.lstat(path).st_size
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.errors.append(f"{path}: {exc}")
                continue
            report.objects_deleted.append(digest)
            report.bytes_deleted += size
    return report


# -- disk usage


@dataclass
class DatasetUsage:
    """The disk usage of one dataset folder (a readable path).

    :param data_dir: the data dir holding the dataset folder
    :param path: the dataset folder, relative to ``<data dir>/data``
    :param manifest: the manifest digest of the view it shows
    :param objects: number of distinct objects it uses (manifest and tree objects included)
    :param bytes: their total size
    :param unique_bytes: the part of ``bytes`` no other listed path uses
    """

    data_dir: Path
    path: Path
    manifest: str
    objects: int
    bytes: int
    unique_bytes: int


@dataclass
class DiskUsage:
    """The result of :func:`disk_usage`.

    :param datasets: one entry per readable path, sorted by data dir and path
    :param total_bytes: bytes used by all of them, shared objects counted once
    :param objects: distinct objects used by all of them
    """

    datasets: list[DatasetUsage]
    total_bytes: int
    objects: int


def disk_usage(store: Store, data_dirs: list[Path] | None = None) -> DiskUsage:
    """How much of the store each readable path uses.

    :param data_dirs: data dirs to scan (default: the registered data roots
        that still exist); every folder below ``<data dir>/data`` whose
        ``.view`` link leads into this store's views is a dataset
    """
    resolver = _Resolver(store)
    found = []
    for data_dir in _data_dirs(store, data_dirs):
        data = Path(data_dir) / "data"
        for link, kind, manifest in resolver.links(data):
            # a dataset folder shows its view through a `.view` link; resource
            # entries and in-flight `.view.<random>` links are not datasets
            if kind != "view" or link.name != VIEW_LINK:
                continue
            reach = _Reach()
            resolver.mark(kind, manifest, reach)
            found.append((Path(data_dir), link.parent.relative_to(data), manifest, reach.objects))

    users: dict[str, int] = {}
    for *_, objects in found:
        for digest in objects:
            users[digest] = users.get(digest, 0) + 1
    sizes = {digest: _size(store, digest) for digest in users}
    datasets = [
        DatasetUsage(
            data_dir=data_dir,
            path=path,
            manifest=manifest,
            objects=len(objects),
            bytes=sum(sizes[d] for d in objects),
            unique_bytes=sum(sizes[d] for d in objects if users[d] == 1),
        )
        for data_dir, path, manifest, objects in found
    ]
    return DiskUsage(datasets=datasets, total_bytes=sum(sizes.values()), objects=len(sizes))


def _size(store: Store, digest: str) -> int:
    try:
        return os.lstat(store.objects.path_of(digest)).st_size
    except FileNotFoundError:
        return 0


# -- init


def init_store(root: Path, *, group: str | None = None) -> Store:
    """Creates a store, or upgrades an existing one in place (idempotent).

    The store is created by :func:`~datamaestro.store.create_store`, as
    :class:`Store` does (safe when other processes create it at once), with
    every folder of the layout; an existing store gets the folders it lacks.

    With ``group``, the store is set up for a Unix group so that its members
    can use and extend it, and none can alter what another member reads:
    the ``SHARED`` marker names the group, every folder is given to the
    group with mode ``0o3775`` (setgid: new entries inherit the group;
    sticky: a member adds entries but never renames, replaces or removes
    another member's), the fan-out folders are made now (so that the
    store's owner owns them), lock files become group-writable, the lease
    folder stays non-sticky (``0o2775``: a dead member's lease must be
    breakable). Objects stay ``0o444``, materialized trees and views
    read-only (``0o2555``), records and notes read-only for the group. An
    existing group store is upgraded to these modes. Without ``group`` an
    existing group store stays shared.

    :raises StoreError: on an unknown group, or an entry that cannot be
        given to the group (owned by another user)
    """
    root = Path(root)
    gid = group_id(group) if group is not None else None
    # a new store is shared from the start: SHARED is written before VERSION
    create_store(root, group=group)
    store = Store(root)
    try:
        make_folders(store.layout)
    except OSError as exc:
        raise disk_error(exc, f"creating the folders of the store {root}") from None
    if group is None:
        return store
    marker = root / SHARED_FILE
    if not marker.is_file() or marker.read_text().strip() != group:
        replace_store_file(store.layout, SHARED_FILE, group + "\n")
    store = Store(root)
    try:
        make_folders(store.layout)  # a group store's fan-out folders, owned by the store's owner
    except OSError as exc:
        raise disk_error(exc, f"creating the folders of the store {root}") from None
    _share(root, gid, group)
    return Store(root)


def _share(root: Path, gid: int, group: str) -> None:
    """Gives every folder and file of a store to ``gid`` with group-store modes."""
    for dirpath, dirnames, filenames in os.walk(root):
        relative = Path(dirpath).relative_to(root).parts
        # a materialized tree (trees/ab/cdef.../...) and a view (views/<hex>/...) must stay read-only
        frozen = (len(relative) >= 3 and relative[0] == "trees") or (len(relative) >= 2 and relative[0] == "views")
        if frozen:
            mode = 0o2555
        elif relative[:1] == ("leases",):
            mode = SHARED_LEASE_DIR_MODE  # a dead member's lease must be breakable by the others
        else:
            mode = SHARED_DIR_MODE
        _share_entry(Path(dirpath), gid, group, mode)
        if relative[:1] == ("tmp",) or (relative[:1] == ("leases",) and len(relative) > 1):
            dirnames[:] = []  # in-flight writes and live leases belong to their holders
            continue
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            if relative[:1] in (("objects",), ("trees",), ("quarantine",)):
                mode = None  # immutable content keeps its read-only mode
            elif relative[:1] == ("locks",) and name.endswith(".lock"):
                mode = 0o666  # as store_lock creates them in a group store
            else:
                # records, roots, notes: readable by the group, never rewritten in place by a member
                try:
                    mode = (stat.S_IMODE(os.lstat(path).st_mode) | 0o044) & ~0o022
                except FileNotFoundError:
                    continue
            _share_entry(path, gid, group, mode)


def _share_entry(path: Path, gid: int, group: str, mode: int | None) -> None:
    """chgrp then chmod (chgrp may clear the setgid bit), only where they differ.

    An entry removed meanwhile (a holder note, a tmp file: the store may be in
    use, or still being created by another process) needs nothing.
    """
    # through a descriptor opened without following a link: a member may have
    # put a link in place of its own entry since it was listed, and root (who
    # runs this) must not change the file it points to
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
            return  # a link, a socket: nothing of the store to give
        if not isinstance(exc, PermissionError):
            raise
        raise StoreError(
            f"cannot give {path} to group {group}: {exc.strerror}",
            hint="run `datamaestro store init --group` as the owner of the store's files (or as root)",
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_gid != gid:
            os.fchown(fd, -1, gid)
        if mode is not None and (st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode):
            os.fchmod(fd, mode)
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise StoreError(
            f"cannot give {path} to group {group}: {exc.strerror}",
            hint="run `datamaestro store init --group` as the owner of the store's files (or as root)",
        ) from None
    finally:
        os.close(fd)
