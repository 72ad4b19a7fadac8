"""What the maintenance operations share: the store's fan-out folders walked, and what the roots reach (:class:`_Resolver`)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import StoreError, UntrustedInputError
from . import Store
from .digests import format_digest, is_digest
from .layout import make_writable


def _fanout(base: Path) -> Iterator[tuple[str, os.DirEntry]]:
    """``(hex name, entry)`` for every entry of a two-level fan-out folder (``base/ab/cdef...``)."""
    if not base.is_dir():
        return
    for fan in os.scandir(base):
        if len(fan.name) == 2 and fan.is_dir(follow_symlinks=False):
            for entry in os.scandir(fan.path):
                yield fan.name + entry.name, entry


def _is_fan_folder(entry: os.DirEntry) -> bool:
    """Whether an entry at the top of ``objects/`` is a fan-out folder: a directory with a two-character name.

    A symbolic link is never one, whatever it points to: a link planted at
    the top of ``objects/`` (by a member of a group store, in a copy of a
    store) would have verify read, and quarantine, files outside the store,
    and gc delete them.
    """
    return len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)


def _fan_folders(objects: str) -> list[os.DirEntry]:
    """The fan-out folders of ``objects`` (see :func:`_is_fan_folder`; none when it does not exist)."""
    try:
        return [entry for entry in os.scandir(objects) if _is_fan_folder(entry)]
    except FileNotFoundError:
        return []


def _stray_entries(objects: str) -> list[str]:
    """The names at the top of ``objects`` that are not fan-out folders (a file, a fifo, a link planted there; none when it does not exist).

    Nothing of datamaestro writes there: the maintenance commands name
    them (see :func:`not_an_object`) and leave them as they are. A
    symbolic link is one of them, whatever it points to (see
    :func:`_is_fan_folder`).
    """
    try:
        return sorted(entry.name for entry in os.scandir(objects) if not _is_fan_folder(entry))
    except FileNotFoundError:
        return []


def not_an_object(area: str, name: str, why: str) -> str:
    """The one line naming an entry of ``objects/`` or ``stamps/`` that is not what the store writes there, left as it is.

    :param area: ``objects`` or ``stamps``
    :param name: its path below ``area`` (fan-out folder, separator, name);
        any bytes a member of a group store or a peer put there (a space, a
        line break, bytes that are not UTF-8): shown by ``repr``, whole, on
        one line
    :param why: what it is (``a fifo``, ``its name is not a digest``)
    """
    return f"{area + '/' + name!r}: not an object ({why}), left as it is"


def _object_batches(objects: str, size: int, prefix: str = "") -> Iterator[list[str]]:
    """The hex names of every object below ``objects``, in lists of at most ``size``, one fan-out folder listed at a time.

    Memory is one fan-out folder's names (1/256 of the store), never the
    whole store's; names only, no ``stat`` per object. A fan-out folder is
    listed whole before its first batch is yielded, so the caller may
    remove what a batch names.

    :param prefix: put before every name (``blake3:`` gives digests, compared
        as they are against a set of digests: no conversion per object)
    """
    for fan in _fan_folders(objects):
        try:
            names = os.listdir(fan.path)
        except FileNotFoundError:
            continue  # removed meanwhile (gc): nothing to check
        start = prefix + fan.name
        for index in range(0, len(names), size):
            yield [start + name for name in names[index : index + size]]


def _view_folders(store: Store) -> list[tuple[str, Path]]:
    """``(manifest digest, folder)`` of every view."""
    views = store.layout.views
    return [(format_digest(name), views / name) for name in sorted(os.listdir(views))] if views.is_dir() else []


def _tree_folders(store: Store) -> list[tuple[str, Path]]:
    """``(tree digest, folder)`` of every materialized tree."""
    return [(format_digest(hexdigest), Path(entry.path)) for hexdigest, entry in _fanout(store.layout.trees)]


def _age(path: Path, now: float) -> float | None:
    """Seconds since ``path`` was created or renamed into place (None when gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return _age_of(st, now)


def _age_of(st: os.stat_result, now: float) -> float:
    """Seconds since the entry ``st`` describes was created or renamed into place."""
    # rename (how every entry arrives) updates ctime; mtime covers file systems that do not
    return now - max(st.st_ctime, st.st_mtime)


def _remove_folder(path: Path, errors: list[str]) -> bool:
    """Removes a (possibly read-only) folder; failures go to ``errors``."""
    failures = []
    try:
        make_writable(path)
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror or exc}")
        return False
    shutil.rmtree(path, onerror=lambda _f, p, exc_info: failures.append(f"{p}: {exc_info[1]}"))
    errors.extend(failures)
    return not failures


