"""Peers: other stores that objects can be taken from (``sync --from``, ``store export``).

A peer is a folder laid out as a store (``objects/ab/cdef...``: another
user's store, an NFS mount, a USB disk, an export) or an HTTP(S) base URL
under which a static server publishes such a folder. Whatever a peer gives
is hashed on the way in and enters the store only when it matches the digest
asked for: a peer is never trusted.

HTTP goes through the :class:`~datamaestro.fetch.Fetcher` of the context
(the lock knows URLs, not HTTP): :class:`HttpPeer` is given a function that
makes a fetcher.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import DownloadError, IntegrityError, OfflineError, UsageError
from ..store.digests import hex_of

if TYPE_CHECKING:
    from ..fetch import Fetcher
    from ..store import Store
    from ..store.objects import Staged

#: objects made visible together (one file-system flush for the batch)
BATCH = 2000
#: objects copied by one task of the thread pool
CHUNK = 32


class PeerUnavailable(Exception):
    """A peer cannot serve anything (down, refusing): it is not asked again."""


class Peer:
    """A source of objects by digest."""

    #: how the peer is shown in reports
    label: str = ""

    def stage(self, store: "Store", digest: str) -> "Staged | None":
        """Copies the object ``digest`` into the store's tmp, checked; None when the peer lacks it.

        :raises IntegrityError: the peer's bytes do not hash to ``digest``
        :raises PeerUnavailable: the peer cannot serve at all
        """
        raise NotImplementedError


class PathPeer(Peer):
    """A store (or an export) in a folder: ``<root>/objects/ab/cdef...``.

    :param link: hard-link objects on the same file system instead of
        copying them (both are immutable); an export to a removable disk copies
    """

    def __init__(self, root: Path, *, link: bool = True):
        self.root = Path(root)
        self.label = str(root)
        self.link = link

    def stage(self, store: "Store", digest: str) -> "Staged | None":
        """Copies (or links) the object from the folder, checking its digest."""
        hexdigest = hex_of(digest)
        source = self.root / "objects" / hexdigest[:2] / hexdigest[2:]
        try:
            return store.objects.stage_file(digest, source, link=self.link)
        except FileNotFoundError:
            return None


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
        hexdigest = hex_of(digest)
        return f"{self.base}objects/{hexdigest[:2]}/{hexdigest[2:]}"

    def stage(self, store: "Store", digest: str) -> "Staged | None":
        """Downloads the object into the store's tmp, checking its digest."""
        fetcher = getattr(self._local, "fetcher", None)
        if fetcher is None:
            fetcher = self._local.fetcher = self.fetcher_factory()
        with store.objects.writer(expect=digest) as writer:
            try:
                fetcher.fetch(self.url_of(digest), writer, description=f"{digest[7:19]} from {self.base}")
            except OfflineError:
                raise PeerUnavailable("offline mode") from None
            except DownloadError as error:
                if error.missing:
                    return None
                raise PeerUnavailable(error.message) from None
            return writer.stage()


def open_peers(sources: Iterable[str], fetcher_factory: Callable[[], "Fetcher"], *, offline: bool = False) -> tuple[list[Peer], list[str]]:
    """The peers named on the command line, and notes on those skipped.

    :param sources: folder paths or ``http(s)://`` base URLs
    :param offline: HTTP peers are skipped (noted), folders are used
    :raises UsageError: a folder that does not exist or holds no ``objects/``
    """
    peers: list[Peer] = []
    notes = []
    for source in sources:
        if source.startswith(("http://", "https://")):
            if offline:
                notes.append(f"{source}: skipped (offline)")
            else:
                peers.append(HttpPeer(source, fetcher_factory))
            continue
        root = Path(source).expanduser()
        if not (root / "objects").is_dir():
            raise UsageError(
                f"--from {source}: {'no objects/ folder in it' if root.is_dir() else 'no such folder'}",
                hint="give a store folder (or a `store export` folder), or an http(s):// URL publishing one",
            )
        peers.append(PathPeer(root))
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


def transfer(store: "Store", digests: Iterable[str], peers: list[Peer], *, jobs: int = 8) -> Transfer:
    """Takes objects the store lacks from the peers, in order, on a thread pool.

    Each object is asked of each peer in turn until one serves the right
    bytes; a peer serving wrong bytes is reported and the next one asked.
    Objects are made visible by batches, each after one file-system flush.
    """
    report = Transfer()
    wanted = [digest for digest in dict.fromkeys(digests) if not store.objects.has(digest)]
    if not wanted:
        return report
    if not peers:
        report.missing = wanted
        return report
    lock = threading.Lock()
    dead: set[int] = set()

    def take(digest: str):
        for index, peer in enumerate(peers):
            if index in dead:
                continue
            try:
                staged = peer.stage(store, digest)
            except IntegrityError as error:
                with lock:
                    report.refused.append(f"refused {digest} from {peer.label}: {error.message}")
                continue
            except PeerUnavailable as error:
                with lock:
                    if index not in dead:
                        dead.add(index)
                        report.unavailable.append(f"{peer.label}: {error}")
                continue
            if staged is not None:
                return digest, peer.label, staged
            if store.objects.has(digest):
                return digest, None, None  # another process stored it meanwhile
        return digest, None, None

    def take_chunk(digests: list[str]) -> list:
        return [take(digest) for digest in digests]

    # tasks of a few objects each: one task per small object costs more in
    # thread hand-overs than the copy itself
    chunks = [wanted[i : i + CHUNK] for i in range(0, len(wanted), CHUNK)]
    pending: list = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for digest, label, staged in (result for chunk in pool.map(take_chunk, chunks) for result in chunk):
            if staged is None:
                if not store.objects.has(digest):
                    report.missing.append(digest)
                continue
            report.taken[label] = report.taken.get(label, 0) + 1
            report.bytes += staged.size
            pending.append(staged)
            if len(pending) >= BATCH:
                store.objects.commit_staged(pending)
                pending = []
    store.objects.commit_staged(pending)
    return report
