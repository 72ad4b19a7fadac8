"""``datamaestro sync`` and ``datamaestro store export``: from pins to data.

``sync`` makes every dataset of the project's lock present in the store,
verified, and shown by its readable folder:

1. the lock is checked against the project (``locked``: fail when out of
   date; default: lock again what changed; ``frozen``: take it as is); an
   entry whose resources do not fit (a table lost, added, renamed) is
   refused in every mode;
2. what the store lacks is taken from the peers (``--from``), objects and
   whole derived trees alike, each checked against its digest, on a thread pool;
3. a dataset whose outputs are all present is published from the lock (its
   manifest's view, its readable folder): no definition is even imported;
4. the others run through the pipeline with their pins (downloads from the
   original URLs, checked before they enter the store);
5. the lock file is registered as a gc root with its manifests.

Publications (3, 4) are held back until every dataset succeeded
(:func:`~datamaestro.pipeline.publications_held`): a failed sync shows nothing.

A warm ``sync`` costs a few ``stat`` calls per dataset: objects are
immutable and named by their digest, so presence is proof.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import DatamaestroError, IntegrityError, LockFileError, StoreError
from ..lock.fileformat import read_lock
from ..lock.model import Lock, LockedDataset
from ..remotes import open_peers
from ..remotes.folder import FolderRemote
from ..remotes.pull import Transfer, pull_outputs, transfer
from .datasets import lock_file
from ..lock.fingerprint import DAMAGED_LOCK_HINT, entry_problem
from .resolve import damaged_entries, lock_project, stale_reasons
from ..store.actions import Kind
from ..store.layout import on_local_disk

if TYPE_CHECKING:
    from ..context import Context


def default_jobs(peers: Iterable = ()) -> int:
    """Threads for taking objects: a few per core, or one when every peer is a store folder on a local disk.

    Taking a small object from a local folder is a handful of system calls
    of a few microseconds each: threads only take turns holding the
    interpreter there (10,000 objects of 4 KiB: 3.1-3.7 s with one thread,
    4.1-4.4 s with eight; 100,000 objects linked by two threads within each
    window of a transfer: 15.0 s of CPU and 13.7 s against 11.9 s and 12.0 s
    with one, at load 1.3-2.6). A network peer or file system waits on each
    call, which threads hide.
    """
    peers = list(peers)
    if peers and all(isinstance(peer, FolderRemote) and on_local_disk(peer.root) for peer in peers):
        return 1
    return min(32, 4 * (os.cpu_count() or 1))


@dataclass
class SyncReport:
    """What ``sync`` did.

    :param lock: the lock file
    :param relocked: the lock was out of date and was written again first
    :param datasets: how each dataset was made present: ``present`` (nothing
        to do but its folder), ``from peers`` or ``produced`` (pipeline)
    :param transfer: what the peers gave and refused
    :param notes: peers skipped, and why
    :param verified: objects rehashed (``verify="full"``)
    :param damaged: those whose bytes no longer matched their name (quarantined, then taken again)
    :param seconds: wall-clock duration
    """

    lock: Path
    relocked: bool = False
    datasets: dict[str, str] = field(default_factory=dict)
    transfer: Transfer = field(default_factory=Transfer)
    notes: list[str] = field(default_factory=list)
    verified: int = 0
    damaged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _check_sizes(store, entry: LockedDataset) -> None:
    """Compares the sizes a lock records with the objects it pins, where they are the same bytes.

    A size is that of the bytes downloaded; a resource stored as downloaded
    (its output digest is its source digest) must be an object of that size.

    :raises IntegrityError: naming the resource, both sizes and what to do
    """
    for resource in entry.resources:
        if resource.size is None or resource.kind != Kind.FILE or resource.source_digest != resource.digest:
            continue
        try:
            actual = os.stat(store.objects.path_of(resource.digest)).st_size
        except FileNotFoundError:
            continue  # fetched or produced next, and checked then
        if actual != resource.size:
            raise IntegrityError(
                f"{entry.id}: resource {resource.name}: the lock records size {resource.size}, "
                f"but its pinned bytes {resource.digest} are {actual} bytes",
                hint=f"the lock file was edited by hand: restore it, or run `datamaestro lock --upgrade {entry.id}`",
            )


def _verify_present(store, entries: list[LockedDataset], jobs: int | None, report: "SyncReport") -> None:
    """Rehashes every object of the locked datasets the store holds (``sync --verify full``).

    A damaged object is quarantined (as ``store verify`` does), hence taken
    again from a peer or its source by the rest of the sync.
    """
    from ..store.verify import verify

    digests = []
    for entry in entries:
        digests.append(entry.manifest)
        for output in entry.outputs():
            if output.kind == Kind.TREE:
                digests.append(output.digest)
                if store.objects.has(output.digest):
                    digests.extend(store.trees.iter_object_digests(output.digest))
            elif output.kind == Kind.FILE:
                digests.append(output.digest)
    found = verify(store, jobs=jobs, digests=digests)
    report.verified = found.checked
    report.damaged = [corrupt.digest for corrupt in found.corrupt]
    report.notes.extend(f"damaged object {c.digest} (its bytes hash to {c.actual}): moved to {c.quarantined}, taken again" for c in found.corrupt)
    if found.errors:
        raise StoreError(f"cannot rehash the project's data: {found.errors[0]}", hint="check the store's permissions and disk, then run `datamaestro store verify`")


def _entries_to_publish(context: "Context", entry: LockedDataset) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The readable folder of a present dataset and the entries of its view, taken from the lock (no definition)."""
    return context.readable_path(entry.repository, entry.id), entry.entries()


