"""The store's ``tmp/`` swept: the entries of dead writers reaped, a stopping process's own entries dropped, interrupted downloads kept for a later run (``tmp/partial``) until they are stale."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from .layout import HOST, TMP_CREATION, Layout, _pid_alive, remove_tree
from .testpoints import pause

logger = logging.getLogger(__name__)
# A tmp entry of another host cannot be checked for liveness: reap it only
# when it is this old (seconds).
STALE_FOREIGN_TMP = 24 * 3600
#: the folder of ``tmp/`` where interrupted downloads wait for a later run to resume them
PARTIAL_FOLDER = "partial"
#: an interrupted download untouched for this long is not resumed but removed (seconds)
STALE_PARTIAL = 7 * 24 * 3600


def reap_tmp(layout: Layout, *, now: float | None = None) -> list[Path]:
    """Removes tmp entries whose writer is dead; returns what was removed.

    An entry of this host is stale when its process is gone; an entry of
    another host only when it is older than a day (its process cannot be
    checked from here). In a group store, a member leaves the entries of
    other members alone (``tmp/`` is sticky): the store's owner reaps them.
    """
    removed = []
    others = 0
    now = now if now is not None else time.time()
    # one listing of tmp/: on a network file system, looking up a partial/ that is
    # not there is a round trip to the server (50-70 ms on the SeaweedFS mount)
    try:
        entries = list(os.scandir(layout.tmp))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if entry.name == PARTIAL_FOLDER:
            # outlives its writer on purpose: the next run resumes it
            removed += _reap_partial(layout.tmp / PARTIAL_FOLDER, now)
            continue
        # host names may hold dots: test this host's prefix before splitting
        if entry.name.startswith(HOST + "."):
            host, rest = HOST, entry.name[len(HOST) + 1 :]
        else:
            host, _, rest = entry.name.partition(".")
        pid_text = rest.partition(".")[0]
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if host == HOST and pid_text.isdigit():
            stale = not _pid_alive(int(pid_text))
        else:
            stale = age > STALE_FOREIGN_TMP
        if not stale:
            continue
        if not layout.may_remove(entry.stat(follow_symlinks=False)):
            others += 1
            continue
        path = Path(entry.path)
        remove_tree(path)
        removed.append(path)
    if others:
        logger.info(
            "left %d leftover(s) of other members' dead processes in %s: only their owners or the store's owner "
            "may remove them (the store's owner's `datamaestro store gc` does)", others, layout.tmp,
        )
    return removed


#: the tmp folders :func:`drop_own_tmp` swept: swept again by :func:`sweep_own_tmp_again` just before the process exits
_SWEPT: list[Layout] = []


def drop_own_tmp(layout: Layout) -> None:
    """Removes this process's ``tmp/`` entries, and partial downloads that hold nothing.

    For a process about to exit on Ctrl-C or SIGTERM while threads of its
    own still write (they are not unwound): what they leave is garbage.
    Partial downloads that hold bytes stay, for the next run.
    """
    if layout not in _SWEPT:
        _SWEPT.append(layout)
    with TMP_CREATION:  # no entry is created while we sweep (see :data:`~datamaestro.store.layout.TMP_CREATION`)
        _drop_own_tmp(layout)


def _drop_own_tmp(layout: Layout) -> None:
    prefix = f"{HOST}.{os.getpid()}."
    try:
        entries = list(os.scandir(layout.tmp))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(prefix):
            remove_tree(Path(entry.path))
    partial = layout.tmp / PARTIAL_FOLDER
    try:
        for entry in os.scandir(partial):
            if entry.name.endswith(".data") and entry.stat().st_size == 0:
                os.unlink(entry.path)
                Path(entry.path[: -len(".data")] + ".json").unlink(missing_ok=True)
        partial.rmdir()
    except OSError:
        pass


def _reap_partial(folder: Path, now: float) -> list[Path]:
    """Removes the interrupted downloads nobody resumed for :data:`STALE_PARTIAL` seconds, and this host's that hold nothing.

    A process killed while it tried a source that never answered (a mirror
    down, say) leaves an empty partial download of that URL; the next run,
    served by another source, would never resume it. One that no process of
    this host holds (its ``flock`` is free) is removed with its record.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            elif entry.name.startswith(HOST + ".") and entry.name.endswith(".data") and _empty_and_unheld(entry.path):
                stem = entry.path[: -len(".data")]
                for path in (entry.path, stem + ".json", stem + ".json.new"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed.append(Path(path))
        except OSError:
            continue
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    return removed


def _empty_and_unheld(path: str) -> bool:
    """Whether a partial download's data file holds no byte and no process of this host holds its lock."""
    try:
        import fcntl
    except ImportError:
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if os.fstat(fd).st_size != 0:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live download of this host
        return True
    finally:
        os.close(fd)


def sweep_own_tmp_again() -> None:
    """Sweeps again the tmp folders :func:`drop_own_tmp` swept, as the process exits on a signal.

    A download thread that passed its cancel check just before the first
    sweep may still have created its tmp file or partial download after it.
    """
    for layout in list(_SWEPT):
        drop_own_tmp(layout)
    pause("tmp-swept")
