"""What keeps a store entry alive (:func:`keepers`, behind ``datamaestro store why``), and the data of one removed dataset freed (:func:`release`, behind ``datamaestro rm``)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import Store
from .digests import hex_of
from .gc import GC_LOCK, GcReport, _live, _mine, remove_object
from .leases import filesystem_now, live_leases
from .roots import Root
from .views import VIEW_LINK
from .walk import _Reach, _Resolver, _remove_folder, _tree_folders


@dataclass
class Keeper:
    """A root that keeps an entry of the store alive.

    :param root: the root
    :param via: how: the dataset folders (relative to ``<data dir>/data``) of a
        data root that lead to it, or the manifests of a lock root (or of a
        root of another machine) that hold it
    """

    root: Root
    via: list[str] = field(default_factory=list)


def keepers(store: Store, digest: str) -> list[Keeper]:
    """The roots that keep ``digest`` (an object, a tree or a manifest) alive, and through what.

    A root of this machine whose path is gone keeps nothing (the next gc drops it).
    """
    resolver = _Resolver(store)
    found = []
    for root in store.roots():
        via = []
        if root.kind == "data" and not root.elsewhere:
            data = root.path / "data"
            if not data.is_dir():
                continue
            for link, kind, manifest in resolver.links(data):
                if kind == "view" and link.name == VIEW_LINK:
                    reach = _Reach()
                    resolver.mark(kind, manifest, reach)
                    if digest in reach.objects or digest in reach.views:
                        via.append(str(link.parent.relative_to(data)))
        else:
            if root.kind == "lock" and not root.elsewhere and not root.path.exists():
                continue
            for manifest in dict.fromkeys((*root.manifests, *root.published)):
                reach = _Reach()
                resolver.mark("view", manifest, reach)
                if digest in reach.objects or digest in reach.views:
                    via.append(manifest)
        if via:
            found.append(Keeper(root, sorted(via)))
    return found


@dataclass
class ReleaseReport:
    """What :func:`release` freed (with ``dry_run``: would free).

    :param manifest: the manifest released
    :param objects_deleted: digests of the objects no root reaches any more
    :param bytes_deleted: their total size
    :param trees_deleted: materialized trees deleted
    :param views_deleted: views deleted
    :param kept: the roots that still keep the manifest (then nothing of it is freed)
    :param kept_objects: objects of the dataset kept because something else uses them
    :param errors: entries that could not be deleted (``path: error``)
    :param left_to_owner: entries of other members, left alone (a group
        store: only the store's owner, or root, collects them; as gc does)
    """

    manifest: str
    dry_run: bool
    objects_deleted: list[str] = field(default_factory=list)
    bytes_deleted: int = 0
    trees_deleted: list[str] = field(default_factory=list)
    views_deleted: list[str] = field(default_factory=list)
    kept: list[Keeper] = field(default_factory=list)
    kept_objects: int = 0
    errors: list[str] = field(default_factory=list)
    left_to_owner: int = 0


def release(
    store: Store, manifest: str, *, folder: Path, data_dir: Path, dry_run: bool = False, lock_timeout: float = 3600
) -> ReleaseReport:
    """Frees what only one readable folder kept alive: the reachability of :func:`gc`, for one manifest.

    The caller removes (or, in a dry run, will not remove) ``folder``, whose
    own links are ignored; its data dir's marker of the manifest goes too.
    Then the manifest's view, trees and objects that no live root reaches are
    deleted, under the store lock ``gc``, whatever their age: they belong to
    a dataset the user removed. While a process (of any machine) holds a
    lease, nothing is freed: it may be about to use them.

    :param folder: the dataset's readable folder
    :param data_dir: its data dir (whose root's marker of ``manifest`` is removed)
    """
    report = ReleaseReport(manifest=manifest, dry_run=dry_run)
    guard = contextlib.nullcontext() if dry_run else store.lock(GC_LOCK, timeout=lock_timeout, what="freeing a removed dataset")
    with guard:
        if not dry_run:
            absolute = Path(data_dir).absolute()
            for root in store.roots():
                if root.kind == "data" and not root.elsewhere and root.path == absolute:
                    (root.markers / hex_of(manifest)).unlink(missing_ok=True)
        now = filesystem_now(store.layout)
        live = _live(store, GcReport(dry_run=True), float("inf"), now, ignore=Path(folder))
        own = _Reach()
        _Resolver(store).mark("view", manifest, own)
        if manifest in live.views:
            # in a dry run the folder is still there: it is not what keeps the data
            own_via = str(Path(folder).relative_to(Path(data_dir) / "data"))
            for keeper in keepers(store, manifest):
                if keeper.root.kind == "data" and not keeper.root.elsewhere and keeper.root.path == Path(data_dir).absolute():
                    keeper.via = [via for via in keeper.via if via != own_via]
                if keeper.via:
                    report.kept.append(keeper)
            return report
        if any(not lease.mine for lease in live_leases(store.layout, store.lease_ttl)):
            report.errors.append("another process holds a store lease (it may be using this data): nothing freed; run `datamaestro store gc` later")
            return report
        views = store.views.path_of(manifest)
        # another member's entries (a group store) are left to the store's owner, as gc leaves them
        if views.is_dir() and _mine(store, views, report):
            if dry_run or _remove_folder(views, report.errors):
                report.views_deleted.append(manifest)
        for digest, path in _tree_folders(store):
            if digest in own.trees and digest not in live.trees and _mine(store, path, report):
                if dry_run or _remove_folder(path, report.errors):
                    report.trees_deleted.append(digest)
        for digest in sorted(own.objects):
            if digest in live.objects:
                report.kept_objects += 1
                continue
            path = store.objects.path_of(digest)
            if os.path.lexists(path) and not _mine(store, path, report):
                continue
            remove_object(store, digest, path, report, dry_run=dry_run)
    return report
