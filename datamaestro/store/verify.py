"""``datamaestro store verify``: every object rehashed, trees and manifests checked, the corrupt quarantined (:func:`verify`)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import StoreError, UntrustedInputError
from . import Store
from .digests import digest_of_file, digest_of_mapped_file, format_digest, hex_of, is_digest, read_small_file, small_file_buffer
from .gc import GC_LOCK
from .integrity import owner_name, quarantine_object
from .stamps import read_stamp, record_stamp, stamp_matches
from .walk import _object_batches, _remove_folder, _tree_folders, _view_folders

#: objects per batch handed to a thread (a future per small object costs more than hashing it)
_BATCH = 256
#: right objects whose stamp is to be recorded again, kept before they are stamped (memory stays bounded)
_RESTAMP_BATCH = 4096


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


def _unordered_map(fn, batches: Iterable[list], workers: int) -> Iterator:
    """``fn(batch)`` over the batches on a thread pool, the batches' results as they finish.

    Items go to the pool in batches (a future per small object cost more
    than hashing it), and at most a few batches per worker are queued, so a
    store of millions of objects does not hold millions of futures; the
    batches are taken from their iterator only as the pool needs them.
    """
    if workers == 1:
        # no pool: a second thread would only take turns with this one
        for batch in batches:
            yield from fn(batch)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = set()
        for batch in batches:
            if len(pending) >= 4 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
            pending.add(pool.submit(fn, batch))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


def _slices(items: list, size: int = _BATCH) -> Iterator[list]:
    """``items`` in lists of at most ``size``."""
    for index in range(0, len(items), size):
        yield items[index : index + size]


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

    The store is listed one fan-out folder at a time as the work goes, and
    stamps are recorded again in batches: memory does not grow with the
    number of objects (a million-object store is never held as a list).
    Small objects are read and hashed in batches by ``jobs`` threads; large
    ones (1 MiB or more: few) afterwards, one at a time, mapped into memory
    and hashed by blake3 on every core (as ``b3sum`` does).

    :param jobs: threads reading small objects (default: one on a local file
        system, where threads only slow each other down on small files, as
        measured; four per CPU on a network file system, where each read
        waits on the server)
    :param progress: called as ``progress(objects_done, objects_total)``
        after each object (of the whole store, the total is counted by a
        listing before the work starts: objects added or removed meanwhile
        make it approximate)
    :param digests: only these objects (``sync --verify full``: a project's
        data); absent ones are skipped, and only the trees holding a corrupt
        one are looked at
    """
    start = time.monotonic()
    report = VerifyReport()
    objects = os.fspath(store.layout.objects)
    whole = digests is None
    if whole:
        # listed one fan-out folder at a time, as the hashing goes: a store of a
        # million objects is never held as a list of names
        batches = _object_batches(objects, _BATCH)
        # counted beforehand only for a progress report (one more listing, no name kept)
        total = sum(map(len, _object_batches(objects, sys.maxsize))) if progress is not None else 0
    else:
        chosen = list(dict.fromkeys(map(hex_of, digests)))
        batches, total = _slices(chosen), len(chosen)

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
    for hexdigest, actual, size, error, restamp in _unordered_map(partial(_hash_small_objects, objects, stamps, precise), batches, workers):
        if actual is _LARGE:
            large.append(hexdigest)  # 1 MiB or more each: few, whatever the store's size
        else:
            count(hexdigest, actual, size, error, restamp)
            if len(stale) >= _RESTAMP_BATCH:
                _restamp(store, stale)
                stale.clear()
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
                # isdisjoint reads the whole document when nothing is corrupt (which checks that it parses), without a set of it
                damaged = not corrupt.isdisjoint(store.trees.iter_object_digests(digest))
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