@dataclass
class _Reach:
    """What a set of roots keeps alive: digests of views (manifests), trees and objects."""

    views: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    #: when given (``store du``), a tree's files go here, with the size the tree records, instead of into ``objects``
    sizes: dict[str, int] | None = None


class _Resolver:
    """Turns paths into the store entries they lead to and marks what they keep alive."""

    def __init__(self, store: Store):
        self.store = store
        layout = store.layout
        self.bases = {
            "view": os.path.realpath(layout.views),
            "tree": os.path.realpath(layout.trees),
            "object": os.path.realpath(layout.objects),
        }

    def classify(self, path: str) -> tuple[str, str] | None:
        """``(kind, digest)`` of the store entry a path resolves into, or None."""
        resolved = os.path.realpath(path)
        for kind, base in self.bases.items():
            if not resolved.startswith(base + os.sep):
                continue
            parts = resolved[len(base) + 1 :].split(os.sep)
            hexdigest = parts[0] if kind == "view" else "".join(parts[:2])
            digest = format_digest(hexdigest)
            return (kind, digest) if is_digest(digest) else None
        return None

    def links(self, folder: Path) -> Iterator[tuple[Path, str, str]]:
        """``(link path, kind, digest)`` for every symlink below ``folder`` leading into the store.

        :raises StoreError: when a folder cannot be read: gc must not delete
            what it could not see being used
        """
        for dirpath, dirnames, filenames in os.walk(folder, onerror=_unreadable_folder):
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    target = self.classify(full)
                    if target is not None:
                        yield Path(full), *target

    def mark(self, kind: str, digest: str, reach: _Reach) -> None:
        """Adds an entry and everything it needs to ``reach`` (malformed digests are ignored)."""
        if not is_digest(digest or ""):
            return
        if kind == "view":
            self._mark_view(digest, reach)
        elif kind == "tree":
            self._mark_tree(digest, reach)
        else:
            reach.objects.add(digest)

    def _mark_view(self, manifest: str, reach: _Reach) -> None:
        if manifest in reach.views:
            return
        reach.views.add(manifest)
        reach.objects.add(manifest)
        try:
            entries = self.store.views.read_manifest(manifest)
        except StoreError:
            # the manifest is gone or damaged (quarantined by verify): the view's
            # own links still say what it needs
            for _, kind, digest in self.links(self.store.views.path_of(manifest)):
                self.mark(kind, digest, reach)
            return
        for kind, digest in entries.values():
            self.mark("tree" if kind == "tree" else "object", digest, reach)

    def _mark_tree(self, digest: str, reach: _Reach) -> None:
        if digest in reach.trees:
            return
        reach.trees.add(digest)
        reach.objects.add(digest)
        if reach.sizes is None:
            # what keeps objects alive needs no parse: every digest the document names
            with contextlib.suppress(OSError):
                reach.objects.update(_named_digests(self.store, digest))
            return
        try:
            _record_sizes(self.store, digest, reach.sizes)
        except OSError:
            pass  # the document is gone: its files are not counted (verify reports it)
        except _NotScannable:
            # not the canonical text a stored tree has: read it entry by entry, each checked
            with contextlib.suppress(StoreError, UntrustedInputError):
                for entry in self.store.trees.iter_tree_entries(digest):
                    if entry["kind"] == "file":
                        reach.sizes[entry["digest"]] = entry["size"]


