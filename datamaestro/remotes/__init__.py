"""Remotes: other stores that objects and action records come from, and go to.

A remote has the store's layout — ``objects/ab/cdef...`` (files, tree
documents and manifests alike) and ``actions/ab/cdef....json`` — wherever it
lives: a folder (another user's store, an NFS mount, a USB disk, an
export), a static web server publishing such a folder (read-only), or an
object store (``s3://bucket/prefix``, ``gs://``, ``az://``: see
:mod:`datamaestro.remotes.objectstore`). It is a cache in the way Bazel's
remote cache and Nix's binary caches are: the objects *and* the action
cache (recipe key -> output digest).

Whatever a remote gives is hashed on the way in and enters the store only
when it matches the digest asked for: an object is never trusted. An action
record is trusted as much as the remote itself (it only says which digest a
recipe gave; the digest is then checked); a lock's pins are always checked.
Pushing writes every object before the action records that name them, so a
reader never follows a dangling record.

HTTP goes through a :class:`~datamaestro.fetch.Fetcher` made by the context
(this package knows URLs, not HTTP). Nothing here knows datasets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable
from urllib.parse import unquote, urlsplit

from ..errors import DownloadError, IntegrityError, OfflineError, StoreError, UntrustedInputError, UsageError
from ..store.trees import MAX_TREE_DOCUMENT
from .base import MAX_RECORD_BYTES, Peer, PeerUnavailable, action_key, object_key

if TYPE_CHECKING:
    from ..fetch import Fetcher
    from ..store import Output, Store
    from ..store.objects import Staged

#: objects made visible together (one file-system flush for the batch)
BATCH = 2000
#: objects copied by one task of the thread pool, at most
CHUNK = 256


class PathPeer(Peer):
    """A store (or an export) in a folder: ``<root>/objects/ab/cdef...``.

    Objects are hard-linked when the folder is on the same file system and
    owned by this user (both are immutable), copied otherwise; either way
    they are hashed on the way in.

    :param link: hard-link objects when possible; an export to a removable disk copies
    """

    writable = True

    def __init__(self, root: Path, *, link: bool = True):
        self.root = Path(root)
        self.label = str(root)
        self.link = link

    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Copies (or links) the object from the folder, checking its digest."""
        outcome = self.stage_batch(store, [digest], {digest: limit} if limit is not None else None)[0]
        if isinstance(outcome, (IntegrityError, PeerUnavailable)):
            raise outcome
        return outcome

    def stage_batch(self, store: "Store", digests: list[str], limits: dict[str, int] | None = None) -> list:
        """Links (or copies) many objects from the folder at once, each checked (see :meth:`ObjectStore.stage_files`)."""
        root = os.fspath(self.root)
        pairs = [(digest, f"{root}/{object_key(digest)}") for digest in digests]
        outcomes = store.objects.stage_files(pairs, link=self.link, limits=limits)
        if not self.link:
            return outcomes
        from dataclasses import replace

        from ..store.objects import Staged

        # a linked object is the peer's inode: its stamp can be linked too (see record_stamps)
        return [
            replace(outcome, stamp_source=f"{root}/stamps/{object_key(digest).partition('/')[2]}") if isinstance(outcome, Staged) else outcome
            for digest, outcome in zip(digests, outcomes)
        ]

    def get_action(self, key: str) -> bytes | None:
        """Reads the record from the folder's ``actions/``."""
        try:
            # bounded, and never blocking on a fifo: a folder remote is someone else's folder
            fd = os.open(self.root / action_key(key), os.O_RDONLY | os.O_NONBLOCK)
            with open(fd, "rb") as fp:
                return fp.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PeerUnavailable(f"{self.label}: {exc.strerror}") from None

    def missing(self, digests: list[str]) -> list[str]:
        """The digests without a file in the folder."""
        return [digest for digest in digests if not (self.root / object_key(digest)).is_file()]

    def put_object(self, digest: str, path: Path) -> None:
        """Copies the object to a temporary name in the folder, then renames it into place."""
        def copy(out) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out)

        self._put(object_key(digest), copy, mode=0o444)

    def put_action(self, key: str, data: bytes) -> None:
        """Writes the record to a temporary name in the folder, then renames it into place."""
        self._put(action_key(key), lambda out: out.write(data), mode=0o644)

    def _put(self, relative: str, write: Callable[[BinaryIO], object], *, mode: int) -> None:
        target = self.root / relative
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a leftover of a kill
            from ..store.objects import create_new

            # a new file, never through a link: a lab's cache folder is written by many users
            with create_new(tmp, mode) as out:
                write(out)
                os.fchmod(out.fileno(), mode)  # whatever the umask
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise PeerUnavailable(f"{self.label}: cannot write {relative}: {exc.strerror}") from None


