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

The modules: :mod:`~datamaestro.remotes.base` (what every :class:`Remote`
is, and the store's keys), :mod:`~datamaestro.remotes.folder`,
:mod:`~datamaestro.remotes.web` and :mod:`~datamaestro.remotes.objectstore`
(the three kinds), :mod:`~datamaestro.remotes.pull` (objects taken from
remotes), :mod:`~datamaestro.remotes.push` (objects and records sent to
one), :mod:`~datamaestro.remotes.signing` (who may vouch for a record).
This one opens a remote from its URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from .base import Remote
from .folder import FolderRemote
from .web import HttpRemote

if TYPE_CHECKING:
    from ..fetch import Fetcher

NETWORK_SCHEMES = ("http", "https", "s3", "gs", "az", "abfs", "abfss")


def open_remote(
    url: str,
    fetcher_factory: Callable[[], "Fetcher"],
    *,
    endpoint: str | None = None,
    name: str | None = None,
    option: str = "--from",
    timeouts: tuple[float, float] = (10, 30),
) -> Remote:
    """The remote at ``url``: a folder (a path or ``file://``), ``http(s)://`` (read-only), ``s3://``, ``gs://``, ``az://``.

    :param endpoint: an S3-compatible server for ``s3://`` (MinIO, Ceph, SeaweedFS)
    :param name: the remote's name in the settings, for messages
    :param option: where the URL was given, for messages
    :param timeouts: seconds to connect, and without progress on a request (object storage)
    :raises UsageError: an unsupported scheme, or a folder that holds no store
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return HttpRemote(url, fetcher_factory)
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
    remote = FolderRemote(root)
    if name:
        remote.label = f"{name} ({root})"
    return remote


def is_network(url: str) -> bool:
    """True for a remote reached over the network (what ``--offline`` leaves out)."""
    return "://" in url and urlsplit(url).scheme.lower() in NETWORK_SCHEMES


def open_peers(
    sources: Iterable[str], fetcher_factory: Callable[[], "Fetcher"], *, offline: bool = False, timeouts: tuple[float, float] = (10, 30), link: bool = True
) -> tuple[list[Remote], list[str]]:
    """The remotes named on the command line (``--from``), and notes on those skipped.

    :param sources: folder paths, ``file://``, ``http(s)://``, ``s3://`` ... URLs
    :param offline: remotes over the network are skipped (noted), folders are used
    :param link: hard-link the objects of folders when possible (False: copy them)
    :raises UsageError: an unsupported scheme, or a folder that holds no store
    """
    peers: list[Remote] = []
    notes = []
    for source in sources:
        if offline and is_network(source):
            notes.append(f"--from {source} was skipped: --offline never touches the network, and this peer is reached over it (store folders and file:// are still read)")
            continue
        peer = open_remote(source, fetcher_factory, timeouts=timeouts)
        if isinstance(peer, FolderRemote):
            peer.link = link
        peers.append(peer)
    return peers, notes

