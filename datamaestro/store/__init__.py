"""The content-addressed store. It knows nothing of datasets.

Layout (version 1, recorded in ``VERSION``)::

    objects/ab/cdef...      file objects, named by blake3 of their bytes, read-only
    trees/ab/cdef.../       materialized folders (files hard-linked to objects)
    actions/ab/cdef....json recipe key -> output digest
    views/<manifest hex>/   immutable folders of symlinks, one per manifest
    roots/                  gc roots (registered lock files, data dirs)
    tmp/                    in-flight writes, <host>.<pid>.<random>
    locks/                  lock files and holder notes
    quarantine/             objects that failed verification
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable

from ..errors import StoreError
from .actions import ActionCache, ActionRecord, Output, recipe_key
from .digests import format_digest, hex_of, is_digest
from .locking import store_lock
from .objects import Layout, ObjectStore, ObjectWriter, disk_error, reap_tmp
from .roots import Root, iter_roots, register_root
from .trees import TreeStore
from .views import ViewStore, current_view, manifest_digest, point_readable_path
from .actions import Kind

LAYOUT_VERSION = "1"
VERSION_FILE = "VERSION"
SHARED_FILE = "SHARED"
# What a store folder holds besides VERSION. A folder holding only these
# is a store that lost its VERSION file (a process killed while creating
# the store, or a store deleted while another process was adding to it,
# which then recreated some folders): it is taken as a store again, so that
# the next run works instead of refusing the folder for ever.
LAYOUT_ENTRIES = frozenset({"objects", "trees", "actions", "views", "roots", "tmp", "locks", "quarantine", SHARED_FILE})


def _layout_entry(name: str) -> bool:
    """True for a name the store itself creates (``.VERSION.<pid>``: a VERSION file being written)."""
    return name in LAYOUT_ENTRIES or name.startswith((f".{VERSION_FILE}.", f".{SHARED_FILE}."))

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
]


class Store:
    """A content-addressed store in one folder.

    :param root: the store folder (created with ``create=True``)
    :param create: create an empty store when the folder has none

    Example::

        store = Store(Path("~/datamaestro/store").expanduser())
        digest = store.ingest_file(Path("train.csv"))
        assert store.has(digest)
        print(store.path_of(digest).read_bytes()[:10])
    """

    def __init__(self, root: Path, *, create: bool = True):
        root = Path(root)
        version_file = root / VERSION_FILE
        if version_file.is_file():
            version = version_file.read_text().strip()
            if version != LAYOUT_VERSION:
                raise StoreError(
                    f"store {root} has layout version {version}, this datamaestro reads version {LAYOUT_VERSION}",
                    hint="use a datamaestro release that matches the store, or point DATAMAESTRO_STORE at another folder",
                )
        elif root.is_dir() and not all(_layout_entry(p.name) for p in root.iterdir()):
            raise StoreError(f"{root} is not a datamaestro store (no {VERSION_FILE} file) and is not empty")
        elif not create:
            raise StoreError(f"no store at {root}")
        else:
            self._create(root)
        self.root = root
        self.layout = Layout(root, shared=(root / SHARED_FILE).is_file())
        self.objects = ObjectStore(self.layout)
        self.trees = TreeStore(self.layout, self.objects)
        self.actions = ActionCache(self.layout)
        self.views = ViewStore(self.layout, self.objects, self.trees)

    @staticmethod
    def _create(root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".{VERSION_FILE}.{os.getpid()}"
            tmp.write_text(LAYOUT_VERSION + "\n")
            os.replace(tmp, root / VERSION_FILE)
        except OSError as exc:
            raise disk_error(exc, f"creating the store {root}") from None

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

    def ingest_tree(self, folder: Path, *, move: bool = False) -> str:
        """Stores a folder; returns its tree digest."""
        return self.trees.ingest_tree(folder, move=move)

    def materialize(self, kind: str, digest: str) -> Path:
        """The readable path of an output: an object's file, a tree's folder."""
        if kind == Kind.TREE:
            return self.trees.materialize(digest)
        return self.objects.path_of(digest)

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
        """An inter-process lock (see :func:`store.locking.store_lock`)."""
        with store_lock(self.layout, name, timeout=timeout, what=what):
            yield

    def register_root(self, kind: str, path: Path, manifests: list[str] | None = None) -> Root:
        """Registers a data dir (``data``) or a lock file (``lock``, with its manifests) as a gc root."""
        return register_root(self.layout, kind, path, manifests)

    def roots(self) -> list[Root]:
        """Every registered gc root."""
        return list(iter_roots(self.layout))

    def tmp_path(self, hint: str = "") -> Path:
        """A unique path in the store's ``tmp/`` (same file system as objects)."""
        return self.layout.tmp_path(hint)

    def reap_tmp(self) -> list[Path]:
        """Removes leftovers of dead writers from ``tmp/``."""
        return reap_tmp(self.layout)