class BoundedSink:
    """Keeps at most ``limit`` bytes of a small document (an action record): what a peer sends past it is dropped.

    The caller sees ``limit`` bytes and refuses the document as too large;
    a server streaming without end never fills memory.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._data = bytearray()

    def write(self, data: bytes) -> None:
        """Appends bytes (up to the limit); past it, the transfer stops (the document is refused as too large)."""
        room = self.limit - len(self._data)
        self._data += data[:room]
        if len(data) > room:
            raise UntrustedInputError(f"a document of more than {self.limit - 1} bytes: refused")

    def reset(self) -> None:
        """Drops what was received (a transfer restarts)."""
        self._data.clear()

    def getvalue(self) -> bytes:
        """The bytes received."""
        return bytes(self._data)


class HttpPeer(Peer):
    """A store's folder published by a web server: ``<base>/objects/ab/cdef...``.

    :param base_url: the URL of the store's folder (``http://host:8000/``)
    :param fetcher_factory: makes a :class:`~datamaestro.fetch.Fetcher`; one
        is made per thread
    """

    def __init__(self, base_url: str, fetcher_factory: Callable[[], "Fetcher"]):
        self.base = base_url.rstrip("/") + "/"
        self.label = self.base
        self.fetcher_factory = fetcher_factory
        self._local = threading.local()

    def url_of(self, digest: str) -> str:
        """The URL of an object."""
        return self.base + object_key(digest)

    def _fetcher(self) -> "Fetcher":
        fetcher = getattr(self._local, "fetcher", None)
        if fetcher is None:
            fetcher = self._local.fetcher = self.fetcher_factory()
        return fetcher

    def get_action(self, key: str) -> bytes | None:
        """Downloads the record (a small JSON document)."""
        sink = BoundedSink(MAX_RECORD_BYTES + 1)
        try:
            if not self._fetch(self.base + action_key(key), sink, f"action {key[7:19]} from {self.base}"):
                return None
        except UntrustedInputError:
            pass  # cut off: the caller refuses a record of this size
        return sink.getvalue()

    def _fetch(self, url: str, sink, description: str) -> bool:
        """Fetches ``url`` into ``sink``; False when the server has no such file.

        :raises PeerUnavailable: offline, or the server fails otherwise
        """
        try:
            self._fetcher().fetch(url, sink, description=description)
        except OfflineError:
            raise PeerUnavailable("offline mode") from None
        except DownloadError as error:
            if error.missing:
                return False
            raise PeerUnavailable(error.message) from None
        return True

    def missing(self, digests: list[str]) -> list[str]:
        """A static web server is read-only: nothing can be pushed to it."""
        raise PeerUnavailable(f"{self.label} is read-only (a static web server)")

    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Downloads the object into the store's tmp, checking its digest (and cutting it off past ``limit`` bytes)."""
        with store.objects.writer(expect=digest, limit=limit) as writer:
            if not self._fetch(self.url_of(digest), writer, f"{digest[7:19]} from {self.base}"):
                return None
            return writer.stage()


NETWORK_SCHEMES = ("http", "https", "s3", "gs", "az", "abfs", "abfss")

_LEFT_OUT = threading.Lock()


def reason_of(peer: Peer, error: PeerUnavailable) -> str:
    """What ``error`` says of ``peer``, without the peer's name when it starts with it (it is said once, by the caller)."""
    reason = str(error)
    return reason[len(peer.label) + 2 :] if reason.startswith(f"{peer.label}: ") else reason


def leave_out(peer: Peer, error: PeerUnavailable) -> str | None:
    """Marks ``peer`` as left out for the rest of the run (``peer.left_out``); the line that says so, the first time only.

    A remote that cannot serve is said once per run, however many
    resources, datasets or pipelines then skip it.
    """
    with _LEFT_OUT:
        if getattr(peer, "left_out", None) is not None:
            return None
        peer.left_out = reason_of(peer, error)
    return f"remote cache {peer.label} left out: {peer.left_out}"


