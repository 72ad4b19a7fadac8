"""Dataset manifests, immutable views and readable paths.

A manifest maps the resource names of a dataset to object or tree digests;
it is stored as an object. Its view, ``views/<manifest hex>/``, is a folder
of relative symlinks into ``objects/`` and ``trees/`` that never changes
once made. A readable path (``<data dir>/data/<repo>/<id as path>``) is a
symlink to the current view, replaced in one atomic rename, so a reader
never sees a half-updated dataset and paths resolved earlier keep working.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from pathlib import Path

from ..errors import IntegrityError, StoreError, UntrustedInputError
from .digests import canonical_json, digest_bytes, hex_of, is_digest
from .paths import relative_path_problem
from .layout import Layout, disk_error, remove_tree
from .objects import ObjectStore
from .trees import TreeStore
from .actions import Kind

MANIFEST_FORMAT = "datamaestro-manifest/1"

logger = logging.getLogger(__name__)


def manifest_document(entries: dict[str, tuple[str, str]]) -> dict:
    """The manifest of ``name -> (kind, digest)`` entries (kind: file or tree)."""
    return {
        "format": MANIFEST_FORMAT,
        "resources": {name: {"kind": kind, "digest": digest} for name, (kind, digest) in sorted(entries.items())},
    }


def manifest_digest(entries: dict[str, tuple[str, str]]) -> str:
    """The digest a manifest will have, computed without touching the store."""
    return digest_bytes(canonical_json(manifest_document(entries)))


class ViewStore:
    """The ``views/`` folder."""

    def __init__(self, layout: Layout, objects: ObjectStore, trees: TreeStore):
        self.layout = layout
        self.objects = objects
        self.trees = trees

    def path_of(self, manifest: str) -> Path:
        """The view folder of a manifest digest."""
        return self.layout.views / hex_of(manifest)

    def read_manifest(self, manifest: str) -> dict[str, tuple[str, str]]:
        """The entries of a stored manifest."""
        with self.objects.open(manifest) as fp:
            try:
                document = json.load(fp)
                entries = {name: (e["kind"], e["digest"]) for name, e in document["resources"].items()}
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                raise StoreError(f"object {manifest} is not a dataset manifest") from None
        # an object of the store may have come from a peer (an export, a remote): its names are checked as any outside input
        check_manifest_entries(entries, f"manifest {manifest}")
        return entries

    def store_manifest(self, entries: dict[str, tuple[str, str]]) -> str:
        """Stores a manifest as an object (not its view); returns its digest.

        :raises UntrustedInputError: a name that leaves the view, or a kind or digest that is not one
        """
        check_manifest_entries(entries, "dataset manifest")
        data = canonical_json(manifest_document(entries))
        digest = digest_bytes(data)
        if not self.objects.has(digest):
            self.objects.ingest_stream([data])
        return digest

    def publish(self, entries: dict[str, tuple[str, str]]) -> tuple[str, Path]:
        """Stores a manifest and makes its view; returns (manifest digest, view path).

        Every object and tree the manifest names must be in the store.

        :raises UntrustedInputError: a name that leaves the view, or a kind or digest that is not one
        """
        # the manifest first, even when the view exists: a view is useless to
        # gc and verify without it (a store deleted in the middle of a publish)
        digest = self.store_manifest(entries)
        view = self.path_of(digest)
        if os.path.lexists(view) and self._sound(view, entries):
            return digest, view
        work = self.layout.tmp_path(".view")
        try:
            os.mkdir(work)
            for name, (kind, target_digest) in entries.items():
                target = self.trees.materialize(target_digest) if kind == Kind.TREE else self.objects.path_of(target_digest)
                if kind == Kind.FILE and not target.is_file():
                    raise StoreError(f"object {target_digest} ({name}) is missing from the store")
                link = work / name
                link.parent.mkdir(parents=True, exist_ok=True)
                # relative to the final place of the view, which sits beside work in depth
                final_parent = view / os.path.dirname(name)
                os.symlink(os.path.relpath(target, final_parent), link)
            # frozen once in place: a folder moved to another parent must be writable (its `..` changes)
            if self.layout.install_folder(work, view) and self.layout.shared:
                # a member may add views but never change another member's (umask 002 would let the group write)
                _freeze_view(view)
        except OSError as exc:
            remove_tree(work)
            raise disk_error(exc, "publishing a dataset view") from None
        return digest, view


    def _sound(self, view: Path, entries: dict[str, tuple[str, str]]) -> bool:
        """True when a view in place may be used: this user's own, or one holding exactly the links of the manifest.

        In a group store a view may be another member's, who could have made
        it before anybody published that manifest, or changed it since (its
        owner may make it writable again). Such a view is checked (one
        ``readlink`` per entry); an unsound one is removed when this user may
        (False: make it again), else refused, naming its owner.

        :raises IntegrityError: an unsound view of another member
        """
        st = os.lstat(view)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            return True
        expected = {}
        for name, (kind, target_digest) in entries.items():
            target = self.trees.path_of(target_digest) if kind == Kind.TREE else self.objects.path_of(target_digest)
            expected[name] = os.path.relpath(target, view / os.path.dirname(name))
        problem = "it is not a folder" if not stat.S_ISDIR(st.st_mode) else _view_difference(view, expected)
        if problem is None:
            return True
        from .integrity import owner_name, remove_entry

        owner = owner_name(st.st_uid)
        if remove_entry(self.layout, view):
            logger.warning("removed the view %s of %s: %s; it is made again", view, owner, problem)
            return False
        raise IntegrityError(
            f"the view {view} of the store does not show its manifest ({problem}); it belongs to {owner} and this user may not remove it",
            hint=f"ask {owner} or the store's owner to remove it (`datamaestro store verify` lists it), then run again",
        )


def check_manifest_entries(entries: dict, what: str) -> None:
    """Refuses manifest entries whose name would leave the view folder, or whose kind or digest is not one.

    :raises UntrustedInputError: naming the first bad entry
    """
    for name, value in entries.items():
        problem = relative_path_problem(name)
        if problem is None and not (isinstance(value, tuple) and len(value) == 2 and value[0] in (Kind.FILE, Kind.TREE) and is_digest(value[1])):
            problem = f"entry {name!r} is not a file or tree digest"
        if problem is not None:
            raise UntrustedInputError(f"refused {what}: {problem}")

def _view_difference(view: Path, expected: dict[str, str]) -> str | None:
    """What a view holds that its manifest does not say (None: exactly its links, and folders for nested names)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(view):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            relative = os.path.relpath(path, view)
            if os.path.islink(path):
                if expected.get(relative) != os.readlink(path):
                    return f"{relative} links elsewhere" if relative in expected else f"{relative} is no resource of it"
                found.add(relative)
            elif not (os.path.isdir(path) and any(key.startswith(relative + "/") for key in expected)):
                return f"{relative} is no link of it"
    missing = sorted(set(expected) - found)
    return f"{missing[0]} is missing" if missing else None


