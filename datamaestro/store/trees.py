"""Folder trees: a folder is stored as its files' objects plus a tree object.

The tree object (the *tree document*) lists every entry of the folder; its
digest names the folder. A tree is materialized once as
``trees/ab/cdef.../``, a read-only folder whose files are hard links to the
objects (relative symlinks where hard links are not possible).

Tree documents are read and written as a stream, one entry at a time, so
that a tree of a million files costs a bounded amount of memory:

- **format 2** (``datamaestro-tree/2``, written by this release): one
  canonical JSON value per line: the header ``{"format":"datamaestro-tree/2"}``,
  then one entry per line, sorted by path, then the end line
  ``{"entries":N}`` (the number of entries: a truncated document is never
  taken for a smaller tree);
- **format 1** (``datamaestro-tree/1``, written by earlier releases, still
  read from this store, remotes and peers): the canonical JSON document
  ``{"entries":[...],"format":"datamaestro-tree/1"}``, read entry by entry.

Either way a document is accepted only if it is exactly the canonical
serialization of its entries (sorted keys, no spaces, entries sorted by
path): one tree has one document in each format, so one digest.
Every entry is checked as it is read (:class:`TreeChecker`); symbolic links
are resolved once the whole document has been read.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
from json.encoder import encode_basestring as _quote  # what json.dumps(ensure_ascii=False) quotes strings with
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..errors import StoreError, UntrustedInputError
from .digests import hasher, format_digest, is_digest
from .layout import Layout, disk_error, remove_tree
from .objects import ObjectStore
from .testpoints import pause
from .treeslices import TreeSlices
from .treewriter import MAX_ENTRIES, TreeRefusal, TreeWriter, check_link_target, resolve_link, split_tree_path

logger = logging.getLogger(__name__)

#: the format this release writes
TREE_FORMAT = "datamaestro-tree/2"
#: the format of earlier releases (one JSON document), still read
LEGACY_TREE_FORMAT = "datamaestro-tree/1"
#: the largest tree document read (bytes): refused before it is parsed
MAX_TREE_DOCUMENT = 1 << 30
#: the longest line of a format-2 document, or entry of a format-1 one (bytes):
#: an entry's path and link target are bounded (2048 and 4095 bytes), even escaped
MAX_TREE_LINE = 1 << 16
#: the most symbolic links of one tree: they are held in memory until the
#: document's end, where each is resolved through the others
MAX_TREE_LINKS = 200_000
#: the keys an entry of each kind has (what ``ingest_tree`` writes)
_ENTRY_KEYS = {
    "file": frozenset({"path", "kind", "digest", "size"}),
    "dir": frozenset({"path", "kind"}),
    "symlink": frozenset({"path", "kind", "target"}),
}
_KIND_NAMES = {"file": "file", "symlink": "symbolic link"}
_HEADER = b'{"format":"datamaestro-tree/2"}\n'
_LEGACY_HEAD = '{"entries":['
_LEGACY_TAIL = '],"format":"datamaestro-tree/1"}'
#: bytes read at a time from a document
_READ_CHUNK = 1 << 20
#: entries written per chunk of a document
_WRITE_BATCH = 4096
#: the canonical line of a file entry whose path holds nothing JSON escapes (what :func:`_entry_text` writes for it)
_FILE_LINE = re.compile(r'\{"digest":"(blake3:[0-9a-f]{64})","kind":"file","path":"([^"\\\x00-\x1f]*)","size":(0|[1-9][0-9]*)\}')


def _canonical(value) -> str:
    """The canonical text of a JSON value (as :func:`~datamaestro.store.digests.canonical_json`, not encoded)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_text(entry: dict) -> str:
    """The canonical text of a checked entry (:class:`TreeChecker`): what :func:`_canonical` gives, built faster.

    Only for an entry that passed the checks: a file's digest is
    ``blake3:`` and hex, its size a plain int.
    """
    kind = entry["kind"]
    if kind == "file":
        return '{"digest":"' + entry["digest"] + '","kind":"file","path":' + _quote(entry["path"]) + ',"size":' + str(entry["size"]) + "}"
    if kind == "dir":
        return '{"kind":"dir","path":' + _quote(entry["path"]) + "}"
    return '{"kind":"symlink","path":' + _quote(entry["path"]) + ',"target":' + _quote(entry["target"]) + "}"


