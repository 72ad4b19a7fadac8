"""Facts about the installed code, cached once per user for every data dir.

The dataset index (:mod:`datamaestro.registry`) and the verdict that a
project's lock matches its definitions (:mod:`datamaestro.project.resolve`)
depend on the installed plugins and the project's files, never on a data
dir. They are kept in the user's cache dir (:func:`~datamaestro.settings.user_cache_dir`),
so that a new data dir does not import every plugin to learn them again;
the data dir's ``cache/`` is the fallback where that folder cannot be
written (a read-only home on a cluster). Each entry carries the key it was
made for: a stale one is never used, only made again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
logger = logging.getLogger(__name__)

#: entries kept per folder of fingerprint-named files (one per set of installed plugins)
KEEP = 16


def locations(data_dir: Path, relative: str) -> list[Path]:
    """Where a cached entry may be, in the order it is looked for: the user's cache, then the data dir's."""
    from .settings import user_cache_dir

    return [user_cache_dir() / relative, data_dir / "cache" / relative]


def read_entry(data_dir: Path, relative: str) -> str | None:
    """The first readable copy of an entry, or None (``data_dir``: the data dir, whose ``cache/`` is the second place looked in)."""
    for path in locations(data_dir, relative):
        try:
            return path.read_text()
        except (OSError, ValueError):
            continue
    return None


def write_entry(data_dir: Path, relative: str, text: str, *, prune: bool = False) -> Path | None:
    """Writes an entry (atomically) in the first location that accepts it; None when none does (the cache is optional).

    :param prune: the entry's folder holds one file per set of plugins (or interpreter and path): keep
        the :data:`KEEP` most recently written
    """
    for path in locations(data_dir, relative):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:
            logger.debug("cannot cache %s in %s: %s", relative, path.parent, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            continue
        if prune:
            _prune(path.parent)
        return path
    return None


def _prune(folder: Path) -> None:
    """Removes all but the :data:`KEEP` newest entries of a folder (best effort: another process may prune too)."""
    try:
        entries = sorted((entry.stat().st_mtime, entry.path) for entry in os.scandir(folder) if not entry.name.startswith("."))
    except OSError:
        return
    for _, path in entries[:-KEEP]:
        try:
            os.unlink(path)
        except OSError:
            pass