def _freeze_view(folder: Path) -> None:
    """Makes every folder of a view read-only (its links are never changed)."""
    for dirpath, dirnames, _ in os.walk(folder, topdown=False):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o2555)
    os.chmod(folder, 0o2555)


VIEW_LINK = ".view"


def link_target(readable: Path, view: Path, data_dir: Path) -> str:
    """The text of the ``.view`` link of a readable folder.

    Relative when the store lives inside the data dir (the pair can be moved
    together), absolute otherwise (a store elsewhere, e.g. on NFS).
    """
    view_abs = view.absolute()
    if view_abs.is_relative_to(data_dir.absolute()):
        return os.path.relpath(view_abs, readable.absolute())
    return str(view.resolve())


def point_readable_path(readable: Path, view: Path, data_dir: Path, names: list[str]) -> None:
    """Makes the readable folder of a dataset show a view, switching in one rename.

    The folder is a real directory (dataset ids nest: ``org.example`` and
    ``org.example.digits``) holding a ``.view`` symlink to the view, swapped
    atomically, and one stable entry per resource, ``name -> .view/name``.
    A reader thus always sees one complete version; paths handed out earlier
    keep resolving. Entries of resources no longer in the view are removed.

    :param names: the resource names of the view's manifest
    :raises StoreError: when a real file stands where an entry must go
    """
    target = link_target(readable, view, data_dir)
    try:
        readable.mkdir(parents=True, exist_ok=True)
        link = readable / VIEW_LINK
        if not (link.is_symlink() and os.readlink(link) == target):
            tmp = readable / f"{VIEW_LINK}.{uuid.uuid4().hex[:8]}"
            os.symlink(target, tmp)
            os.replace(tmp, link)
        wanted = {name.split("/")[0] for name in names}
        for top in sorted(wanted):
            entry = readable / top
            entry_target = f"{VIEW_LINK}/{top}"
            # one lstat: between "not a link" and "exists", another process may create the link
            try:
                mode = os.lstat(entry).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and stat.S_ISLNK(mode):
                if os.readlink(entry) == entry_target:
                    continue
            elif mode is not None:
                raise StoreError(
                    f"{entry} is a real file or folder where the dataset's entry {top!r} must be a link",
                    hint="move it away (it is not managed by datamaestro) and run again",
                )
            tmp = readable / f".{top}.{uuid.uuid4().hex[:8]}.link"
            os.symlink(entry_target, tmp)
            os.replace(tmp, entry)
        for entry in readable.iterdir():
            # hidden names are other processes' links in flight: never prune them
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and entry.name not in wanted and os.readlink(entry).startswith(VIEW_LINK + "/"):
                try:
                    entry.unlink()
                except FileNotFoundError:
                    pass  # another process pruned it first
    except OSError as exc:
        raise disk_error(exc, f"linking {readable}") from None


def current_view(readable: Path) -> str | None:
    """The manifest digest a readable folder shows, or None."""
    try:
        target = os.readlink(readable / VIEW_LINK)
    except OSError:
        return None
    name = os.path.basename(target.rstrip("/"))
    return "blake3:" + name if len(name) == 64 else None