def _refused(digest: str, source: str, why: str) -> UntrustedInputError:
    """The one error of a tree document that fails validation."""
    origin = f" from {source}" if source else ""
    return UntrustedInputError(
        f"refused tree {digest or '(unnamed)'}{origin}: {why}",
        source=source,
        hint="the tree document is malformed or hostile: nothing of it was written",
    )


class _DocumentRefusal(Exception):
    """The document as a whole is malformed (not one entry): turned into :func:`_refused`."""


class TreeChecker:
    """Checks the entries of a tree one at a time, in the order of its document, with bounded memory.

    Every path is relative and normalised (no ``..``, no empty or ``.``
    component, no NUL, bounded length), strictly after the previous one
    (sorted: no path appears twice), and not below a file or a symbolic link
    of the same tree; kinds are ``file`` (a digest and a size), ``dir`` or
    ``symlink`` (a relative target that, resolved through the tree's own
    links, stays inside the tree); at most
    :data:`~datamaestro.store.treewriter.MAX_ENTRIES` entries and
    :data:`MAX_TREE_LINKS` links.

    Sorted order makes the "below a file" check local: the files and links
    that a later path may still be below form a chain of nested prefixes
    (at most one per byte of a path), kept on a stack. Links are kept until
    :meth:`finish`, which resolves each of them through the others.

    Use: ``check(entry)`` for each entry (raises
    :class:`~datamaestro.store.treewriter.TreeRefusal`), then ``finish()``.
    """

    def __init__(self):
        self.count = 0
        self.previous: str | None = None
        #: files and links a later path may be below, innermost last
        self._leaves: list[str] = []
        self._leaf_kinds: dict[str, str] = {}
        self.links: dict[str, str] = {}

    def check(self, entry) -> dict:
        """Checks one entry (the next one of the tree); returns it."""
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
            check_link_target(path, entry["target"])
        return self._place(path, kind, entry)

    def check_file(self, digest: str, path: str, size: int) -> dict:
        """Checks the next entry when it is a file whose digest and size are already known well formed; returns it.

        For the file lines of a document read by their pattern (a digest of
        64 hex digits, a whole size): :meth:`check` without the checks of
        fields that pattern already made, on the commonest entry of every
        tree read (``store verify`` reads every tree).
        """
        split_tree_path(path)
        return self._place(path, "file", {"digest": digest, "kind": "file", "path": path, "size": size})

    def _place(self, path: str, kind: str, entry: dict) -> dict:
        """The checks of an entry against the ones before it (order, below a file or a link, counts); returns it."""
        previous = self.previous
        if previous is not None and path <= previous:
            if path == previous:
                raise TreeRefusal(path, "appears twice")
            raise TreeRefusal(path, f"comes after {previous!r}: a tree's entries are sorted by path")
        self.previous = path
        leaves = self._leaves
        if leaves:
            # a leaf L can be above the paths in [L + "/", L + "0") only
            while leaves and path >= leaves[-1] + "0":
                del self._leaf_kinds[leaves.pop()]
            cut = path.rfind("/")
            while leaves and cut > 0:
                parent = path[:cut]
                parent_kind = self._leaf_kinds.get(parent)
                if parent_kind is not None:
                    raise TreeRefusal(path, f"is below the {_KIND_NAMES[parent_kind]} {parent!r} of the same tree")
                cut = path.rfind("/", 0, cut)
        if kind != "dir":
            leaves.append(path)
            self._leaf_kinds[path] = kind
        if kind == "symlink":
            if len(self.links) >= MAX_TREE_LINKS:
                raise TreeRefusal(path, f"is one symbolic link too many: a tree holds at most {MAX_TREE_LINKS}")
            self.links[path] = entry["target"]
        self.count += 1
        if self.count > MAX_ENTRIES:
            raise TreeRefusal(path, f"is one entry too many: a tree holds at most {MAX_ENTRIES}")
        return entry

    def finish(self) -> None:
        """Checks what needs the whole tree: every link stays inside it."""
        for path, target in self.links.items():
            resolve_link(path, target, self.links)


