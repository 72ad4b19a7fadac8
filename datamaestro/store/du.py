"""``datamaestro store du``: the disk each dataset's data takes, shared and its own (:func:`disk_usage`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import Store
from .views import VIEW_LINK
from .walk import _Reach, _Resolver


def _data_dirs(store: Store, given: Iterable[Path] | None) -> list[Path]:
    """The data dirs to scan: the given ones, else the existing registered data roots."""
    if given is not None:
        candidates = [Path(d) for d in given]
    else:
        candidates = [root.path for root in store.roots() if root.kind == "data" and root.path.is_dir()]
    unique = {}
    for folder in candidates:
        unique.setdefault(os.path.realpath(folder), folder)
    return list(unique.values())


@dataclass
class DatasetUsage:
    """The disk usage of one dataset folder (a readable path).

    :param data_dir: the data dir holding the dataset folder
    :param path: the dataset folder, relative to ``<data dir>/data``
    :param manifest: the manifest digest of the view it shows
    :param objects: number of distinct objects it uses (manifest and tree objects included)
    :param bytes: their total size
    :param unique_bytes: the part of ``bytes`` no other listed path uses
    """

    data_dir: Path
    path: Path
    manifest: str
    objects: int
    bytes: int
    unique_bytes: int


@dataclass
class DiskUsage:
    """The result of :func:`disk_usage`.

    :param datasets: one entry per readable path, sorted by data dir and path
    :param total_bytes: bytes used by all of them, shared objects counted once
    :param objects: distinct objects used by all of them
    """

    datasets: list[DatasetUsage]
    total_bytes: int
    objects: int


def disk_usage(store: Store, data_dirs: list[Path] | None = None) -> DiskUsage:
    """How much of the store each readable path uses.

    :param data_dirs: data dirs to scan (default: the registered data roots
        that still exist); every folder below ``<data dir>/data`` whose
        ``.view`` link leads into this store's views is a dataset

    A tree's files count with the sizes the tree records (each checked
    against its object when the tree was materialized), found in the text
    of its document without parsing it entry by entry: no ``stat`` per
    file, no per-entry check, which on a tree of a million files were most
    of the work; other objects (manifests, tree documents, single files)
    are looked at.
    """
    resolver = _Resolver(store)
    found = []
    for data_dir in _data_dirs(store, data_dirs):
        data = Path(data_dir) / "data"
        for link, kind, manifest in resolver.links(data):
            # a dataset folder shows its view through a `.view` link; resource
            # entries and in-flight `.view.<random>` links are not datasets
            if kind != "view" or link.name != VIEW_LINK:
                continue
            reach = _Reach(sizes={})
            resolver.mark(kind, manifest, reach)
            found.append((Path(data_dir), link.parent.relative_to(data), manifest, _sizes_of(store, reach)))

    # what more than one dataset uses, by operations on whole dicts and sets: on a
    # million objects, a Python loop (or a lookup) per object costs more than listing the store
    if len(found) == 1:
        everything, shared = found[0][3], set()
    else:
        everything, shared = {}, set()
        for *_, sizes in found:
            shared |= everything.keys() & sizes.keys()
            everything.update(sizes)
    datasets = []
    for data_dir, path, manifest, sizes in found:
        used = sum(sizes.values())
        datasets.append(
            DatasetUsage(
                data_dir=data_dir,
                path=path,
                manifest=manifest,
                objects=len(sizes),
                bytes=used,
                unique_bytes=used - sum(map(sizes.__getitem__, shared & sizes.keys())) if shared else used,
            )
        )
    return DiskUsage(datasets=datasets, total_bytes=sum(everything.values()), objects=len(everything))


def _sizes_of(store: Store, reach: _Reach) -> dict[str, int]:
    """``{object: size}`` of everything a dataset uses: its trees' files at the sizes the trees record, the other objects (manifests, tree documents, single files) looked at."""
    sizes = reach.sizes
    for digest in reach.objects - sizes.keys():
        sizes[digest] = _size(store, digest)
    return sizes


def _size(store: Store, digest: str) -> int:
    try:
        return os.lstat(store.objects.path_of(digest)).st_size
    except FileNotFoundError:
        return 0