#: bytes read at a time from a stored document
_SCAN_CHUNK = 1 << 20
_NAMED_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")
#: characters kept from one read to the next: a digest cut by a read is found whole in the next
_DIGEST_OVERLAP = len("blake3:") + 63
#: the start of a file entry of a tree document, in the canonical text both formats write (sorted keys, no spaces);
#: the digest's 64 characters are not checked as hex (twice as fast): the document was checked entry by entry when the
#: tree was materialized, and du only counts what it names
_FILE_ENTRY_DIGEST = re.compile(r'\{"digest":"(blake3:[^"]{64})","kind":"file","path":"')
#: the end of a file entry (its last key): a JSON string never holds ``","`` (a quote in it is escaped), so only an entry's own keys match
_FILE_ENTRY_SIZE = re.compile(r'","size":([0-9]+)\}')
#: where a JSON object starts (a JSON string never holds ``{"``): a read is cut there, so entries are scanned whole
_OBJECT_START = b'{"'
#: the longest run of bytes without an object start a scan carries to the next read (a longer entry is not a stored tree's)
_MAX_CARRY = 1 << 17


def _decoded_chunks(path: str, overlap: int | None = None) -> Iterator[str]:
    """The bytes of a stored document in pieces of about :data:`_SCAN_CHUNK`, as text (latin-1: every byte one character, ASCII as is).

    Only ASCII is looked for (digests, sizes, keys), which latin-1 keeps as
    it is, and a byte is never an error. With ``overlap``, each piece
    repeats the last ``overlap`` characters of the previous one; without,
    pieces are cut where a JSON object starts (:data:`_OBJECT_START`), so an
    entry is never cut.

    :raises OSError: the document cannot be read (it is gone)
    :raises _NotScannable: no object starts in more than :data:`_MAX_CARRY` bytes
    """
    with open(path, "rb") as fp:
        carry = b""
        while chunk := fp.read(_SCAN_CHUNK):
            data = carry + chunk
            if overlap is not None:
                cut = len(data)
                carry = data[-overlap:]
            else:
                cut = max(data.rfind(_OBJECT_START), 0)
                carry = data[cut:]
                if len(carry) > _MAX_CARRY:
                    raise _NotScannable(path)
            yield data[:cut].decode("latin-1")
        if overlap is None:
            yield carry.decode("latin-1")


class _NotScannable(Exception):
    """A stored document is not the canonical text of a tree (:func:`_record_sizes`): it is read entry by entry instead."""


def _record_sizes(store: Store, digest: str, sizes: dict[str, int]) -> None:
    """Adds every file a stored tree document records, with its size, to ``sizes``, from the document's text.

    What ``store du`` counts: the sizes a tree records (each checked against
    its object when the tree was materialized; ``store verify`` checks the
    document again). Parsing and checking a million entries one by one
    costs several times listing the store; a tree in the store is canonical
    JSON (both formats write each file as
    ``{"digest":…,"kind":"file","path":…,"size":…}``), so two regular
    expressions over its text find every file's digest and size, in order,
    read in a stream.

    :raises OSError: the document cannot be read (it is gone)
    :raises _NotScannable: its text is not what a stored tree's is (a digest
        without its size): the caller reads it through the checked reader
    """
    for text in _decoded_chunks(os.fspath(store.objects.path_of(digest))):
        digests = _FILE_ENTRY_DIGEST.findall(text)
        recorded = _FILE_ENTRY_SIZE.findall(text)
        if len(digests) != len(recorded):
            raise _NotScannable(digest)
        sizes.update(zip(digests, map(int, recorded)))


def _named_digests(store: Store, digest: str) -> Iterator[str]:
    """Every digest the bytes of a stored document name (a tree's), read in a stream, without parsing it.

    What keeps objects alive (gc, release, who keeps an object) only needs
    the digests a tree names, not the tree checked entry by entry (which
    materializing it and ``store verify`` do): a scan of the document's
    bytes finds every file's digest (canonical JSON writes them as they
    are), at the cost of reading the document, in bounded memory. Anything
    else in the document that reads as a digest (a file named like one) is
    kept alive as well, which errs on the side of keeping; so does a
    document that would not parse (its objects are kept, ``store verify``
    reports it).

    :raises OSError: the document cannot be read (it is gone)
    """
    for text in _decoded_chunks(os.fspath(store.objects.path_of(digest)), overlap=_DIGEST_OVERLAP):
        # a digest in the overlap is found twice: the caller's set keeps one
        yield from _NAMED_DIGEST.findall(text)


def _unreadable_folder(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # a folder that is gone links to nothing
        raise StoreError(f"cannot read {exc.filename}: {exc.strerror}", hint="fix its permissions, then run again") from None