def validate_tree(entries, *, digest: str = "", source: str = "") -> list[dict]:
    """Checks a list of tree entries that came from outside, before anything of it is used.

    The rules of :class:`TreeChecker`, for entries given as a list in any
    order (they are sorted first: a repeated path is then refused as
    appearing twice).

    :param entries: the entries
    :param digest: the tree's digest, for the message
    :param source: who served it (a remote, a peer), for the message
    :returns: the entries, sorted by path
    :raises UntrustedInputError: ``refused tree blake3:… from SOURCE: entry '../../x' leaves the tree``
    """
    if not isinstance(entries, list):
        raise _refused(digest, source, "its entries are not a list")
    if len(entries) > MAX_ENTRIES:
        raise _refused(digest, source, f"it has {len(entries)} entries, more than the {MAX_ENTRIES} allowed")
    try:
        for entry in entries:
            if not isinstance(entry, dict):
                raise TreeRefusal(str(entry)[:80], "is not an object")
            if not isinstance(entry.get("path"), str):
                split_tree_path(entry.get("path"))
        ordered = sorted(entries, key=lambda e: e["path"])
        checker = TreeChecker()
        for entry in ordered:
            checker.check(entry)
        checker.finish()
    except TreeRefusal as refusal:
        raise _refused(digest, source, str(refusal)) from None
    return ordered


def document_chunks(entries: Iterable[dict], checker: TreeChecker | None = None) -> Iterator[bytes]:
    """The bytes of the format-2 document of ``entries`` (sorted by path), in chunks.

    Each entry goes through ``checker`` (a new :class:`TreeChecker` when
    None) before it is written, and the links are resolved before the end
    line: nothing invalid comes out whole.

    :raises TreeRefusal: an entry breaks a rule
    """
    checker = checker if checker is not None else TreeChecker()
    yield _HEADER
    batch: list[str] = []
    for entry in entries:
        batch.append(_entry_text(checker.check(entry)))
        if len(batch) >= _WRITE_BATCH:
            batch.append("")
            yield "\n".join(batch).encode()
            batch = []
    checker.finish()
    batch.append(_canonical({"entries": checker.count}))
    yield ("\n".join(batch) + "\n").encode()


def legacy_document_chunks(entries: Iterable[dict]) -> Iterator[bytes]:
    """The bytes of the format-1 document (earlier releases) of checked, sorted ``entries``, in chunks.

    The same bytes ``canonical_json({"format": "datamaestro-tree/1", "entries": entries})``
    gave, so the same digest: what a lock file written by an earlier release pins.
    """
    yield _LEGACY_HEAD.encode()
    batch: list[str] = []
    first = True
    for entry in entries:
        batch.append(_entry_text(entry))
        if len(batch) >= _WRITE_BATCH:
            yield (("" if first else ",") + ",".join(batch)).encode()
            first = False
            batch = []
    if batch:
        yield (("" if first else ",") + ",".join(batch)).encode()
    yield _LEGACY_TAIL.encode()


def _read_document(fp: BinaryIO, checker: TreeChecker) -> Iterator[dict]:
    """The checked entries of a tree document, either format, read as a stream.

    :raises _DocumentRefusal: the document is not a tree document, is
        truncated, or is not canonical
    :raises TreeRefusal: an entry breaks a rule
    """
    start = fp.read(len(_HEADER))
    if start == _HEADER:
        yield from _read_lines(fp, checker)
    elif start.startswith(_LEGACY_HEAD.encode()):
        yield from _read_legacy(fp, start, checker)
    else:
        raise _DocumentRefusal(f"the object is not a tree document (neither {TREE_FORMAT!r} nor {LEGACY_TREE_FORMAT!r})")


