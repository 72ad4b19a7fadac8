"""The content-addressed store. It knows nothing of datasets.

Layout (the version of each part recorded in ``VERSION``)::

    VERSION                 layout version of each part: ``objects = 1`` ... (see below)
    SHARED                  present in a group store (names the group)
    objects/ab/cdef...      file objects, named by blake3 of their bytes, read-only
    trees/ab/cdef.../       materialized folders (files hard-linked to objects)
    actions/ab/cdef....json recipe key -> output digest
    views/<manifest hex>/   immutable folders of symlinks, one per manifest
    roots/                  gc roots (registered lock files, data dirs)
    tmp/                    in-flight writes, <host>.<pid>.<random>
    locks/                  lock files and holder notes
    quarantine/             objects that failed verification, or the on-use check
    leases/                 who produces what, across machines (see leases.py)
    stamps/ab/cdef...       each object's size, mtime, inode when committed (integrity.py)

``VERSION`` holds one ``part = version`` line per part of the layout that
can change on its own (:data:`LAYOUT_PARTS`), ``#`` comments and blank lines
(a subset of TOML)::

    # datamaestro store layout: the version of each part
    objects = 1
    actions = 1
    views = 1
    roots = 1
    trees = 2

``trees`` is the format of tree documents (1: one JSON document; 2: one
entry per line, read and written as a stream); a ``VERSION`` that does not
name it (written before) stands for ``trees = 1``. ``trees/`` folders are
named by object digests and hold hard links to objects, so whatever changes
how objects are named or stored changes trees with them.

A store whose part is newer than this datamaestro knows (or that names a
part it does not know) is refused; an older part is migrated in place, one
version at a time, by the functions of :data:`MIGRATIONS`. The first layout,
a ``VERSION`` file holding just ``1``, is every part at version 1: its file
is rewritten in the new format on open, nothing else changes.

A store is created by :func:`create_store` only, with operations that stay
atomic on a file system shared by several machines even where
``O_CREAT|O_EXCL`` and ``flock`` are not (NFS ``nolock``, FUSE): folders are
made with "exists is fine", and ``VERSION`` is written to a unique name in
``tmp/`` then hard-linked into place (a link never replaces a file), so any
number of concurrent creators end with one store and one ``VERSION``.

This module holds :class:`Store`; the versions, migrations and creation are
in :mod:`.versioning`, the folders and how entries are made in them in
:mod:`.layout` (the bottom of the store), and each part of the layout in a
module of its own (docs/architecture.md lists them).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable

from ..errors import StoreError
from . import leases
from .actions import ActionCache, ActionRecord, Kind, Output, recipe_key
from .digests import format_digest, hex_of, is_digest
from .layout import Layout
from .locking import store_lock
from .objects import ObjectStore
from .roots import Root, iter_roots, mark_published, register_root
from .tmpsweep import reap_tmp
from .trees import TreeStore
# LAYOUT_PARTS, MIGRATIONS, format_layout and group_id are not used here: re-exported, as before the layout's
# versioning had a module of its own (tests and the CLI import them from the package)
from .versioning import LAYOUT_PARTS, MIGRATIONS, SHARED_FILE, create_store, format_layout, group_id, migrate_layout, open_layout
from .views import ViewStore, current_view, manifest_digest, point_readable_path
from .writer import ObjectWriter

__all__ = [
    "Store",
    "Output",
    "Kind",
    "ActionRecord",
    "recipe_key",
    "format_digest",
    "hex_of",
    "is_digest",
    "manifest_digest",
    "current_view",
    "point_readable_path",
    "create_store",
    "open_layout",
    "migrate_layout",
]


class Store:
    """A content-addressed store in one folder.

    :param root: the store folder (created with ``create=True``)
    :param create: create an empty store when the folder has none
    :param lease_ttl: seconds without a heartbeat after which a lease held on
        another machine is taken as dead (see :mod:`datamaestro.store.leases`)

    Opening a store checks its layout (:func:`open_layout`): a newer one is
    refused, an older one migrated.

    Example::

        store = Store(Path("~/datamaestro/store").expanduser())
        digest = store.ingest_file(Path("train.csv"))
        assert store.has(digest)
        print(store.path_of(digest).read_bytes()[:10])
    """

    def __init__(self, root: Path, *, create: bool = True, lease_ttl: float = leases.DEFAULT_TTL):
        root = Path(root)
        #: the version of each part of the layout (:data:`LAYOUT_PARTS`)
        self.layout_versions = open_layout(root, create=create)
        self.root = root
        #: seconds without a heartbeat after which another machine's lease is taken as dead
        self.lease_ttl = lease_ttl
        self.layout = Layout(root, shared=(root / SHARED_FILE).is_file())
        self.objects = ObjectStore(self.layout)
        self.trees = TreeStore(self.layout, self.objects)
        self.actions = ActionCache(self.layout)
        self.views = ViewStore(self.layout, self.objects, self.trees)

    @property
    def shared(self) -> bool:
        """True for a store set up for a Unix group (``store init --group``)."""
        return self.layout.shared

    # -- objects
    def has(self, digest: str) -> bool:
        """True when the file object ``digest`` is in the store (trees: ``store.trees.has``)."""
        return self.objects.has(digest)

    def path_of(self, digest: str) -> Path:
        """The path of a file object."""
        return self.objects.path_of(digest)

    def open(self, digest: str) -> BinaryIO:
        """Opens a file object for reading."""
        return self.objects.open(digest)

    def writer(self) -> ObjectWriter:
        """A streaming writer for a new object (hash while writing)."""
        return self.objects.writer()

    def ingest_stream(self, chunks: Iterable[bytes]) -> str:
        """Stores bytes given as chunks; returns the digest."""
        return self.objects.ingest_stream(chunks)

    def ingest_file(self, path: Path, *, move: bool = False) -> str:
        """Stores a file (copied, or moved with ``move=True``); returns the digest."""
        return self.objects.ingest_file(path, move=move)

    def ingest_tree(self, folder: Path, *, move: bool = False, hashed: dict[str, tuple[str, int]] | None = None, install: bool = False) -> str:
        """Stores a folder; returns its tree digest (see :meth:`~datamaestro.store.trees.TreeStore.ingest_tree` for the options)."""
        return self.trees.ingest_tree(folder, move=move, hashed=hashed, install=install)

    def materialize(self, kind: str, digest: str, *, source: str = "") -> Path:
        """The readable path of an output: an object's file, a tree's folder.

        :param source: who served a tree's document (a remote, a peer), named
            when it is refused (:class:`~datamaestro.errors.UntrustedInputError`)
        """
        if kind == Kind.TREE:
            return self.trees.materialize(digest, source=source)
        return self.objects.path_of(digest)

    def compare_stamps(self, outputs: Iterable[Output], *, whole: bool = False) -> list:
        """The on-use check of what is about to be handed out: a ``stat`` per object against its stamp.

        Objects changed since they were stored are moved to ``quarantine/``
        (their outputs are then missing: fetch them again); a large tree has
        one slice of its files checked per use, unless ``whole``; see
        :func:`datamaestro.store.integrity.compare_stamps`.

        :returns: the changed objects, quarantined (:class:`~datamaestro.store.integrity.Changed`)
        :raises IntegrityError: a changed object this user may not move (another member's)
        """
        from .integrity import compare_stamps, repair_warning

        changed = compare_stamps(self, outputs, whole=whole)
        if changed:
            # a repair the user did not ask for is said, once: a damaged store is worth knowing about
            logging.getLogger(__name__).warning("%s", repair_warning(self.root, changed))
        return changed

    def output_present(self, output: Output) -> bool:
        """True when everything an output names is in the store."""
        if output.kind == Kind.VALUE:
            return True
        if output.kind == Kind.TREE:
            return self.trees.has(output.digest)
        return self.objects.has(output.digest)

    # -- coordination
    @contextmanager
    def lock(self, name: str, *, timeout: float = 3600, what: str = "work on the store"):
        """A lock of every process on every machine sharing the store (see :func:`store.locking.store_lock`)."""
        with store_lock(self.layout, name, timeout=timeout, what=what, lease_ttl=self.lease_ttl):
            yield

    def register_root(self, kind: str, path: Path, manifests: list[str] | None = None) -> Root:
        """Registers a data dir (``data``) or a lock file (``lock``, with its manifests) as a gc root."""
        return register_root(self.layout, kind, path, manifests)

    def read_only(self) -> bool:
        """True when this user may not write the store's folder (a read-only file system, or no permission)."""
        try:
            if os.statvfs(self.root).f_flag & os.ST_RDONLY:
                return True
        except OSError:
            return False
        return not os.access(self.root, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)

    def register_lock_root(self, path: Path, manifests: list[str]) -> None:
        """Registers a lock file as a gc root; on a store one may only read, one warning instead (its data is served all the same)."""
        try:
            register_root(self.layout, "lock", path, manifests)
        except StoreError as error:
            if not self.read_only():
                raise
            logging.getLogger(__name__).warning(
                "%s; `datamaestro store gc` on this store will not know that the lock file %s pins its data", error.message, path
            )

    def mark_published(self, root: Root, manifest: str) -> None:
        """Records that a data root published a manifest, so that gc on another machine keeps it."""
        mark_published(self.layout, root, manifest)

    def roots(self) -> list[Root]:
        """Every registered gc root."""
        return list(iter_roots(self.layout))

    def tmp_path(self, hint: str = "") -> Path:
        """A unique path in the store's ``tmp/`` (same file system as objects)."""
        return self.layout.tmp_path(hint)

    def partial_folder(self) -> Path | None:
        """Where interrupted downloads are kept for a later run (``tmp/partial``, kept a week); None on a FUSE or 9p mount.

        A download kept for a later run is written twice (the partial file
        and the object). Chunk-based FUSE file systems (SeaweedFS, JuiceFS)
        keep each piece flushed between two slow writes as a new chunk: a
        1 GiB download filled the 5 GiB of a SeaweedFS test server. There
        an interrupted download starts again from its first byte.
        """
        from .tmpsweep import PARTIAL_FOLDER

        if not self.layout.precise_stat:
            return None
        return self.layout.tmp / PARTIAL_FOLDER

    def drop_own_tmp(self) -> None:
        """Removes what this process has in ``tmp/`` (it is about to exit on a signal); see :func:`objects.drop_own_tmp`."""
        from .tmpsweep import drop_own_tmp

        drop_own_tmp(self.layout)

    def reap_tmp(self) -> list[Path]:
        """Removes leftovers of dead writers from ``tmp/``."""
        return reap_tmp(self.layout)
