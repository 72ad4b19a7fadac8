"""The installed plugins' entry points, remembered between processes.

``importlib.metadata`` costs every command about 30 ms here: importing it
(it brings ``email``, ``zipfile``, ``csv``) and reading the metadata of every
installed distribution. The entry points of one group change only when a
distribution is installed, upgraded or removed, which adds, replaces or
removes a ``*.dist-info`` folder in a folder of ``sys.path``, and so
changes that folder's mtime. The entry points found are thus kept in the
code cache (:mod:`datamaestro.codecache`) under the interpreter, the group,
and each ``sys.path`` entry's mtime and inode, together with the mtime of
each ``entry_points.txt`` they come from; any difference scans again.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1


@dataclass(frozen=True)
class CachedDistribution:
    """What datamaestro reads of a distribution: its name and version (as ``importlib.metadata.Distribution``)."""

    name: str
    version: str

    @property
    def metadata(self) -> dict[str, str]:
        """The ``Name`` field, as ``Distribution.metadata["Name"]``."""
        return {"Name": self.name}


@dataclass(frozen=True)
class CachedEntryPoint:
    """An entry point read from the cache; loads as ``importlib.metadata.EntryPoint`` does."""

    name: str
    value: str
    group: str
    dist: CachedDistribution | None

    def load(self):
        """Imports the module and returns the object the value names (``module:attr.attr``)."""
        import functools
        import importlib

        module, _, attributes = self.value.partition(":")
        attributes = attributes.split("[")[0].strip()  # extras say nothing of what is loaded
        return functools.reduce(getattr, filter(None, attributes.split(".")), importlib.import_module(module.strip()))


def _path_key(group: str) -> list:
    """What the set of installed distributions depends on: the interpreter, and every ``sys.path`` folder's identity and mtime."""
    key: list = [FORMAT, sys.executable, sys.version, group]
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
            key.append([entry, st.st_ino, st.st_mtime_ns])
        except OSError:
            key.append([entry, None])
    return key


def _files_key(files: list[str]) -> list:
    """The mtimes of the metadata files the entry points were read from (an in-place edit of one)."""
    key = []
    for path in files:
        try:
            key.append(os.stat(path).st_mtime_ns)
        except OSError:
            key.append(None)
    return key


def installed_entry_points(data_dir: Path, group: str) -> list:
    """The entry points of ``group``, sorted by name: from the code cache when nothing installed changed, else scanned (and cached)."""
    from .codecache import read_entry, write_entry
    from .store.digests import digest_bytes

    path_key = _path_key(group)
    # one entry per interpreter and path (a PYTHONPATH of its own keeps its own)
    name = f"entry-points/{digest_bytes(json.dumps([path_key[:4], sys.path]).encode())[7:39]}.json"
    text = read_entry(data_dir, name)
    if text is not None:
        try:
            cached = json.loads(text)
            if cached["key"] == path_key and cached["files_key"] == _files_key(cached["files"]):
                return [
                    CachedEntryPoint(e["name"], e["value"], group, CachedDistribution(*e["dist"]) if e["dist"] else None)
                    for e in cached["entry_points"]
                ]
        except (ValueError, KeyError, TypeError):
            pass
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=group), key=lambda ep: ep.name)
    files, records = [], []
    for entry_point in found:
        distribution = entry_point.dist
        folder = getattr(distribution, "_path", None)  # a PathDistribution's metadata folder
        if folder is not None:
            files.append(os.path.join(os.fspath(folder), "entry_points.txt"))
        records.append(
            {
                "name": entry_point.name,
                "value": entry_point.value,
                "dist": [distribution.metadata["Name"] or "", distribution.version] if distribution is not None else None,
            }
        )
    write_entry(data_dir, name, json.dumps({"key": path_key, "files": files, "files_key": _files_key(files), "entry_points": records}), prune=True)
    return found
