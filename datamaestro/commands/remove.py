"""``datamaestro rm`` (a dataset's readable folder removed, and what nothing else keeps freed) and ``store why`` (what keeps data alive)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError, UsageError

if TYPE_CHECKING:
    from ..context import Context
    from ..store.maintenance import ReleaseReport

logger = logging.getLogger(__name__)


@dataclass
class RemoveReport:
    """What ``datamaestro rm`` did (with ``dry_run``: would do).

    :param dataset_id: the dataset
    :param folder: its readable folder
    :param removed: entries of the folder removed (its links)
    :param release: what the store freed (None when the folder showed nothing of the store)
    """

    dataset_id: str
    folder: Path
    dry_run: bool
    removed: list[str] = field(default_factory=list)
    release: "ReleaseReport | None" = None


def remove_dataset(dataset_id: str, context: "Context", *, dry_run: bool = False) -> RemoveReport:
    """Removes a dataset's readable folder from the data dir, then frees what nothing else keeps in the store.

    Only the folder's own links go (``.view`` and its resources' entries):
    the folders of nested datasets (``org.example.digits`` inside
    ``org.example``) and files one put there stay. What a lock file or
    another data dir still uses stays in the store.

    :raises UsageError: the dataset has no readable folder in this data dir
    """
    from ..store.maintenance import release
    from ..store.views import VIEW_LINK, current_view

    definition = context.dataset(dataset_id)
    folder = context.readable_folder(definition)
    manifest = current_view(folder)
    entries = [] if not folder.is_dir() else [e for e in sorted(folder.iterdir()) if e.is_symlink() and (e.name == VIEW_LINK or os.readlink(e).startswith(VIEW_LINK + "/"))]
    if manifest is None and not entries:
        raise UsageError(
            f"{definition.id} is not prepared in this data dir (no {folder})",
            hint="`datamaestro store du` lists the datasets of the store; --data chooses another data dir",
        )
    report = RemoveReport(definition.id, folder, dry_run, [e.name for e in entries])
    if not dry_run:
        from ..pipeline import check_data_dir

        # a read-only data dir (a read-only mount, another user's) is said before anything is removed
        check_data_dir(context.data_dir, folder, doing=f"{definition.id} cannot be removed from {folder}")
        # the `.view` link last: a reader sees the dataset complete or gone
        for entry in sorted(entries, key=lambda e: e.name == VIEW_LINK):
            entry.unlink(missing_ok=True)
        stop = context.data_dir / "data"
        for empty in (folder, *folder.parents):
            if empty == stop or not empty.is_relative_to(stop):
                break
            try:
                empty.rmdir()
            except OSError:
                break  # not empty: a nested dataset, or one's own files
    if manifest is not None:
        try:
            report.release = release(context.store, manifest, folder=folder, data_dir=context.data_dir, dry_run=dry_run)
        except StoreError as exc:
            if dry_run or not context.store.read_only():
                raise
            # a store one may only read (a read-only mount, another user's): the folder is gone all the same
            logger.warning("%s; %s was removed from this data dir, nothing was freed in the store", exc.message, definition.id)
    return report



def why_kept(target: str, context: "Context") -> tuple[str, list]:
    """The roots that keep a store entry alive: ``(digest, keepers)``.

    :param target: a digest (``blake3:<hex>`` or the hex alone) of an object,
        tree or manifest, or a dataset id (its readable folder's manifest, or
        the lock's pin)
    :raises UsageError: neither a digest nor a dataset shown in this data dir
    """
    from ..store.digests import is_digest
    from ..store.maintenance import keepers
    from ..store.views import current_view

    digest = target if target.startswith("blake3:") else f"blake3:{target}"
    if not is_digest(digest):
        definition = context.dataset(target)
        digest = current_view(context.readable_folder(definition))
        if digest is None:
            lock = context.lockfile()
            entry = lock.datasets.get(definition.id) if lock is not None else None
            if entry is None:
                raise UsageError(f"{definition.id} is not prepared in this data dir, and no lock in scope pins it", hint=f"run `datamaestro prepare {definition.id}`")
            digest = entry.manifest
    return digest, keepers(context.store, digest)