def _damage(entry: LockedDataset, definition=None) -> list[str]:
    """``["<id>: <what is wrong>"]`` when an entry's resources do not fit (its manifest; its definition when given), else ``[]``."""
    problem = entry_problem(entry, definition)
    return [f"{entry.id}: {problem}"] if problem is not None else []


def _refuse_damaged(path: Path, damaged: list[str]) -> None:
    """Raises the error of lock entries cut or edited (see :func:`~datamaestro.lock.fingerprint.entry_problem`)."""
    if damaged:
        raise LockFileError(f"{path}: {'; '.join(damaged)}", hint=DAMAGED_LOCK_HINT)


def _check_frozen(context: "Context", path: Path, lock: Lock) -> None:
    """Refuses entries whose resources do not make the manifest they pin, without importing definitions.

    The definition of a damaged entry is imported only to name the entry
    (when its plugin is installed).
    """
    damaged = []
    for dataset_id, entry in sorted(lock.datasets.items()):
        found = _damage(entry)
        if found:
            try:
                found = _damage(entry, context.dataset(dataset_id)) or found
            except DatamaestroError:
                pass  # its plugin is not installed: the manifest says enough
        damaged.extend(found)
    _refuse_damaged(path, damaged)


def _load(context: "Context", *, locked: bool, frozen: bool, report: SyncReport) -> Lock:
    """The lock to sync, checked (or written again) as the mode asks.

    Entries cut or edited (a resource's table lost, added or renamed) are
    refused in every mode, before anything is downloaded: locking again
    would hide that the committed file is damaged.
    """
    path = lock_file(context)
    if frozen:
        lock = read_lock(path)
        _check_frozen(context, path, lock)
        return lock
    lock = read_lock(path) if path.exists() else None
    reasons = stale_reasons(context, lock)
    if reasons:
        if lock is not None:
            _refuse_damaged(path, damaged_entries(context, lock))
        if locked:
            raise LockFileError(f"{path} is out of date: {'; '.join(reasons)}", hint="run `datamaestro lock` and commit the lock file")
        lock = lock_project(context).lock
        report.relocked = True
    return lock