def is_left_out(peer: Peer) -> bool:
    """True once :func:`leave_out` marked ``peer`` for this run."""
    return getattr(peer, "left_out", None) is not None


def open_remote(
    url: str,
    fetcher_factory: Callable[[], "Fetcher"],
    *,
    endpoint: str | None = None,
    name: str | None = None,
    option: str = "--from",
    timeouts: tuple[float, float] = (10, 30),
) -> Peer:
    """The remote at ``url``: a folder (a path or ``file://``), ``http(s)://`` (read-only), ``s3://``, ``gs://``, ``az://``.

    :param endpoint: an S3-compatible server for ``s3://`` (MinIO, Ceph, SeaweedFS)
    :param name: the remote's name in the settings, for messages
    :param option: where the URL was given, for messages
    :param timeouts: seconds to connect, and without progress on a request (object storage)
    :raises UsageError: an unsupported scheme, or a folder that holds no store
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return HttpPeer(url, fetcher_factory)
    if scheme in ("s3", "gs", "az", "abfs", "abfss"):
        from .objectstore import ObjectStoreRemote

        return ObjectStoreRemote(url, endpoint=endpoint, name=name, connect_timeout=timeouts[0], read_timeout=timeouts[1])
    if scheme not in ("", "file"):
        raise UsageError(
            f"{option} {url}: the scheme {scheme}:// is not supported",
            hint="give a store folder (a path or file://), an http(s):// URL publishing one, or s3://, gs://, az://",
        )
    root = Path(unquote(urlsplit(url).path) if scheme == "file" else url).expanduser()
    if not (root / "objects").is_dir() and not (root / "VERSION").is_file():
        raise UsageError(
            f"{option} {url}: {'no objects/ folder in it' if root.is_dir() else 'no such folder'}",
            hint="give a store folder (or a `store export` folder), an http(s):// URL publishing one, or s3://...",
        )
    peer = PathPeer(root)
    if name:
        peer.label = f"{name} ({root})"
    return peer


def is_network(url: str) -> bool:
    """True for a remote reached over the network (what ``--offline`` leaves out)."""
    return "://" in url and urlsplit(url).scheme.lower() in NETWORK_SCHEMES


def open_peers(
    sources: Iterable[str], fetcher_factory: Callable[[], "Fetcher"], *, offline: bool = False, timeouts: tuple[float, float] = (10, 30), link: bool = True
) -> tuple[list[Peer], list[str]]:
    """The remotes named on the command line (``--from``), and notes on those skipped.

    :param sources: folder paths, ``file://``, ``http(s)://``, ``s3://`` ... URLs
    :param offline: remotes over the network are skipped (noted), folders are used
    :param link: hard-link the objects of folders when possible (False: copy them)
    :raises UsageError: an unsupported scheme, or a folder that holds no store
    """
    peers: list[Peer] = []
    notes = []
    for source in sources:
        if offline and is_network(source):
            notes.append(f"--from {source} was skipped: --offline never touches the network, and this peer is reached over it (store folders and file:// are still read)")
            continue
        peer = open_remote(source, fetcher_factory, timeouts=timeouts)
        if isinstance(peer, PathPeer):
            peer.link = link
        peers.append(peer)
    return peers, notes


@dataclass
class Transfer:
    """What :func:`transfer` did.

    :param taken: objects taken, by peer label
    :param bytes: bytes taken
    :param refused: one line per object a peer served with the wrong bytes
    :param unavailable: one line per peer that could not serve at all
    :param missing: digests no peer had
    """

    taken: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    refused: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: the label of the peer that served each tree document (what a refusal names)
    sources: dict[str, str] = field(default_factory=dict)
    #: tree documents refused (not materialized)
    rejected: set[str] = field(default_factory=set)


def transfer(
    store: "Store", digests: Iterable[str], peers: list[Peer], *, jobs: int = 8, record_sources: bool = False, limits: dict[str, int] | None = None
) -> Transfer:
    """Takes objects the store lacks from the peers, in order, on a thread pool.

    :param limits: digest -> the size a document (a tree, a lock) names: a peer sending more is cut off there and refused

    :param record_sources: note which peer served each object (:attr:`Transfer.sources`; for tree documents)

    Each object is asked of each peer in turn until one serves the right
    bytes; a peer serving wrong bytes is reported and the next one asked.
    Objects are made visible by batches, each after one file-system flush.
    """
    report = Transfer()
    wanted = store.objects.absent(digests)
    if not wanted:
        return report
    if not peers:
        report.missing = wanted
        return report
    lock = threading.Lock()
    dead: set[int] = set()

    def take_chunk(digests: list[str]) -> list:
        """Asks each peer in turn for the objects the ones before did not serve right."""
        results = []
        left = digests
        for index, peer in enumerate(peers):
            if not left:
                break
            if index in dead or is_left_out(peer):
                continue
            outcomes = peer.stage_batch(store, left, limits) if limits else peer.stage_batch(store, left)
            again = []
            for digest, outcome in zip(left, outcomes):
                if isinstance(outcome, IntegrityError):
                    with lock:
                        report.refused.append(f"refused {digest} from {peer.label}: {outcome.message}")
                    again.append(digest)
                elif isinstance(outcome, PeerUnavailable):
                    with lock:
                        if index not in dead:
                            dead.add(index)
                            line = leave_out(peer, outcome)
                            if line is not None:  # said once per run
                                report.unavailable.append(line)
                    again.append(digest)
                elif outcome is None:
                    if not store.objects.has(digest):  # else another process stored it meanwhile
                        again.append(digest)
                else:
                    results.append((digest, peer.label, outcome))
            left = again
        return results + [(digest, None, None) for digest in left]

    # tasks of a few objects each: one task per small object costs more in
    # thread hand-overs than the copy itself
    # (up to CHUNK objects; fewer when there are few, so that every thread gets work)
    # (one thread: a window is one task, so that a batch pays one flush of the file system)
    size = BATCH if jobs <= 1 else max(1, min(CHUNK, len(wanted) // (4 * jobs)))
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
    a peer that never answers would keep a Ctrl-C or a SIGTERM waiting too.
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


def wanted_objects(store: "Store", outputs: Iterable["Output"], peers: list[Peer], jobs: int, report: Transfer, limits: dict[str, int] | None = None) -> list[str]:
    """The file objects the given outputs need (:func:`transfer` skips those present).

    A tree needs its tree object (taken from the peers first when missing,
    so that its entries can be read) and each file it lists. A tree object
    no peer has leaves the tree to the pipeline; one that fails validation
    is refused (:attr:`Transfer.rejected`), naming the peer that served it.

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
    taken = transfer(store, trees, peers, jobs=jobs, record_sources=True, limits=dict.fromkeys(trees, MAX_TREE_DOCUMENT))
    _merge(report, taken)
    for digest in trees:
        if store.objects.has(digest):
            try:
                # the whole document is checked (links included) before any of its objects is asked for
                source = report.sources.get(digest, "")
                store.trees.check(digest, source=source)
                # then read again as a stream: no table of its entries besides the digests and their sizes
                for entry in store.trees.iter_tree_entries(digest, source=source):
                    if entry["kind"] == "file":
                        files.append(entry["digest"])
                        limits[entry["digest"]] = entry["size"]
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


def pull_outputs(store: "Store", outputs: list["Output"], peers: list[Peer], jobs: int = 8) -> Transfer:
    """Takes what some outputs need from the remotes and materializes the trees that became complete.

    What no remote has (or serves right) is left out: the caller produces it from its sources.
    """
    report = Transfer()
    if not peers:
        return report
    limits: dict[str, int] = {}
    wanted = wanted_objects(store, outputs, peers, jobs, report, limits)
    _merge(report, transfer(store, wanted, peers, jobs=jobs, limits=limits))
    for output in outputs:
        if output.kind == "tree" and output.digest not in report.rejected and not store.trees.has(output.digest) and store.objects.has(output.digest):
            try:
                store.trees.materialize(output.digest, source=report.sources.get(output.digest, ""))
            except UntrustedInputError as error:
                # a document from outside that fails validation: nothing of it written, the next source is used
                refuse_tree(store, report, output.digest, error)
            except StoreError:
                pass  # a file no peer had: the pipeline makes the tree
    # what no peer had is the pipeline's business: not an error here
    report.missing = []
    return report
