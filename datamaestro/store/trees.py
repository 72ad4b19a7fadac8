"""Folder trees: a folder is stored as its files' objects plus a tree object.

The tree object is canonical JSON listing every entry (sorted path, kind,
digest or link target); its digest names the folder. A tree is materialized
once as ``trees/ab/cdef.../``, a read-only folder whose files are hard links
to the objects (relative symlinks where hard links are not possible).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..errors import StoreError
from .digests import canonical_json, digest_bytes, hex_of
from .objects import LINK_REFUSALS, Layout, ObjectStore, disk_error, remove_tree

TREE_FORMAT = "datamaestro-tree/1"


class TreeStore:
    """The ``trees/`` folder: ingest folders, read and materialize trees."""

    def __init__(self, layout: Layout, objects: ObjectStore):
        self.layout = layout
        self.objects = objects

    def path_of(self, digest: str) -> Path:
        """Where the materialized tree of ``digest`` is."""
        return self.layout.fanout(self.layout.trees, digest)

    def has(self, digest: str) -> bool:
        """True when the tree is materialized (and so complete)."""
        return self.path_of(digest).is_dir()

    def ingest_tree(self, folder: Path, *, move: bool = False) -> str:
        """Stores a folder; returns the digest of its tree.

        :param move: files may be renamed into the store (the folder is
            consumed); otherwise they are copied
        :raises StoreError: on a symlink leading outside the folder or a
            special file (device, fifo, socket)
        """
        folder = Path(folder)
        entries = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            relative_dir = os.path.relpath(dirpath, folder)
            if relative_dir != "." and not dirnames and not filenames:
                entries.append({"path": relative_dir, "kind": "dir"})
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                full = os.path.join(dirpath, name)
                relative = os.path.normpath(os.path.join(relative_dir, name))
                mode = os.lstat(full).st_mode
                if stat.S_ISLNK(mode):
                    target = os.readlink(full)
                    resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target))
                    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
                        raise StoreError(f"{full}: symbolic link to {target} leads outside the folder")
                    entries.append({"path": relative, "kind": "symlink", "target": target})
                elif stat.S_ISREG(mode):
                    digest = self.objects.ingest_file(Path(full), move=move)
                    entries.append({"path": relative, "kind": "file", "digest": digest, "size": os.stat(self.objects.path_of(digest)).st_size})
                else:
                    raise StoreError(f"{full}: not a regular file, folder or link; cannot be stored")
        return self.store_entries(entries)

    def store_entries(self, entries: list[dict]) -> str:
        """Stores a tree from its entries (their objects must be in the store); returns its digest.

        An entry is ``{"path", "kind": "file", "digest", "size"}``,
        ``{"path", "kind": "symlink", "target"}`` or ``{"path", "kind": "dir"}``.
        """
        entries = sorted(entries, key=lambda e: e["path"])
        data = canonical_json({"format": TREE_FORMAT, "entries": entries})
        digest = digest_bytes(data)
        if not self.objects.has(digest):
            self.objects.ingest_stream([data])
        self.materialize(digest)
        return digest

    def read(self, digest: str) -> dict:
        """The tree document of ``digest``."""
        with self.objects.open(digest) as fp:
            try:
                document = json.load(fp)
            except ValueError:
                raise StoreError(f"object {digest} is not a tree") from None
        if not isinstance(document, dict) or document.get("format") != TREE_FORMAT:
            raise StoreError(f"object {digest} is not a tree")
        return document

    def materialize(self, digest: str) -> Path:
        """Makes ``trees/ab/cdef.../`` exist for a stored tree; returns its path."""
        target = self.path_of(digest)
        if target.is_dir():
            return target
        document = self.read(digest)
        work = self.layout.tmp_path(".tree")
        try:
            os.mkdir(work)
            # string paths, each folder made once: on a tree of many small
            # files the per-file Python work is what a materialization costs
            root = os.fspath(work)
            objects = os.fspath(self.layout.objects)
            made = {root}
            sep = os.sep
            for entry in document["entries"]:
                path = root + sep + entry["path"]
                kind = entry["kind"]
                if kind == "dir":
                    os.makedirs(path, exist_ok=True)
                    made.add(path)
                    continue
                parent = os.path.dirname(path)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                if kind == "symlink":
                    os.symlink(entry["target"], path)
                else:
                    hexdigest = hex_of(entry["digest"])
                    self._link_object(objects + sep + hexdigest[:2] + sep + hexdigest[2:], entry["digest"], path)
            if self.layout.install_folder(work, target):
                _freeze(target)
        except StoreError:
            remove_tree(work)
            raise
        except OSError as exc:
            remove_tree(work)
            raise disk_error(exc, f"materializing tree {digest}") from None
        return target

    def _link_object(self, source: str, digest: str, path: str) -> None:
        try:
            os.link(source, path)
        except FileNotFoundError:
            raise StoreError(f"object {digest} of a tree is missing from the store", hint="run `datamaestro store verify`") from None
        except OSError as exc:
            if exc.errno not in LINK_REFUSALS:
                raise
            os.symlink(os.path.relpath(source, os.path.dirname(path)), path)

    def iter_object_digests(self, digest: str):
        """The digests of every file of a tree (its own digest excluded)."""
        for entry in self.read(digest)["entries"]:
            if entry["kind"] == "file":
                yield entry["digest"]


def _freeze(folder: Path) -> None:
    """Removes write access on every folder of a materialized tree."""
    for dirpath, dirnames, _ in os.walk(folder, topdown=False):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o555)
    os.chmod(folder, 0o555)
