"""Pulling: objects a store lacks, taken from remotes in order, each hashed on the way in.

:func:`transfer` takes objects by digest (``sync``, ``store export``);
:func:`pull_outputs` takes what some outputs need (a tree's document first,
validated, then its files): what the pipeline's pull-through runs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import IntegrityError, StoreError, UntrustedInputError
from ..store.trees import MAX_TREE_DOCUMENT
from .base import Remote, RemoteUnavailable, is_left_out, leave_out
from .packs import in_pack_order, note_tree, stage_packed, take_refusals

if TYPE_CHECKING:
    from ..store import Output, Store

#: objects made visible together (one file-system flush for the batch)
BATCH = 2000
#: objects copied by one task of the thread pool, at most
CHUNK = 256


@dataclass
class Transfer:
    """What :func:`transfer` did.

    :param taken: objects taken, by remote label
    :param bytes: bytes taken
    :param refused: one line per object a remote served with the wrong bytes
    :param unavailable: one line per remote that could not serve at all
    :param missing: digests no remote had
    """

    taken: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    refused: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: the label of the remote that served each tree document (what a refusal names)
    sources: dict[str, str] = field(default_factory=dict)
    #: tree documents refused (not materialized)
    rejected: set[str] = field(default_factory=set)


def transfer(
    store: "Store", digests: Iterable[str], remotes: list[Remote], *, jobs: int = 8, record_sources: bool = False, limits: dict[str, int] | None = None
) -> Transfer:
    """Takes objects the store lacks from the remotes, in order, on a thread pool.

    :param limits: digest -> the size a document (a tree, a lock) names: a remote sending more is cut off there and refused

    :param record_sources: note which remote served each object (:attr:`Transfer.sources`; for tree documents)

    Each object is asked of each remote in turn until one serves the right
    bytes; a remote serving wrong bytes is reported and the next one asked.
    Objects are made visible by batches, each after one file-system flush.
    """
    report = Transfer()
    wanted = store.objects.absent(digests)
    if not wanted:
        return report
    if not remotes:
        report.missing = wanted
        return report
    lock = threading.Lock()
    dead: set[int] = set()

    def take_chunk(digests: list[str]) -> list:
        """Asks each remote in turn for the objects the ones before did not serve right."""
        results = []
        left = digests
        for index, remote in enumerate(remotes):
            if not left:
                break
            if index in dead or is_left_out(remote):
                continue
            outcomes = stage_packed(remote, store, left, limits, lambda digests: remote.stage_batch(store, digests, limits) if limits else remote.stage_batch(store, digests))
            refusals = take_refusals(remote)
            if refusals:
                with lock:
                    report.refused.extend(refusals)
            again = []
            for digest, outcome in zip(left, outcomes):
                if isinstance(outcome, IntegrityError):
                    with lock:
                        report.refused.append(f"refused {digest} from {remote.label}: {outcome.message}")
                    again.append(digest)
                elif isinstance(outcome, RemoteUnavailable):
                    with lock:
                        if index not in dead:
                            dead.add(index)
                            line = leave_out(remote, outcome)
                            if line is not None:  # said once per run
                                report.unavailable.append(line)
                    again.append(digest)
                elif outcome is None:
                    if not store.objects.has(digest):  # else another process stored it meanwhile
                        again.append(digest)
                else:
                    results.append((digest, remote.label, outcome))
            left = again
        return results + [(digest, None, None) for digest in left]

    # tasks of a few objects each: one task per small object costs more in
    # thread hand-overs than the copy itself
    # (up to CHUNK objects; fewer when there are few, so that every thread gets work)
    # (one thread: a window is one task, so that a batch pays one flush of the file system)
    size = BATCH if jobs <= 1 else max(1, min(CHUNK, len(wanted) // (4 * jobs)))
    wanted = in_pack_order(remotes, wanted)
    chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)]
    # staged by the pool one window at a time, then committed with no
    # thread running: the commit's many small system calls would otherwise
    # wait for the GIL behind the staging threads after each one
    # (overlapping the two with one staging thread was measured: no faster)
    per_window = max(1, BATCH // size)
    for start in range(0, len(chunks), per_window):
        pending = []
        for digest, label, staged in (result for chunk in _map_stoppable(store, take_chunk, chunks[start : start + per_window], jobs) for result in chunk):
            if staged is None:
                if not store.objects.has(digest):
                    report.missing.append(digest)
                continue
            report.taken[label] = report.taken.get(label, 0) + 1
            if record_sources:
                report.sources[digest] = label
            report.bytes += staged.size
            pending.append(staged)
        store.objects.commit_staged(pending)
    return report


def _map_stoppable(store: "Store", function: Callable, items: list, jobs: int) -> list:
    """``[function(item) for item in items]`` on up to ``jobs`` daemon threads, which a signal stops at once.

    A pool's threads are joined before the process may exit: one waiting on
    a remote that never answers would keep a Ctrl-C or a SIGTERM waiting too.
    These are daemon threads: on a signal, the main thread stops waiting,
    removes what they left in ``tmp/`` and unwinds (as the pipeline's
    downloads do). One item runs in the calling thread.
    """
    if len(items) <= 1 or jobs <= 1:
        return [function(item) for item in items]
    results: list = [None] * len(items)
    errors: list[BaseException] = []
    pending = list(enumerate(items))
    guard = threading.Lock()

    def work() -> None:
        while True:
            with guard:
                if errors or not pending:
                    return
                index, item = pending.pop(0)
            try:
                results[index] = function(item)
            except BaseException as exc:  # handed to the calling thread
                with guard:
                    errors.append(exc)
                return

    workers = [threading.Thread(target=work, name=f"transfer {n}", daemon=True) for n in range(min(jobs, len(items)))]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(0.1)  # wakes up for Ctrl-C and SIGTERM
    except BaseException:
        with guard:
            pending.clear()
        if any(worker.is_alive() for worker in workers):
            store.drop_own_tmp()
        raise
    if errors:
        raise errors[0]
    return results


def wanted_objects(store: "Store", outputs: Iterable["Output"], remotes: list[Remote], jobs: int, report: Transfer, limits: dict[str, int] | None = None) -> list[str]:
    """The file objects the given outputs need (:func:`transfer` skips those present).

    A tree needs its tree object (taken from the remotes first when missing,
    so that its entries can be read) and each file it lists. A tree object
    no remote has leaves the tree to the pipeline; one that fails validation
    is refused (:attr:`Transfer.rejected`), naming the remote that served it.

    :param limits: filled with the size each object should have, where a
        document says it (a tree's entries; a file stored as downloaded)
    """
    limits = {} if limits is None else limits
    outputs = [o for o in outputs if o.kind in ("file", "tree") and not store.output_present(o)]
    files = [o.digest for o in outputs if o.kind == "file"]
    for output in outputs:
        if output.kind == "file" and isinstance(output.size, int) and output.source_digest == output.digest:
            limits[output.digest] = output.size  # stored as downloaded: the size downloaded is the object's
    trees = [o.digest for o in outputs if o.kind == "tree"]
    taken = transfer(store, trees, remotes, jobs=jobs, record_sources=True, limits=dict.fromkeys(trees, MAX_TREE_DOCUMENT))
    _merge(report, taken)
    for digest in trees:
        if store.objects.has(digest):
            note_tree(remotes, digest)  # its small objects may be in packs: their index is read with the first of them
            try:
                # read once as a stream (no table of its entries besides the digests and their sizes); they
                # are kept only once the whole document is checked (links included, at its end): nothing
                # of a refused tree is asked for
                source = report.sources.get(digest, "")
                tree_files: list[str] = []
                tree_sizes: list[int] = []
                for entry in store.trees.iter_tree_entries(digest, source=source):
                    if entry["kind"] == "file":
                        tree_files.append(entry["digest"])
                        tree_sizes.append(entry["size"])
                files += tree_files
                limits.update(zip(tree_files, tree_sizes))
                del tree_files, tree_sizes
            except (UntrustedInputError, StoreError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
                refuse_tree(store, report, digest, error)
                continue
    # unique by sorting in place (a tree of a million files: no second table of its digests)
    files.sort()
    return [digest for index, digest in enumerate(files) if index == 0 or digest != files[index - 1]]


def refuse_tree(store: "Store", report: Transfer, digest: str, error: Exception) -> None:
    """Notes a tree document that fails validation, naming the remote that served it, and moves it to quarantine.

    It is then not used (the next source is), and nothing of it stays among
    the store's objects; the quarantine keeps it, with why, for whoever
    looks into the remote.
    """
    source = report.sources.get(digest, "")
    why = error.message if isinstance(error, IntegrityError | StoreError) else f"malformed ({type(error).__name__}: {error})"
    prefix = f"refused tree {digest} from {source}: " if source else f"refused tree {digest}: "
    line = why if why.startswith("refused tree") else prefix + why
    report.refused.append(line)
    report.rejected.add(digest)
    from ..store.integrity import quarantine_object

    try:
        quarantine_object(store.layout, digest, digest, os.stat(store.objects.path_of(digest)).st_size, why=line)
    except OSError:
        pass  # gone meanwhile, or another member's object (a group store): it stays, unused


def _merge(report: Transfer, other: Transfer) -> None:
    for label, count in other.taken.items():
        report.taken[label] = report.taken.get(label, 0) + count
    report.bytes += other.bytes
    report.refused += other.refused
    report.unavailable += [line for line in other.unavailable if line not in report.unavailable]
    report.missing += other.missing
    report.sources.update(other.sources)
    report.rejected |= other.rejected


def pull_outputs(store: "Store", outputs: list["Output"], remotes: list[Remote], jobs: int = 8) -> Transfer:
    """Takes what some outputs need from the remotes and materializes the trees that became complete.

    What no remote has (or serves right) is left out: the caller produces it from its sources.
    """
    report = Transfer()
    if not remotes:
        return report
    limits: dict[str, int] = {}
    wanted = wanted_objects(store, outputs, remotes, jobs, report, limits)
    _merge(report, transfer(store, wanted, remotes, jobs=jobs, limits=limits))
    for output in outputs:
        if output.kind == "tree" and output.digest not in report.rejected and not store.trees.has(output.digest) and store.objects.has(output.digest):
            try:
                store.trees.materialize(output.digest, source=report.sources.get(output.digest, ""))
            except UntrustedInputError as error:
                # a document from outside that fails validation: nothing of it written, the next source is used
                refuse_tree(store, report, output.digest, error)
            except StoreError:
                pass  # a file no remote had: the pipeline makes the tree
    # what no remote had is the pipeline's business: not an error here
    report.missing = []
    return report