def sync_project(
    context: "Context",
    *,
    locked: bool = False,
    frozen: bool = False,
    peers: Iterable[str] = (),
    jobs: int | None = None,
    copy: bool = False,
    verify: str = "trust",
) -> SyncReport:
    """Makes every dataset of the project's lock present and its readable folder show it.

    :param locked: fail when the lock is out of date with the project
    :param frozen: use the lock as it is: no check against the project and
        its definitions; a definition is imported only for a dataset that
        neither the store nor the peers hold
    :param peers: folders, ``http(s)://`` or ``s3://`` URLs of stores to take
        objects from first (then the settings' remote caches)
    :param jobs: threads copying objects (default: :func:`default_jobs` of the peers)
    :param copy: copy the objects of store folders; by default they are
        hard-linked when the folder is on the same file system and owned by
        this user, so both stores share those files (fast, no extra space,
        but damage to one file shows in both stores)
    :param verify: ``"trust"``: an object present is what its name says;
        ``"full"``: rehash every object of the locked datasets first
        (a damaged one is quarantined and taken again)
    :raises UsageError: an unknown ``verify`` mode
    :raises LockFileError: no lock, a malformed lock, or (``locked``) an out-of-date one
    :raises IntegrityError: downloaded data differs from its pins
    :raises OfflineError: offline, and data is missing from the store and the peers
    """
    if verify not in ("trust", "full"):
        from ..errors import UsageError

        raise UsageError(f"--verify must be 'trust' or 'full', not {verify!r}", hint="`datamaestro sync --verify full` rehashes the project's data")
    start = time.monotonic()
    report = SyncReport(lock=lock_file(context))
    # before the lock is read (and maybe resolved again, downloading), so that a bad --from fails at once;
    # the notes say which peers are skipped, and why
    opened, report.notes = open_peers(
        peers, context.new_remote_fetcher, offline=context.settings.offline, timeouts=(context.settings.connect_timeout, context.settings.read_timeout), link=not copy
    )
    from ..pipeline import publications_held

    try:
        # every dataset is shown (view, readable folder) only once all are present and checked,
        # those locked again on the way too: a failed sync leaves the readable folders as they were
        with publications_held(jobs=jobs or default_jobs(opened)):
            lock = _load(context, locked=locked, frozen=frozen, report=report)
            _sync(context, lock, opened, report, jobs=jobs, copy=copy, verify=verify)
    except DatamaestroError as error:
        # a skipped peer, or a document a peer served and that was refused, may be what the failure lacks: say so where the user looks
        notes = report.notes + report.transfer.refused
        if notes:
            error.hint = "; ".join(notes + ([error.hint] if error.hint else []))
        raise
    report.seconds = time.monotonic() - start
    return report


