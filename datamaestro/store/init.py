"""``datamaestro store init``: a store created or upgraded in place, and set up for a Unix group (:func:`init_store`)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import StoreError
from . import Store
from .layout import SHARED_DIR_MODE, SHARED_LEASE_DIR_MODE, disk_error
from .versioning import SHARED_FILE, create_store, group_id, make_folders, replace_store_file


def init_store(root: Path, *, group: str | None = None) -> Store:
    """Creates a store, or upgrades an existing one in place (idempotent).

    The store is created by :func:`~datamaestro.store.create_store`, as
    :class:`Store` does (safe when other processes create it at once), with
    every folder of the layout; an existing store gets the folders it lacks.

    With ``group``, the store is set up for a Unix group so that its members
    can use and extend it, and none can alter what another member reads:
    the ``SHARED`` marker names the group, every folder is given to the
    group with mode ``0o3775`` (setgid: new entries inherit the group;
    sticky: a member adds entries but never renames, replaces or removes
    another member's), the fan-out folders are made now (so that the
    store's owner owns them), lock files become group-writable, the lease
    folder stays non-sticky (``0o2775``: a dead member's lease must be
    breakable). Objects stay ``0o444``, materialized trees and views
    read-only (``0o2555``), records and notes read-only for the group. An
    existing group store is upgraded to these modes. Without ``group`` an
    existing group store stays shared.

    :raises StoreError: on an unknown group, or an entry that cannot be
        given to the group (owned by another user)
    """
    root = Path(root)
    gid = group_id(group) if group is not None else None
    # a new store is shared from the start: SHARED is written before VERSION
    create_store(root, group=group)
    store = Store(root)
    try:
        make_folders(store.layout)
    except OSError as exc:
        raise disk_error(exc, f"creating the folders of the store {root}") from None
    if group is None:
        return store
    marker = root / SHARED_FILE
    if not marker.is_file() or marker.read_text().strip() != group:
        replace_store_file(store.layout, SHARED_FILE, group + "\n")
    store = Store(root)
    try:
        make_folders(store.layout)  # a group store's fan-out folders, owned by the store's owner
    except OSError as exc:
        raise disk_error(exc, f"creating the folders of the store {root}") from None
    _share(root, gid, group)
    return Store(root)


def _share(root: Path, gid: int, group: str) -> None:
    """Gives every folder and file of a store to ``gid`` with group-store modes."""
    for dirpath, dirnames, filenames in os.walk(root):
        relative = Path(dirpath).relative_to(root).parts
        # a materialized tree (trees/ab/cdef.../...) and a view (views/<hex>/...) must stay read-only
        frozen = (len(relative) >= 3 and relative[0] == "trees") or (len(relative) >= 2 and relative[0] == "views")
        if frozen:
            mode = 0o2555
        elif relative[:1] == ("leases",):
            mode = SHARED_LEASE_DIR_MODE  # a dead member's lease must be breakable by the others
        else:
            mode = SHARED_DIR_MODE
        _share_entry(Path(dirpath), gid, group, mode)
        if relative[:1] == ("tmp",) or (relative[:1] == ("leases",) and len(relative) > 1):
            dirnames[:] = []  # in-flight writes and live leases belong to their holders
            continue
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            if relative[:1] in (("objects",), ("trees",), ("quarantine",)):
                mode = None  # immutable content keeps its read-only mode
            elif relative[:1] == ("locks",) and name.endswith(".lock"):
                mode = 0o666  # as store_lock creates them in a group store
            else:
                # records, roots, notes: readable by the group, never rewritten in place by a member
                try:
                    mode = (stat.S_IMODE(os.lstat(path).st_mode) | 0o044) & ~0o022
                except FileNotFoundError:
                    continue
            _share_entry(path, gid, group, mode)


def _share_entry(path: Path, gid: int, group: str, mode: int | None) -> None:
    """chgrp then chmod (chgrp may clear the setgid bit), only where they differ.

    An entry removed meanwhile (a holder note, a tmp file: the store may be in
    use, or still being created by another process) needs nothing.
    """
    # through a descriptor opened without following a link: a member may have
    # put a link in place of its own entry since it was listed, and root (who
    # runs this) must not change the file it points to
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
            return  # a link, a socket: nothing of the store to give
        if not isinstance(exc, PermissionError):
            raise
        raise StoreError(
            f"cannot give {path} to group {group}: {exc.strerror}",
            hint="run `datamaestro store init --group` as the owner of the store's files (or as root)",
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_gid != gid:
            os.fchown(fd, -1, gid)
        if mode is not None and (st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode):
            os.fchmod(fd, mode)
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise StoreError(
            f"cannot give {path} to group {group}: {exc.strerror}",
            hint="run `datamaestro store init --group` as the owner of the store's files (or as root)",
        ) from None
    finally:
        os.close(fd)
