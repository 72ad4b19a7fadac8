"""GC roots: files in ``roots/`` that name what must be kept.

A root is registered by the data dirs that link into the store (``data``)
and by synced lock files (``lock``). ``store gc`` keeps everything reachable
from a live root and drops roots whose target is gone.

A shared store is used by many machines, and a root's path is a path *of
the machine that registered it* (``/scratch/dm`` is another folder on every
node). A root therefore names its host, and says what it keeps without
being read: a lock root lists its manifests; a data root gets a marker file
per manifest it publishes (``<note>.manifests/<manifest hex>``, created,
never rewritten, so that concurrent publishers lose nothing). ``store gc``
on another machine keeps what those name; on the root's own machine it
follows the data dir's links, exactly, and prunes the markers no link uses.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .digests import canonical_json, digest_bytes, format_digest, hex_of
from .layout import HOST, Layout, disk_error, read_regular, write_new

ROOT_KINDS = ("data", "lock")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Root:
    """One registered root: its kind, the path it names, its note file and what it keeps.

    :ivar host: the machine whose path it is ('' for a root registered before
        roots named their host: taken as a path of every machine)
    :ivar manifests: the manifests a lock root pins
    :ivar published: the manifests a data root published (its markers)
    """

    kind: str
    path: Path
    note: Path
    manifests: tuple[str, ...] = ()
    host: str = ""
    published: tuple[str, ...] = ()

    @property
    def elsewhere(self) -> bool:
        """True for a root of another machine: its path cannot be checked from here."""
        return bool(self.host) and self.host != HOST

    @property
    def markers(self) -> Path:
        """The folder of a data root's manifest markers."""
        return self.note.with_suffix(".manifests")


def register_root(layout: Layout, kind: str, path: Path, manifests: list[str] | None = None) -> Root:
    """Registers ``path`` (a data dir or a lock file) as a gc root; idempotent.

    :param manifests: the dataset manifests the root keeps alive (a lock
        file's pins; the store never parses lock files itself). A data dir
        root needs none: its readable paths are followed at gc time.
    """
    if kind not in ROOT_KINDS:
        raise ValueError(f"unknown root kind {kind!r}")
    absolute = str(Path(path).absolute())
    name = hex_of(digest_bytes(f"{HOST}:{absolute}".encode()))[:32]
    manifests = sorted(set(manifests or []))
    # in a group store another member may have registered the same path (a
    # shared project's lock file): its note cannot be replaced (sticky
    # folder), so this user keeps a note of its own beside it
    for note in _note_candidates(layout.roots / kind, name):
        root = Root(kind, Path(absolute), note, tuple(manifests), HOST)
        found = _read(note) if note.is_file() else None
        if found is not None and (found.kind, found.path, found.manifests, found.host) == (kind, root.path, root.manifests, HOST):
            # a data root's markers say what gc keeps: another member's note (one it
            # could have planted for this path) is no place for this user's
            if kind != "data" or _owned_here(layout, note):
                return found
            continue
        tmp = layout.tmp_path(".root")
        try:
            layout.mkdir(note.parent)
            # nobody rewrites another member's root in place: read-only in a group store
            write_new(tmp, canonical_json({"kind": kind, "path": absolute, "manifests": manifests, "host": HOST}), 0o444 if layout.shared else 0o644)
            os.replace(tmp, note)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only file system refuses even that (EROFS)
            if exc.errno in (errno.EPERM, errno.EACCES) and os.path.lexists(note) and layout.shared:
                continue
            raise disk_error(exc, "registering a gc root") from None
        return root
    raise disk_error(PermissionError(errno.EPERM, "not permitted", str(note)), "registering a gc root")


def _note_candidates(folder: Path, name: str):
    """The names a root's note may have, in the order tried: ``NAME.json``, ``NAME.UID.json``, then this user's own.

    Both first names can be guessed (a member knows another's data dir and
    user id) and made beforehand by another member, who keeps them in a
    sticky folder: the last is this user's note under a name nobody can
    guess (``NAME.UID.<random>.json``), found again by listing the folder.
    """
    uid = os.geteuid()
    yield folder / f"{name}.json"
    yield folder / f"{name}.{uid}.json"
    try:
        own = sorted(entry for entry in os.listdir(folder) if entry.startswith(f"{name}.{uid}.") and entry.endswith(".json") and entry != f"{name}.{uid}.json")
    except OSError:
        own = []
    for entry in own:
        with contextlib.suppress(OSError):
            if os.lstat(folder / entry).st_uid == uid:
                yield folder / entry
    yield folder / f"{name}.{uid}.{os.urandom(8).hex()}.json"


def mark_published(layout: Layout, root: Root, manifest: str) -> None:
    """Records that a data root published a manifest (one marker file, created once)."""
    marker = root.markers / hex_of(manifest)
    if os.path.lexists(marker):
        return
    try:
        layout.mkdir(root.markers)
        markers, note = os.lstat(root.markers), os.lstat(root.note)
        if not stat.S_ISDIR(markers.st_mode) or (markers.st_uid != note.st_uid and layout.shared):
            # made by another member before this root was registered (its name can be
            # guessed): a link is never written through, and another's folder could
            # lose this root's markers
            from .integrity import owner_name

            logger.warning(
                "the markers folder %s of a gc root belongs to %s: %s is not recorded there, and `store gc` on "
                "another machine may not know it is used (the store's owner may remove that folder)",
                root.markers, owner_name(markers.st_uid), manifest,
            )
            return
        write_new(marker, b"")
    except FileExistsError:
        return  # another publisher of this manifest was first
    except OSError as exc:
        raise disk_error(exc, "registering a gc root") from None


def _owned_here(layout: Layout, note: Path) -> bool:
    """True for a note this user owns (or may remove: the store's owner, a private store)."""
    try:
        return layout.may_remove(os.lstat(note))
    except OSError:
        return False


def _read(note: Path) -> Root | None:
    try:
        data = json.loads(read_regular(note)[0])  # never through a link
        markers = note.with_suffix(".manifests")
        published = tuple(sorted(format_digest(name) for name in os.listdir(markers))) if markers.is_dir() else ()
        return Root(data["kind"], Path(data["path"]), note, tuple(data.get("manifests", [])), data.get("host", ""), published)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def iter_roots(layout: Layout):
    """Every registered root (live or not)."""
    for kind in ROOT_KINDS:
        folder = layout.roots / kind
        if not folder.is_dir():
            continue
        for note in sorted(folder.glob("*.json")):
            root = _read(note)
            if root is not None:
                yield root
