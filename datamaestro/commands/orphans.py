"""``datamaestro orphans``: folders of the data dir that no installed dataset claims."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Context


def find_orphans(context: "Context", sizes: bool = False) -> list[tuple[Path, int]]:
    """Folders under ``<data dir>/data`` that no installed dataset claims (with their size in bytes when asked).

    A dataset claims its folder and what is inside; folders on the way to a
    dataset folder are not orphans themselves but their other children may be.
    """
    data = context.data_dir / "data"
    claimed: set[Path] = set()
    for entry in context.registry.index():
        claimed.add(data / entry.repository / Path(*entry.id.split(".")))
    ancestors = {parent for path in claimed for parent in path.parents}
    found: list[tuple[Path, int]] = []

    def visit(folder: Path, inside_dataset: bool) -> None:
        for child in sorted(folder.iterdir()):
            if not child.is_dir() or child.is_symlink() or child.name.startswith("."):
                continue
            if child in claimed or child in ancestors:
                visit(child, child in claimed)
            elif not inside_dataset:
                # inside a dataset's folder, other folders are its own entries
                found.append((child, _size(child) if sizes else 0))

    if data.is_dir():
        visit(data, False)
    return found


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
