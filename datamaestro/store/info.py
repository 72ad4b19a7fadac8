"""``datamaestro store info``: what a store holds (:func:`store_info`)."""

from __future__ import annotations

import contextlib
import grp
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import Store
from .integrity import QUARANTINE_NOTE
from .rehash import is_object_name
from .roots import ROOT_KINDS
from .versioning import SHARED_FILE
from .walk import _fanout, _stray_entries, _tree_folders, _view_folders


@dataclass
class StoreInfo:
    """What a store holds.

    :param location: the store folder
    :param layout_version: the version of each part of the layout, in one
        line (``objects 1, actions 1, views 1, roots 1``)
    :param shared: True for a group store
    :param group: the Unix group of a group store (None otherwise)
    :param objects: number of file objects
    :param object_bytes: total size of the file objects
    :param trees: number of materialized trees
    :param views: number of dataset views
    :param actions: number of action-cache records
    :param roots: number of registered gc roots, by kind (``data``, ``lock``)
    :param tmp_entries: entries in ``tmp/`` (in-flight writes or leftovers)
    :param quarantined: objects moved to ``quarantine/`` by :func:`verify`
    :param layout_versions: the version of each part of the layout
    :param not_objects: entries of ``objects/`` that are not objects (a name
        that is not a digest, anything but a regular file, a file at the top
        of ``objects/``): counted here, not in ``objects`` (``store verify``
        names them)
    """

    location: Path
    layout_version: str
    shared: bool
    group: str | None
    objects: int
    object_bytes: int
    trees: int
    views: int
    actions: int
    roots: dict[str, int]
    tmp_entries: int
    quarantined: int
    layout_versions: dict[str, int] = field(default_factory=dict)
    not_objects: int = 0


def _count(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> int:
    return sum(1 for name in os.listdir(folder) if keep(name)) if folder.is_dir() else 0


def store_info(store: Store) -> StoreInfo:
    """Counts what a store holds (one pass over its folders, no hashing)."""
    layout = store.layout
    objects = object_bytes = 0
    strays = len(_stray_entries(os.fspath(layout.objects)))
    for hexdigest, entry in _fanout(layout.objects):
        with contextlib.suppress(FileNotFoundError):
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or not is_object_name(hexdigest):
                strays += 1  # planted by someone else: not an object
                continue
            object_bytes += st.st_size
            objects += 1
    roots = dict.fromkeys(ROOT_KINDS, 0)
    for root in store.roots():
        roots[root.kind] = roots.get(root.kind, 0) + 1
    return StoreInfo(
        location=store.root,
        layout_version=", ".join(f"{part} {version}" for part, version in store.layout_versions.items()),
        shared=store.shared,
        group=_group_of(store) if store.shared else None,
        objects=objects,
        object_bytes=object_bytes,
        trees=len(_tree_folders(store)),
        views=len(_view_folders(store)),
        actions=sum(1 for name, _ in _fanout(layout.actions) if name.endswith(".json")),
        roots=roots,
        tmp_entries=_count(layout.tmp),
        quarantined=_count(layout.quarantine, lambda name: not name.endswith(QUARANTINE_NOTE)),
        layout_versions=dict(store.layout_versions),
        not_objects=strays,
    )


def _group_of(store: Store) -> str:
    """The group named in the ``SHARED`` marker, else the store folder's group."""
    name = (store.root / SHARED_FILE).read_text().strip()
    if name:
        return name
    gid = os.stat(store.root).st_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
