"""``datamaestro store verify``: every object rehashed, trees and manifests checked, the corrupt quarantined (:func:`verify`)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import StoreError, UntrustedInputError
from . import Store
from .digests import SMALL_FILE, digest_of_file, digest_of_mapped_file, format_digest, hex_of, is_digest, small_file_buffer
from .gc import GC_LOCK
from .integrity import owner_name, quarantine_object
from . import rehash
from .rehash import ERROR, LARGE, MISMATCH, NOT_A_DIGEST, NOT_A_FILE, STALE, check_folder, check_objects, entry_kind, parse_line, worker_command
from .stamps import read_stamp, record_stamp, stamp_matches
from .walk import _fan_folders, _object_batches, _remove_folder, _stray_entries, _tree_folders, _view_folders, not_an_object

logger = logging.getLogger(__name__)

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
    :param not_objects: entries of ``objects/`` that are not objects (a name
        that is not a digest, a directory, a symbolic link, a fifo, a file at
        the top of ``objects/``), one line each naming it whole (see
        :func:`~.walk.not_an_object`); left as they are, never opened
        through a link nor read from a fifo
    :param seconds: wall-clock duration
    """

    checked: int = 0
    bytes: int = 0
    corrupt: list[CorruptObject] = field(default_factory=list)
    trees_removed: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong with the store."""
        return not (self.corrupt or self.malformed or self.missing or self.errors or self.not_objects)


def _unordered_map(fn, batches: Iterable[list], workers: int) -> Iterator:
    """``fn(batch)`` over the batches on a thread pool, each batch's result as it finishes.

    Items go to the pool in batches (a future per small object cost more
    than hashing it), and at most a few batches per worker are queued, so a
    store of millions of objects does not hold millions of futures; the
    batches are taken from their iterator only as the pool needs them.
    """
    if workers == 1:
        # no pool: a second thread would only take turns with this one
        yield from map(fn, batches)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = set()
        for batch in batches:
            if len(pending) >= 4 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
            pending.add(pool.submit(fn, batch))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


def _slices(items: list, size: int = _BATCH) -> Iterator[list]:
    """``items`` in lists of at most ``size``."""
    for index in range(0, len(items), size):
        yield items[index : index + size]


def _hash_small_objects(objects: str, stamps: str, precise: bool, hexdigests: list[str]) -> tuple[int, int, int, list[tuple[str, str, str]]]:
    """:func:`~.rehash.check_objects` of a batch in this thread, into this thread's buffer."""
    return check_objects(objects, stamps, precise, hexdigests, small_file_buffer())


def _stamp_is_stale(st: os.stat_result, stamp: str, precise: bool) -> bool:
    """Whether an object's stamp is missing or says something else than its ``stat`` (to be recorded again)."""
    try:
        recorded = os.readlink(stamp)
    except OSError:
        return True
    return not stamp_matches(recorded, st, precise)[0]


def worker_processes(jobs: int | None) -> int:
    """Processes rehashing a whole store on a local disk: ``jobs``, else one per core this process may run on."""
    if jobs is not None:
        return jobs
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, _MAX_PROCESSES)


#: worker processes at most by default (each lists and reads its share of 256 fan-out folders)
_MAX_PROCESSES = 16