def _sync(context: "Context", lock: Lock, opened: list, report: SyncReport, *, jobs: int | None, copy: bool, verify: str) -> None:
    """The work of :func:`sync_project` once the lock and the peers are open (filling ``report``)."""
    from ..pipeline import publish_dataset

    store = context.store
    # registered first: what this sync brings is kept from the start
    store.register_lock_root(report.lock, lock.manifests())
    # then the remote caches of the settings, as a prepare asks them
    remotes = context.remotes()
    if copy:
        remotes = [_copying(p) if isinstance(p, FolderRemote) else p for p in remotes]
    opened = opened + remotes
    opened = [p for p in opened if not (isinstance(p, FolderRemote) and _same_folder(p.root, store.root))]
    verify_jobs = jobs  # None: verify chooses for the store's file system
    jobs = jobs or default_jobs(opened)
    entries = [lock.datasets[dataset_id] for dataset_id in sorted(lock.datasets)]
    # objects changed since they were stored go to quarantine here, and are taken again below
    changed = store.compare_stamps([o for entry in entries for o in entry.outputs() if o.kind.stored and store.output_present(o)])
    if verify == "full":
        _verify_present(store, entries, verify_jobs, report)
        # the check on use found these damaged a moment before the rehash: counted with what it finds
        moved = [found.digest for found in changed if found.quarantined is not None]
        report.verified += len(moved)
        report.damaged = moved + report.damaged
    before = {entry.id: all(store.output_present(o) for o in entry.outputs()) for entry in entries}
    outputs = list({(o.kind, o.digest): o for entry in entries for o in entry.outputs()}.values())
    report.transfer = pull_outputs(store, outputs, opened, jobs)

    ready = [entry for entry in entries if all(store.output_present(o) for o in entry.outputs())]
    for entry in ready:
        # checked when the lock was loaded; again here, as no definition checks these before they are shown
        _refuse_damaged(report.lock, _damage(entry))
        _check_sizes(store, entry)
    complete = {entry.id for entry in ready}
    errors: list[DatamaestroError] = []
    for entry in ready:
        # held back (see sync_project) until every dataset is present
        publish_dataset(store, context.settings, *_entries_to_publish(context, entry))
    pending = []
    for entry in entries:
        if entry.id not in complete:
            try:
                pending.append((entry, context.dataset(entry.id)))
            except DatamaestroError as error:
                errors.append(error)
    # --frozen imports the definitions only here: the entries must fit them before anything is downloaded
    _refuse_damaged(report.lock, [damage for entry, definition in pending for damage in _damage(entry, definition)])
    with context.using_lock(report.lock):
        for entry, definition in pending:
            try:
                context.prepare(context.request_of(definition, entry_id=entry.id, locked=entry))
                report.datasets[entry.id] = "produced"
            except DatamaestroError as error:
                errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DatamaestroError(
            f"{len(errors)} datasets could not be synced:\n" + "\n".join(f"  - {e.message}" for e in errors),
            hint=errors[0].hint,
        )
    for entry in ready:
        report.datasets[entry.id] = "present" if before[entry.id] else "from peers"
    store.register_lock_root(report.lock, lock.manifests())


def _copying(peer: FolderRemote) -> FolderRemote:
    """The same folder remote, copying its objects instead of linking them (the context's remote is left as it is)."""
    copying = FolderRemote(peer.root, link=False)
    copying.label = peer.label
    return copying


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class ExportReport:
    """What ``store export`` did.

    :param folder: the export (a store of its own)
    :param objects: objects the lock needs
    :param copied: objects copied (the others were there already)
    :param bytes: bytes copied
    """

    folder: Path
    objects: int = 0
    copied: int = 0
    bytes: int = 0


def export_lock(context: "Context", lock_path: Path, folder: Path, *, jobs: int | None = None) -> ExportReport:
    """Copies exactly the objects a lock needs into ``folder``, laid out as a store.

    The folder can then be carried to another machine and given to
    ``sync --from``, or used as a store. Manifests come along when the
    store has them; every byte is hashed on the way.

    :raises StoreError: the store lacks some of the lock's data (sync first)
    """
    from ..store import Store

    lock = read_lock(lock_path)
    store = context.store
    target = Store(Path(folder), create=True)
    outputs = [o for entry in lock.datasets.values() for o in entry.outputs()]
    absent = [o.digest for o in outputs if not (store.objects.has(o.digest))]
    if absent:
        raise StoreError(
            f"the store lacks {len(absent)} object(s) of {lock_path} (first: {absent[0]})",
            hint="run `datamaestro sync` first, so that the store holds everything the lock pins",
        )
    digests = [o.digest for o in outputs]
    for output in outputs:
        if output.kind == Kind.TREE:
            digests.extend(store.trees.iter_object_digests(output.digest))
    digests.extend(m for m in lock.manifests() if store.objects.has(m))
    digests = list(dict.fromkeys(digests))
    moved = transfer(target, digests, [FolderRemote(store.root, link=False)], jobs=jobs or default_jobs())
    if moved.refused or moved.missing:
        problem = (moved.refused or [f"{d} is missing" for d in moved.missing])[0]
        raise StoreError(f"cannot export {lock_path}: {problem}", hint="run `datamaestro store verify`, then `datamaestro sync`")
    return ExportReport(folder=Path(folder), objects=len(digests), copied=sum(moved.taken.values()), bytes=moved.bytes)