def _read_lines(fp: BinaryIO, checker: TreeChecker) -> Iterator[dict]:
    """The entries of a format-2 document after its header."""
    number = 1
    loads = json.loads
    file_line = _FILE_LINE.fullmatch
    while True:
        line = fp.readline(MAX_TREE_LINE + 1)
        number += 1
        if not line:
            raise _DocumentRefusal("the document is truncated (it has no end line)")
        if len(line) > MAX_TREE_LINE:
            raise _DocumentRefusal(f"line {number} is longer than {MAX_TREE_LINE} bytes")
        if line[-1:] != b"\n":
            raise _DocumentRefusal(f"the document is truncated (line {number} has no end)")
        try:
            text = line[:-1].decode("utf-8")
        except ValueError:
            raise _DocumentRefusal(f"line {number} is not JSON") from None
        fast = file_line(text)
        if fast is not None:
            # the common line, a file whose path needs no escape: canonical by construction, no JSON parse
            yield checker.check_file(fast[1], fast[2], int(fast[3]))
            continue
        try:
            value = loads(text)
        except (ValueError, RecursionError):
            raise _DocumentRefusal(f"line {number} is not JSON") from None
        if isinstance(value, dict) and value.keys() == {"entries"}:
            if _canonical(value) != text:
                raise _DocumentRefusal(f"line {number} is not canonical JSON (sorted keys, no spaces): a tree has one document")
            if type(value["entries"]) is not int or value["entries"] != checker.count:
                raise _DocumentRefusal(f"its end line says {str(value['entries'])[:40]} entries, it has {checker.count}")
            if fp.read(1):
                raise _DocumentRefusal("it holds bytes after its end line")
            checker.finish()
            return
        entry = checker.check(value)
        if _entry_text(entry) != text:
            raise _DocumentRefusal(f"line {number} is not canonical JSON (sorted keys, no spaces): a tree has one document")
        yield entry


def _read_legacy(fp: BinaryIO, start: bytes, checker: TreeChecker) -> Iterator[dict]:
    """The entries of a format-1 document (one canonical JSON object), read entry by entry."""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    decode = json.JSONDecoder().raw_decode
    text = utf8.decode(start[len(_LEGACY_HEAD):])
    pos = 0
    eof = False
    first = True

    def fill(text: str, pos: int) -> tuple[str, bool]:
        chunk = fp.read(_READ_CHUNK)
        return text[pos:] + utf8.decode(chunk, final=not chunk), not chunk

    try:
        while True:
            while not eof and len(text) - pos < MAX_TREE_LINE:
                text, eof = fill(text, pos)
                pos = 0
            if text.startswith("]", pos):
                if text[pos:] != _LEGACY_TAIL:
                    raise _DocumentRefusal(f"the document is truncated or does not end as a {LEGACY_TREE_FORMAT!r} document")
                checker.finish()
                return
            if not first:
                if not text.startswith(",", pos):
                    raise _DocumentRefusal("the document is truncated or malformed (no ',' or ']' after an entry)")
                pos += 1
            first = False
            if not text.startswith("{", pos):
                raise _DocumentRefusal("the document is truncated or malformed (an entry is not an object)")
            try:
                value, end = decode(text, pos)
            except (ValueError, RecursionError):
                if not eof:
                    raise _DocumentRefusal(f"an entry is longer than {MAX_TREE_LINE} bytes") from None
                raise _DocumentRefusal("the document is truncated or malformed (an entry is not JSON)") from None
            if end - pos > MAX_TREE_LINE:
                raise _DocumentRefusal(f"an entry is longer than {MAX_TREE_LINE} bytes")
            entry = checker.check(value)
            if _entry_text(entry) != text[pos:end]:
                raise _DocumentRefusal("an entry is not canonical JSON (sorted keys, no spaces): a tree has one document")
            pos = end
            yield entry
    except UnicodeDecodeError:
        raise _DocumentRefusal("the document is not UTF-8") from None


