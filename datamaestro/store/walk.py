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
    #: the size each tree records for its files (filled when asked for: :class:`_Resolver` ``sizes``)
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
        with contextlib.suppress(StoreError, UntrustedInputError):
            # the sizes the tree records (checked against each object when it was materialized): no stat per file
            sizes = reach.sizes
            for entry in self.store.trees.iter_tree_entries(digest):
                if entry["kind"] == "file":
                    reach.objects.add(entry["digest"])
                    sizes[entry["digest"]] = entry["size"]


_NAMED_DIGEST = re.compile(rb"blake3:([0-9a-f]{64})")
#: bytes kept from one read to the next: a digest cut by a read is found whole in the next
_DIGEST_OVERLAP = len("blake3:") + 63


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
    with open(store.objects.path_of(digest), "rb") as fp:
        tail = b""
        while chunk := fp.read(1 << 20):
            data = tail + chunk
            # a digest in the overlap is found twice: the caller's set keeps one
            yield from ("blake3:" + match.decode() for match in _NAMED_DIGEST.findall(data))
            tail = data[-_DIGEST_OVERLAP:]


def _unreadable_folder(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # a folder that is gone links to nothing
        raise StoreError(f"cannot read {exc.filename}: {exc.strerror}", hint="fix its permissions, then run again") from None
