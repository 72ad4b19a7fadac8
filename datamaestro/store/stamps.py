"""Stamps: what each object looked like when it was committed (size, mtime, inode), recorded as a symbolic link ``stamps/ab/cdef...`` and compared on use (see :mod:`.integrity`)."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

from .digests import PREFIX, hex_of
from .layout import Layout
from .rehash import stamp_text  # defined beside the rehash, which runs without datamaestro in worker processes

logger = logging.getLogger(__name__)

_PREFIX_LENGTH = len(PREFIX)


def stamp_matches(recorded: str, st: os.stat_result, precise: bool) -> tuple[bool, str]:
    """Whether ``st`` is what the stamp ``recorded`` says, and the stamp text of ``st`` it was compared with.

    The comparison is made at the precision of the stamp, which another
    machine (another mount of the store's file system) may have written.
    """
    now = stamp_text(st, precise)
    if recorded == now:
        return True, now
    if precise and ",ino=" in recorded:
        return False, now
    # one side saw the file system coarsely (a FUSE mount): size and mtime to the second
    fields = dict(part.split("=", 1) for part in recorded.split(",") if "=" in part)
    seconds = fields.get("mtime_s") or (str(int(fields["mtime"]) // 1_000_000_000) if fields.get("mtime", "").isdigit() else None)
    coarse = f"size={fields.get('size')},mtime_s={seconds}"
    now = stamp_text(st, False)
    return coarse == now, now


def read_stamp(layout: Layout, digest: str) -> str | None:
    """The stamp recorded for an object, or None."""
    try:
        return os.readlink(layout.stamp_path(digest))
    except OSError:
        return None


def record_stamp(layout: Layout, digest: str, st: os.stat_result, *, replace: bool = False) -> bool:
    """Records what an object looked like when it was committed; True when the stamp is (now) right.

    A stamp is a symbolic link ``stamps/ab/cdef...`` whose target text is
    :func:`stamp_text`: made in one call, read in one call (no open, no
    fsync: a stamp lost in a crash is recorded again on the next use). It is
    what :func:`datamaestro.store.integrity.compare_stamps` compares with a
    ``stat`` of the object, so that an object changed in place is never
    served silently.

    :param replace: replace a stamp that says something else (an object
        committed anew after its stamp outlived it; ``store verify`` after a
        rehash); otherwise the first stamp stays
    """
    text = stamp_text(st, layout.precise_stat)
    path = layout.stamp_path(digest)
    try:
        try:
            os.symlink(text, path)
            return True
        except FileNotFoundError:
            layout.mkdir(path.parent)
            os.symlink(text, path)
            return True
    except FileExistsError:
        pass
    except OSError as exc:
        logger.debug("cannot record the stamp of %s: %s", digest, exc)
        return False
    if read_stamp(layout, digest) == text:
        return True
    if not replace:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(text, tmp)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        # another member's stamp in a sticky folder: only the store's owner may replace it
        logger.warning("cannot replace the outdated stamp of object %s (%s): the store's owner can, with `datamaestro store verify`", digest, exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False


def record_stamps(layout: Layout, committed: list[tuple[str, os.stat_result, str | None]]) -> None:
    """Stamps many objects just committed: ``(digest, stat, stamp source or None)``.

    An object hard-linked from a peer store is the peer's inode: when the
    peer's stamp (``stamp source``) says exactly what this object's stat
    says, it is hard-linked as this object's stamp, which allocates no
    inode (a new symbolic link per object would double the inodes a sync
    makes). Otherwise, or when the link is refused, :func:`record_stamp`.
    The digests are those of objects just hashed (well formed).
    """
    precise = layout.precise_stat
    stamps = os.fspath(layout.stamps)
    made: set[str] = set()
    symlink = os.symlink
    for digest, st, source in committed:
        # the digests are of objects just hashed (well formed): string paths, no Path per object
        hexdigest = hex_of(digest) if not digest.startswith(PREFIX) else digest[_PREFIX_LENGTH:]
        fan = f"{stamps}/{hexdigest[:2]}"
        if source is None:
            if fan in made:
                try:
                    # the common case, one call: a new stamp in a fan-out folder this call has seen
                    symlink(stamp_text(st, precise), f"{fan}/{hexdigest[2:]}")
                    continue
                except OSError:
                    pass  # there already (an object stored again), or refused: the careful way
            if record_stamp(layout, digest, st, replace=True):
                made.add(fan)  # the fan-out folder exists now
            continue
        try:
            if os.readlink(source) == stamp_text(st, precise):
                if fan not in made:
                    layout.mkdir(Path(fan))
                    made.add(fan)
                os.link(source, f"{fan}/{hexdigest[2:]}", follow_symlinks=False)
                continue
        except FileExistsError:
            pass  # stamped by another process: record_stamp checks what it says
        except OSError:
            pass  # no stamp there, another file system, or linking refused: a new one
        record_stamp(layout, digest, st, replace=True)