def _sorted_walk(folder: str, relative: str = "") -> Iterator[tuple[str, str, str]]:
    """``(relative path, full path, kind)`` of every entry of a folder, sorted by relative path.

    Kinds: ``file``, ``symlink``, ``special`` (neither), and ``dir`` for an
    empty folder (a folder with entries is given by them). The order is
    the order of the paths as strings, so a folder's name sorts as
    ``name/`` among its siblings (``a-b`` before ``a/x``); only the names of
    the folders on the way down are held.
    """
    names = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.is_symlink():
                names.append((entry.name, entry.name, "symlink"))
            elif entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as inner:
                    empty = next(inner, None) is None
                names.append((entry.name if empty else entry.name + "/", entry.name, "dir" if empty else "folder"))
            elif entry.is_file(follow_symlinks=False):
                names.append((entry.name, entry.name, "file"))
            else:
                names.append((entry.name, entry.name, "special"))
    names.sort()
    for _, name, kind in names:
        path = relative + name
        full = os.path.join(folder, name)
        if kind == "folder":
            yield from _sorted_walk(full, path + "/")
        else:
            yield path, full, kind


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

    def ingest_tree(self, folder: Path, *, move: bool = False, hashed: dict[str, tuple[str, int]] | None = None, install: bool = False) -> str:
        """Stores a folder; returns the digest of its tree.

        The folder is walked in the order of the tree's entries and the
        document written as the walk goes: memory does not grow with the
        number of files.

        :param move: files may be renamed into the store (the folder is
            consumed); otherwise they are copied
        :param hashed: relative path -> (digest, size) of files this process
            wrote into the store's ``tmp/`` while hashing them, read-only
            (an extraction): not read again; consumed
        :param install: (with ``move``, a folder in the store's ``tmp/``)
            each file stays where it is as a second name of its object, and
            the folder itself becomes the tree's materialization (renamed
            into ``trees/``), instead of a new folder of links made from the
            document: per file, one name fewer to create and one to remove
        :raises StoreError: on a symlink leading outside the folder or a
            special file (device, fifo, socket)
        """
        folder = os.fspath(folder)
        hashed = {} if hashed is None else hashed
        # files are hashed as they are met and committed in batches (one flush of the file system each);
        # what is left uncommitted on an error is in tmp/, swept with this process's other leftovers
        # a file system whose link() moves the mtime (SeaweedFS) would make each in-place file's stamp stale:
        # there the tree is materialized from the document, which puts the mtime back (see materialize)
        ingester = self.objects.ingester(move=move, in_place=install and move and self.layout.precise_stat)
        # the files' digests in the tree's order, for the rotation of the on-use check (see materialize):
        # needed only when the folder itself becomes the materialization
        files = bytearray()
        gather = ingester.in_place

        def entries() -> Iterator[dict]:
            for relative, full, kind in _sorted_walk(folder):
                if kind == "symlink":
                    target = os.readlink(full)
                    resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target))
                    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
                        raise StoreError(f"{full}: symbolic link to {target} leads outside the folder")
                    yield {"path": relative, "kind": "symlink", "target": target}
                elif kind == "file":
                    digest, size = ingester.add(full, hashed.pop(relative, None))
                    if gather:
                        files.extend(bytes.fromhex(digest[7:]))
                    yield {"path": relative, "kind": "file", "digest": digest, "size": size}
                elif kind == "dir":
                    yield {"path": relative, "kind": "dir"}
                else:
                    raise StoreError(f"{full}: not a regular file, folder or link; cannot be stored")
            # the objects are committed before the document that names them is (it is read to its end first)
            ingester.commit()

        try:
            in_place = ingester.in_place
            digest = self._store_sorted(entries(), materialize=not in_place)
            if in_place:
                # every file of the folder is a name of its object (unless the ingester had to give up), its
                # entries are the document's (it was walked to write it, in this process's tmp/): it is the
                # materialization
                target = self.path_of(digest)
                if not (ingester.in_place and not target.is_dir() and self.layout.install_folder(Path(folder), target)):
                    self.materialize(digest)
                else:
                    _freeze(target)
                    TreeSlices(self.layout).materialized(digest, files)
            return digest
        except PermissionError as exc:
            raise StoreError(f"cannot read {exc.filename}: {exc.strerror}", hint="fix its permissions, then run again") from None

    def store_entries(self, entries: list[dict]) -> str:
        """Stores a tree from its entries (their objects must be in the store); returns its digest.

        An entry is ``{"path", "kind": "file", "digest", "size"}``,
        ``{"path", "kind": "symlink", "target"}`` or ``{"path", "kind": "dir"}``,
        in any order (a tree of a million entries: :meth:`ingest_tree`, which
        never holds them all).

        :raises UntrustedInputError: the entries break a rule of
            :func:`validate_tree` (checked before anything is stored)
        """
        return self._store_sorted(iter(validate_tree(entries)))

    def _store_sorted(self, entries: Iterator[dict], *, materialize: bool = True) -> str:
        """Writes the format-2 document of entries given in path order, then materializes it (unless not ``materialize``); returns its digest."""
        try:
            with self.objects.writer() as out:
                for chunk in document_chunks(entries):
                    out.write(chunk)
                digest = out.commit()
        except TreeRefusal as refusal:
            raise _refused("", "", str(refusal)) from None
        if materialize:
            self.materialize(digest)
        return digest

    # -- reading
    def _open_document(self, digest: str, source: str) -> BinaryIO:
        """The tree document of ``digest``, opened, its size checked."""
        path = self.objects.path_of(digest)
        try:
            fp = open(path, "rb", buffering=_READ_CHUNK)
        except FileNotFoundError:
            raise StoreError(f"object {digest} is not in the store") from None
        size = os.fstat(fp.fileno()).st_size
        if size > MAX_TREE_DOCUMENT:
            fp.close()
            raise _refused(digest, source, f"the document is {size} bytes, more than the {MAX_TREE_DOCUMENT} allowed")
        return fp

    def iter_tree_entries(self, digest: str, *, source: str = "") -> Iterator[dict]:
        """The entries of the tree ``digest``, sorted by path, each checked as it is read; bounded memory.

        The way to read a tree (the on-use check and the remote transfers
        read trees through it): never the whole document at once, either format (:data:`TREE_FORMAT`, :data:`LEGACY_TREE_FORMAT`).
        Entries are dicts as :meth:`store_entries` takes them. The links are
        resolved once the last entry is read: an iteration that stops early
        has not seen them checked (:meth:`check` reads the whole document
        first, for a tree from outside).

        :param source: who served the object (a remote, a peer), for messages
        :raises StoreError: the object is not in the store
        :raises UntrustedInputError: the object is not a valid tree document
            (raised when the bad entry, or the end, is reached)
        """
        with self._open_document(digest, source) as fp:
            try:
                yield from _read_document(fp, TreeChecker())
            except TreeRefusal as refusal:
                raise _refused(digest, source, str(refusal)) from None
            except _DocumentRefusal as refusal:
                raise _refused(digest, source, str(refusal)) from None

    def check(self, digest: str, *, source: str = "") -> int:
        """Reads the whole tree document of ``digest``, checking every entry (:class:`TreeChecker`); returns its number of entries.

        :raises UntrustedInputError: the object is not a valid tree document
        """
        count = 0
        for _ in self.iter_tree_entries(digest, source=source):
            count += 1
        return count

    def read(self, digest: str, *, source: str = "") -> dict:
        """The tree document of ``digest`` as one dict ``{"format", "entries": [...]}``, validated.

        Holds every entry in memory: for small trees and tests only; the
        store itself reads trees with :meth:`iter_tree_entries`.

        :raises UntrustedInputError: the object is not a valid tree document
        """
        return {"format": TREE_FORMAT, "entries": list(self.iter_tree_entries(digest, source=source))}

    def iter_object_digests(self, digest: str):
        """The digests of every file of a tree (its own digest excluded), read as a stream."""
        for entry in self.iter_tree_entries(digest):
            if entry["kind"] == "file":
                yield entry["digest"]

    def legacy_digest(self, digest: str) -> str:
        """The digest the tree ``digest`` has in the format of earlier releases (:data:`LEGACY_TREE_FORMAT`).

        Computed from the entries in a stream, nothing written: a lock file
        written by an earlier release pins that digest.
        """
        h = hasher()
        for chunk in legacy_document_chunks(self.iter_tree_entries(digest)):
            h.update(chunk)
        return format_digest(h.hexdigest())

    def as_pinned(self, digest: str, pinned: str) -> str | None:
        """The tree ``digest`` under the digest ``pinned``, when that is its digest in the format of earlier releases.

        A lock file written by an earlier release pins format-1 tree
        digests; a tree produced anew is written in format 2. When the
        entries are the same, the format-1 document is written (a stream)
        and materialized, and ``pinned`` is returned: the lock holds.
        None when ``pinned`` is another tree.
        """
        if self.legacy_digest(digest) != pinned:
            return None
        if not self.objects.has(pinned):
            with self.objects.writer(expect=pinned) as out:
                for chunk in legacy_document_chunks(self.iter_tree_entries(digest)):
                    out.write(chunk)
                out.commit()
        self.materialize(pinned)
        return pinned

    def materialize(self, digest: str, *, source: str = "") -> Path:
        """Makes ``trees/ab/cdef.../`` exist for a stored tree; returns its path.

        The document is read as a stream, each entry checked
        (:class:`TreeChecker`) then written through a
        :class:`~datamaestro.store.treewriter.TreeWriter` (relative to its
        folder's descriptor, never through a link) into a work folder that
        is put in place only once the whole document, links included, is
        checked: a bad document leaves nothing behind, and cannot write
        outside the tree.

        :param source: who served the tree, for messages
        :raises UntrustedInputError: the document is invalid, or an entry's size is not its object's
        """
        target = self.path_of(digest)
        if target.is_dir():
            return target
        pause("tree-materialize")
        entries = self.iter_tree_entries(digest, source=source)
        work = self.layout.tmp_path(".tree")
        try:
            os.mkdir(work)
            # string paths: on a tree of many small files the per-file Python
            # work is what a materialization costs
            objects = os.fspath(self.layout.objects)
            final = os.fspath(target)
            sep = os.sep
            # the files' digests in the tree's order (32 bytes each), for the rotation of the on-use check
            files = bytearray()
            # SeaweedFS's link() sets the linked file's modification time: put back after each link (see _link_object)
            keep_mtime = not self.layout.precise_stat
            # entries are checked sorted and unique: the writer need not remember files
            with TreeWriter(work, remember_leaves=False) as writer:
                for entry in entries:
                    path = entry["path"]
                    kind = entry["kind"]
                    if kind == "dir":
                        writer.directory(path)
                    elif kind == "symlink":
                        writer.symlink(path, entry["target"])
                    else:
                        hexdigest = entry["digest"][7:]
                        self._link_object(writer, objects + sep + hexdigest[:2] + sep + hexdigest[2:], entry, final, digest, source, keep_mtime)
                        files += bytes.fromhex(hexdigest)
            if self.layout.install_folder(work, target):
                _freeze(target)
                # the first use of a large tree checks one slice, not every file (see treeslices)
                TreeSlices(self.layout).materialized(digest, files)
        except TreeRefusal as refusal:
            entries.close()
            remove_tree(work)
            raise _refused(digest, source, str(refusal)) from None
        except (StoreError, UntrustedInputError):
            entries.close()
            remove_tree(work)
            raise
        except OSError as exc:
            entries.close()
            remove_tree(work)
            raise disk_error(exc, f"materializing tree {digest}") from None
        except BaseException:
            entries.close()
            remove_tree(work)
            raise
        return target

    @staticmethod
    def _link_object(writer: TreeWriter, source: str, entry: dict, final: str, digest: str, origin: str, keep_mtime: bool = False) -> None:
        """Links an object as a file of the tree (a relative symlink where hard links are refused); checks its size.

        :param keep_mtime: put the object's modification time back after
            the link when the link changed it (SeaweedFS's ``link()`` sets it
            to the time of the link: its stamp, recorded when it was
            committed, would no longer match, and the next use would take
            the object for changed). Only a change the link made is undone:
            an object that differed from its stamp before stays so.
        """
        path = entry["path"]
        try:
            before = os.stat(source) if keep_mtime else None
            size = writer.link_object(path, source)
            if before is not None and size is not None:
                _put_back_mtime(source, before)
            if size is None:
                size = os.stat(source).st_size
                # relative to where the tree will be, not to its work folder
                writer.symlink(path, os.path.relpath(source, os.path.dirname(os.path.join(final, path))))
        except FileNotFoundError:
            raise StoreError(f"object {entry['digest']} of a tree is missing from the store", hint="run `datamaestro store verify`") from None
        if size != entry["size"]:
            raise _refused(digest, origin, f"entry {path!r} says {entry['size']} bytes, its object {entry['digest']} has {size}")


def _put_back_mtime(source: str, before: os.stat_result) -> None:
    """Sets the modification time of the object ``source`` back to ``before``'s when a link just changed it (and nothing else)."""
    after = os.stat(source)
    if after.st_mtime_ns == before.st_mtime_ns or (after.st_ino, after.st_size) != (before.st_ino, before.st_size):
        return
    try:
        os.utime(source, ns=(after.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)
    except OSError as exc:
        # another member's object (only its owner may set its times): its next use compares it whole
        logger.debug("cannot put back the modification time of %s after linking it: %s", source, exc)


def _freeze(folder: Path) -> None:
    """Removes write access on every folder of a materialized tree."""
    for dirpath, dirnames, _ in os.walk(folder, topdown=False):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o555)
    os.chmod(folder, 0o555)
