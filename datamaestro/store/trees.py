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

from ..errors import StoreError, UntrustedInputError
from .digests import canonical_json, digest_bytes, is_digest
from .layout import Layout, disk_error, remove_tree
from .objects import ObjectStore
from .treewriter import MAX_ENTRIES, TreeRefusal, TreeWriter, resolve_link, split_tree_path

TREE_FORMAT = "datamaestro-tree/1"
#: the largest tree document read (bytes): refused before it is parsed
MAX_TREE_DOCUMENT = 1 << 30
#: the keys an entry of each kind has (what ``ingest_tree`` writes)
_ENTRY_KEYS = {
    "file": frozenset({"path", "kind", "digest", "size"}),
    "dir": frozenset({"path", "kind"}),
    "symlink": frozenset({"path", "kind", "target"}),
}


def _refused(digest: str, source: str, why: str) -> UntrustedInputError:
    """The one error of a tree document that fails validation."""
    origin = f" from {source}" if source else ""
    return UntrustedInputError(
        f"refused tree {digest or '(unnamed)'}{origin}: {why}",
        source=source,
        hint="the tree document is malformed or hostile: nothing of it was written",
    )


def validate_tree(entries, *, digest: str = "", source: str = "") -> list[dict]:
    """Checks the entries of a tree document that came from outside, before anything of it is used.

    Every path is relative and normalised (no ``..``, no empty or ``.``
    component, no NUL, bounded length), appears once, and is not below a
    file or a symbolic link of the same tree; kinds are ``file`` (a digest and
    a size), ``dir`` or ``symlink`` (a relative target that, resolved through
    the tree's own links, stays inside the tree, as ``ingest_tree``
    requires); at most :data:`~datamaestro.store.treewriter.MAX_ENTRIES`
    entries. Sizes are checked against the objects when the tree is
    materialized.

    :param entries: the ``entries`` list of the document
    :param digest: the tree's digest, for the message
    :param source: who served it (a remote, a peer), for the message
    :returns: the entries, sorted by path
    :raises UntrustedInputError: ``refused tree blake3:… from SOURCE: entry '../../x' leaves the tree``
    """
    if not isinstance(entries, list):
        raise _refused(digest, source, "its entries are not a list")
    if len(entries) > MAX_ENTRIES:
        raise _refused(digest, source, f"it has {len(entries)} entries, more than the {MAX_ENTRIES} allowed")
    kinds: dict[str, str] = {}
    links: dict[str, str] = {}
    try:
        for entry in entries:
            if not isinstance(entry, dict):
                raise TreeRefusal(str(entry)[:80], "is not an object")
            path = entry.get("path")
            split_tree_path(path)
            kind = entry.get("kind")
            keys = _ENTRY_KEYS.get(kind) if isinstance(kind, str) else None
            if keys is None:
                raise TreeRefusal(path, f"has the kind {kind!r} (a tree holds files, folders and symbolic links)")
            if entry.keys() != keys:
                raise TreeRefusal(path, f"has the fields {sorted(entry)}, not {sorted(keys)}")
            if kind == "file":
                if not is_digest(entry["digest"]):
                    raise TreeRefusal(path, f"has the malformed digest {str(entry['digest'])[:80]!r}")
                size = entry["size"]
                if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                    raise TreeRefusal(path, f"has the size {size!r}, not a whole number of bytes")
            elif kind == "symlink":
                links[path] = entry["target"]
            if path in kinds:
                raise TreeRefusal(path, "appears twice")
            kinds[path] = kind
        for path in kinds:
            cut = path.rfind("/")
            while cut > 0:
                parent = path[:cut]
                parent_kind = kinds.get(parent)
                if parent_kind == "dir":
                    break  # its own parents are checked as an entry of their own
                if parent_kind is not None:
                    what = "file" if parent_kind == "file" else "symbolic link"
                    raise TreeRefusal(path, f"is below the {what} {parent!r} of the same tree")
                cut = path.rfind("/", 0, cut)
        for path, target in links.items():
            resolve_link(path, target, links)
    except TreeRefusal as refusal:
        raise _refused(digest, source, str(refusal)) from None
    return sorted(entries, key=lambda e: e["path"])


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
        # files are hashed as they are met and committed in batches (one flush of the file system each);
        # what is left uncommitted on an error is in tmp/, swept with this process's other leftovers
        ingester = self.objects.ingester(move=move)
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
                    digest, size = ingester.add(full)
                    entries.append({"path": relative, "kind": "file", "digest": digest, "size": size})
                else:
                    raise StoreError(f"{full}: not a regular file, folder or link; cannot be stored")
        ingester.commit()
        return self.store_entries(entries)

    def store_entries(self, entries: list[dict]) -> str:
        """Stores a tree from its entries (their objects must be in the store); returns its digest.

        An entry is ``{"path", "kind": "file", "digest", "size"}``,
        ``{"path", "kind": "symlink", "target"}`` or ``{"path", "kind": "dir"}``.

        :raises UntrustedInputError: the entries break a rule of
            :func:`validate_tree` (checked before anything is stored)
        """
        entries = validate_tree(entries)
        data = canonical_json({"format": TREE_FORMAT, "entries": entries})
        digest = digest_bytes(data)
        if not self.objects.has(digest):
            self.objects.ingest_stream([data])
        self.materialize(digest)
        return digest

    def read(self, digest: str, *, source: str = "") -> dict:
        """The tree document of ``digest``, validated (:func:`validate_tree`).

        :param source: who served the object (a remote, a peer), for messages
        :raises UntrustedInputError: the object is not a valid tree document
        """
        path = self.objects.path_of(digest)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise StoreError(f"object {digest} is not in the store") from None
        if size > MAX_TREE_DOCUMENT:
            raise _refused(digest, source, f"the document is {size} bytes, more than the {MAX_TREE_DOCUMENT} allowed")
        with self.objects.open(digest) as fp:
            try:
                document = json.load(fp)
            except (ValueError, RecursionError):
                raise _refused(digest, source, "the object is not a tree document (not JSON)") from None
        if not isinstance(document, dict) or document.get("format") != TREE_FORMAT:
            raise _refused(digest, source, f"the object is not a tree document (no format {TREE_FORMAT!r})")
        document["entries"] = validate_tree(document.get("entries"), digest=digest, source=source)
        return document

    def materialize(self, digest: str, *, source: str = "") -> Path:
        """Makes ``trees/ab/cdef.../`` exist for a stored tree; returns its path.

        The document is validated first (:meth:`read`), then every entry is
        written through a :class:`~datamaestro.store.treewriter.TreeWriter`
        (relative to its folder's descriptor, never through a link): a bad
        document leaves nothing behind, and cannot write outside the tree.

        :param source: who served the tree, for messages
        :raises UntrustedInputError: the document is invalid, or an entry's size is not its object's
        """
        target = self.path_of(digest)
        if target.is_dir():
            return target
        document = self.read(digest, source=source)
        work = self.layout.tmp_path(".tree")
        try:
            os.mkdir(work)
            # string paths: on a tree of many small files the per-file Python
            # work is what a materialization costs
            objects = os.fspath(self.layout.objects)
            final = os.fspath(target)
            sep = os.sep
            with TreeWriter(work) as writer:
                for entry in document["entries"]:
                    path = entry["path"]
                    kind = entry["kind"]
                    if kind == "dir":
                        writer.directory(path)
                    elif kind == "symlink":
                        writer.symlink(path, entry["target"])
                    else:
                        hexdigest = entry["digest"][7:]
                        self._link_object(writer, objects + sep + hexdigest[:2] + sep + hexdigest[2:], entry, final, digest, source)
            if self.layout.install_folder(work, target):
                _freeze(target)
        except TreeRefusal as refusal:
            remove_tree(work)
            raise _refused(digest, source, str(refusal)) from None
        except (StoreError, UntrustedInputError):
            remove_tree(work)
            raise
        except OSError as exc:
            remove_tree(work)
            raise disk_error(exc, f"materializing tree {digest}") from None
        return target

    @staticmethod
    def _link_object(writer: TreeWriter, source: str, entry: dict, final: str, digest: str, origin: str) -> None:
        """Links an object as a file of the tree (a relative symlink where hard links are refused); checks its size."""
        path = entry["path"]
        try:
            size = writer.link_object(path, source)
            if size is None:
                size = os.stat(source).st_size
                # relative to where the tree will be, not to its work folder
                writer.symlink(path, os.path.relpath(source, os.path.dirname(os.path.join(final, path))))
        except FileNotFoundError:
            raise StoreError(f"object {entry['digest']} of a tree is missing from the store", hint="run `datamaestro store verify`") from None
        if size != entry["size"]:
            raise _refused(digest, origin, f"entry {path!r} says {entry['size']} bytes, its object {entry['digest']} has {size}")

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