class _Workers:
    """Worker processes rehashing a store's fan-out folders (:func:`~.rehash.worker_main`), read as they go."""

    def __init__(self, objects: str, stamps: str, precise: bool, processes: int):
        fans = sorted(entry.name for entry in _fan_folders(objects))
        shares = [fans[index::processes] for index in range(processes)]
        self.objects, self.stamps, self.precise = objects, stamps, precise
        self.shares: dict[int, list[str]] = {}
        self.procs = []
        try:
            for share in shares:
                if share:
                    proc = subprocess.Popen(worker_command(objects, stamps, precise, SMALL_FILE + 1, share), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    self.procs.append(proc)
                    self.shares[proc.pid] = share
        except BaseException:
            self.stop()
            raise

    def results(self) -> Iterator[tuple[int, int, int, list[tuple[str, str, str]]]]:
        """Each fan-out folder's ``(names, checked, bytes, events)`` as a worker finishes it (see :func:`~.rehash.check_objects`).

        The folders of a worker that ended before it was done are rehashed
        by this process afterwards (with a warning): every object is still
        rehashed once.
        """
        import selectors

        selector = selectors.DefaultSelector()
        pending, errors, done = {}, {}, {}
        for proc in self.procs:
            for stream in (proc.stdout, proc.stderr):
                selector.register(stream, selectors.EVENT_READ, proc)
                pending[stream.fileno()] = b""
            errors[proc.pid], done[proc.pid] = b"", 0
        events: dict[int, list] = {proc.pid: [] for proc in self.procs}
        while selector.get_map():
            for key, _ in selector.select():
                proc, fd = key.data, key.fd
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.fileobj is proc.stderr:
                    errors[proc.pid] = (errors[proc.pid] + chunk)[-4000:]
                    continue
                *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
                for line in lines:
                    fields = parse_line(line.decode())
                    if fields[0] == "D":
                        done[proc.pid] += 1
                        yield int(fields[1]), int(fields[2]), int(fields[3]), events[proc.pid]
                        events[proc.pid] = []
                    else:
                        events[proc.pid].append(fields)
        selector.close()
        for proc in self.procs:
            code = proc.wait()
            if code != 0 or done[proc.pid] != len(self.shares[proc.pid]):
                # killed, out of memory, an interpreter that cannot run it: its folders not done are rehashed here
                message = errors[proc.pid].decode(errors="replace").strip().splitlines()
                logger.warning(
                    "a process rehashing objects ended (exit status %s) after %d of its %d folders%s: this process rehashes the others",
                    code, done[proc.pid], len(self.shares[proc.pid]), f" ({message[-1]})" if message else "",
                )
                yield from self._rehash_here(self.shares[proc.pid][done[proc.pid] :])

    def _rehash_here(self, fans: list[str]) -> Iterator[tuple[int, int, int, list[tuple[str, str, str]]]]:
        """What a worker would have found in ``fans``, rehashed in this process."""
        buffer = small_file_buffer()
        for fan in fans:
            yield check_folder(self.objects, self.stamps, self.precise, fan, buffer)

    def stop(self) -> None:
        """Ends the workers still running (an error or Ctrl-C in this process) and reaps them."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()


def _start_workers(store: Store, objects: str, stamps: str, precise: bool, processes: int) -> _Workers | None:
    """Worker processes for a whole local store, or None when they cannot be started (rehashed in this process then)."""
    if processes < 2 or not sys.executable or not os.path.isfile(rehash.__file__):  # not in a zip or a frozen build
        return None
    try:
        return _Workers(objects, stamps, precise, processes)
    except OSError:
        return None


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
    On a local disk, the whole store's small objects are rehashed by
    ``jobs`` worker processes (one per core by default), each taking its
    share of the fan-out folders, while this process parses the trees;
    elsewhere (a network file system, ``digests`` given, a ``progress``
    callback) by ``jobs`` threads of this process. Large objects (1 MiB or
    more: few) come afterwards, one at a time, mapped into memory and hashed
    by blake3 on every core (as ``b3sum`` does).

    :param jobs: on a local disk, processes rehashing the whole store
        (default: one per core; 1: this process alone), or threads reading
        small objects when ``digests`` or ``progress`` are given (default
        one: threads only slow each other down on small files, as
        measured); on a network file system, threads (default four per
        CPU, as each read waits on the server)
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
    stamps, precise = os.fspath(store.layout.stamps), store.layout.precise_stat
    whole = digests is None
    if whole:
        report.not_objects += [not_an_object("objects", name, "not a fan-out folder") for name in _stray_entries(objects)]
    local = store.layout.local
    mismatched = []
    stale = []  # right objects whose stamp is missing or says otherwise
    large = []
    done = 0
    total = 0

    def tally(result: tuple[int, int, int, list[tuple[str, str, str]]]) -> None:
        """Adds a batch's result (:func:`~.rehash.check_objects`) to the report."""
        nonlocal done
        names, checked, size, events = result
        report.checked += checked
        report.bytes += size
        deferred = 0
        for kind, hexdigest, detail in events:
            if kind in (NOT_A_FILE, NOT_A_DIGEST):
                # planted by someone else (a group member, a copy of a store): named, never taken for an object
                # (check_objects names every entry whose name is not an object's before anything else)
                report.not_objects.append(not_an_object("objects", hexdigest[:2] + os.sep + hexdigest[2:], detail))
            elif kind == MISMATCH:
                mismatched.append(format_digest(hexdigest))
            elif kind == STALE:
                stale.append(format_digest(hexdigest))
                if len(stale) >= _RESTAMP_BATCH:
                    _restamp(store, stale)
                    stale.clear()
            elif kind == LARGE:
                large.append(hexdigest)  # 1 MiB or more each: few, whatever the store's size
                deferred += 1
            else:
                report.errors.append(f"{format_digest(hexdigest)}: {detail}")
        if progress is None:
            done += names - deferred
            return
        for _ in range(names - deferred):
            done += 1
            progress(done, total)

    workers = _start_workers(store, objects, stamps, precise, worker_processes(jobs)) if whole and local and progress is None else None
    parsed: dict[str, bool] | None = None
    if workers is not None:
        try:
            # this process parses the trees while the workers rehash (on another core)
            parsed = _parse_trees(store)
            for result in workers.results():
                tally(result)
        finally:
            workers.stop()
    else:
        if whole:
            # listed one fan-out folder at a time, as the hashing goes: a store of a
            # million objects is never held as a list of names
            batches = _object_batches(objects, _BATCH)
            # counted beforehand only for a progress report (one more listing, no name kept)
            total = sum(map(len, _object_batches(objects, sys.maxsize))) if progress is not None else 0
        else:
            chosen = list(dict.fromkeys(map(hex_of, digests)))
            batches, total = _slices(chosen), len(chosen)
        threads = jobs or (1 if local else 4 * (os.cpu_count() or 1))
        for result in _unordered_map(partial(_hash_small_objects, objects, stamps, precise), batches, threads):
            tally(result)

    def check(digest: str):
        path = store.objects.path_of(digest)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                # swapped for a fifo or a link since it was read: never opened (a fifo would block), named instead
                report.not_objects.append(not_an_object("objects", digest[7:9] + os.sep + digest[9:], entry_kind(st.st_mode)))
                return digest, None, 0, None
            return digest, digest_of_file(path), st.st_size, None
        except FileNotFoundError:
            return digest, None, 0, None  # removed meanwhile (gc): nothing to check
        except OSError as exc:
            return digest, None, 0, exc

    def check_large(hexdigest: str) -> tuple[int, int, int, list[tuple[str, str, str]]]:
        """Like a batch's result in :func:`~.rehash.check_objects`, for one large object hashed from a mapping on every core."""
        name = hexdigest[:2] + os.sep + hexdigest[2:]
        try:
            st = os.lstat(objects + os.sep + name)
            if not stat.S_ISREG(st.st_mode):
                return 1, 0, 0, [(NOT_A_FILE, hexdigest, entry_kind(st.st_mode))]  # swapped since it was listed: never mapped
            actual = hex_of(digest_of_mapped_file(objects + os.sep + name))
        except FileNotFoundError:
            return 1, 0, 0, []
        except OSError as exc:
            return 1, 0, 0, [(ERROR, hexdigest, str(exc))]
        if actual != hexdigest:
            return 1, 1, st.st_size, [(MISMATCH, hexdigest, actual)]
        return 1, 1, st.st_size, [(STALE, hexdigest, "")] if _stamp_is_stale(st, stamps + os.sep + name, precise) else []

    for hexdigest in large:
        tally(check_large(hexdigest))
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
        _check_trees(store, corrupt, report, parsed)
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


def _parse_trees(store: Store) -> dict[str, bool]:
    """Whether each materialized tree's object parses, by digest (read while workers rehash the objects, see :func:`verify`)."""
    parsed = {}
    for digest, _ in _tree_folders(store):
        if is_digest(digest):
            try:
                for _ in store.trees.iter_object_digests(digest):
                    pass
                parsed[digest] = True
            except (StoreError, UntrustedInputError):
                parsed[digest] = False
    return parsed


def _check_trees(store: Store, corrupt: set[str], report: VerifyReport, parsed: dict[str, bool] | None = None) -> None:
    """Removes materialized trees that hold a corrupt object; checks the others parse.

    :param parsed: what :func:`_parse_trees` found, earlier in this run: a
        tree that parsed then is read again only when some object is
        corrupt (to look for it); one made since is read now
    """
    parsed = parsed or {}
    for digest, path in _tree_folders(store):
        if not is_digest(digest):
            continue
        # a tree whose own object is corrupt cannot be trusted either
        damaged = digest in corrupt
        if not damaged:
            if parsed.get(digest) is False:
                _report_unreadable(store, digest, report)
                continue
            if corrupt or digest not in parsed:
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
