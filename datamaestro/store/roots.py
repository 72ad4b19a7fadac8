"""GC roots: files in ``roots/`` that name what must be kept.

A root is registered by the data dirs that link into the store (``data``)
and by synced lock files (``lock``). ``store gc`` keeps everything reachable
from a live root and drops roots whose target is gone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .digests import canonical_json, digest_bytes, hex_of
from .objects import Layout, disk_error

ROOT_KINDS = ("data", "lock")


@dataclass(frozen=True)
class Root:
    """One registered root: its kind, the path it names and its note file."""

    kind: str
    path: Path
    note: Path
    manifests: tuple[str, ...] = ()


def register_root(layout: Layout, kind: str, path: Path, manifests: list[str] | None = None) -> Root:
    """Registers ``path`` (a data dir or a lock file) as a gc root; idempotent.

    :param manifests: the dataset manifests the root keeps alive (a lock
        file's pins; the store never parses lock files itself). A data dir
        root needs none: its readable paths are followed at gc time.
    """
    if kind not in ROOT_KINDS:
        raise ValueError(f"unknown root kind {kind!r}")
    absolute = str(Path(path).absolute())
    name = hex_of(digest_bytes(absolute.encode()))[:32]
    note = layout.roots / kind / f"{name}.json"
    manifests = sorted(set(manifests or []))
    root = Root(kind, Path(absolute), note, tuple(manifests))
    if note.is_file() and _read(note) == root:
        return root
    tmp = layout.tmp_path(".root")
    try:
        layout.mkdir(note.parent)
        tmp.write_bytes(canonical_json({"kind": kind, "path": absolute, "manifests": manifests}))
        os.replace(tmp, note)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, "registering a gc root") from None
    return root


def _read(note: Path) -> Root | None:
    try:
        data = json.loads(note.read_text())
        return Root(data["kind"], Path(data["path"]), note, tuple(data.get("manifests", [])))
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
