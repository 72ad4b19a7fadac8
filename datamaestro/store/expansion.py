"""Bounds on what a download expands to: decompression bombs cannot fill the disk.

A 2 MB ``.gz`` can hold 2 GiB, and bzip2 or xz archives far more. Whatever
expands a download into the store (a decompressing transform, an archive's
extraction) counts the bytes it writes in an :class:`ExpansionBudget`, which
refuses, with one message naming what is expanded, once

- the bytes pass ``max_expanded_size`` (a setting);
- or they pass ``max_expansion_ratio`` times the download's size (a setting;
  the download counts as at least :data:`RATIO_FLOOR` bytes, so small files
  that compress well are never refused);
- or the free space of the store's file system falls below
  :data:`FREE_SPACE_RESERVE`, or a twentieth of the file system on one
  smaller than 5 GiB (checked every :data:`FREE_SPACE_EVERY` bytes).

The caller removes what was written (a tmp object, a work folder).
"""

from __future__ import annotations

import os

from ..errors import ArchiveError

#: a download counts as at least this many bytes for the ratio bound
RATIO_FLOOR = 1 << 20
#: the free space an expansion never takes (bytes), on a disk of at least 20 times that
FREE_SPACE_RESERVE = 256 << 20


def free_space_reserve(st: os.statvfs_result) -> int:
    """The free space kept on a file system: :data:`FREE_SPACE_RESERVE`, or a 20th of a smaller one (a small tmpfs would refuse everything)."""
    return min(FREE_SPACE_RESERVE, st.f_blocks * st.f_frsize // 20)


#: the free space is looked at again after this many bytes
FREE_SPACE_EVERY = 64 << 20


def _size_text(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


class ExpansionBudget:
    """Counts the bytes a download expands to; refuses past the bounds.

    :param what: what expands, for the message (the URL, ``<url> (member x)``)
    :param download_size: the size of the compressed download (bytes)
    :param max_size: the ``max_expanded_size`` setting
    :param max_ratio: the ``max_expansion_ratio`` setting
    :param folder: a folder of the file system written to (the store's ``tmp/``),
        whose free space is checked; None: not checked
    """

    def __init__(self, what: str, download_size: int = 0, *, max_size: int, max_ratio: float, folder=None):
        self.what = what
        self.max_size = max_size
        self.max_ratio = max_ratio
        self.folder = folder
        self.written = 0
        self._next_space_check = 0
        self.download_size = 0
        self.add_input(download_size)

    def add_input(self, count: int) -> None:
        """Counts ``count`` more bytes of the download (a stream decompressed as it arrives)."""
        self.download_size += count
        self.ratio_limit = int(self.max_ratio * max(self.download_size, RATIO_FLOOR))
        self.limit = min(self.max_size, self.ratio_limit)

    def reset(self) -> None:
        """Starts over (a transfer restarted from its first byte)."""
        self.written = 0
        self._next_space_check = 0
        self.download_size = 0
        self.add_input(0)

    @classmethod
    def for_settings(cls, settings, what: str, download_size: int = 0, folder=None) -> "ExpansionBudget":
        """A budget with the bounds of a session's :class:`~datamaestro.settings.Settings`."""
        return cls(what, download_size, max_size=settings.max_expanded_size, max_ratio=settings.max_expansion_ratio, folder=folder)

    def _too_large(self, size: int, verb: str) -> ArchiveError:
        if size > self.max_size:
            bound = f"max_expanded_size = {self.max_size} ({_size_text(self.max_size)})"
        else:
            bound = f"max_expansion_ratio = {self.max_ratio:g} times its download, {_size_text(self.ratio_limit)}"
        return ArchiveError(
            f"{self.what} {verb} more than {bound}; a decompression bomb, or a download larger than the settings allow: nothing of it was kept",
            hint="if the data is genuine, raise max_expanded_size / max_expansion_ratio in the settings (see docs/configuration.md)",
        )

    def declare(self, size: int) -> None:
        """Checks a size announced before any byte is written (an archive's member sizes), and the free space for it."""
        if size > self.limit:
            raise self._too_large(size, f"would expand to {_size_text(size)},")
        self._check_space(size)

    def add(self, count: int) -> None:
        """Counts ``count`` more bytes, about to be written.

        :raises ArchiveError: a bound is passed
        """
        self.written += count
        if self.written > self.limit:
            raise self._too_large(self.written, "expands to")
        if self.written >= self._next_space_check:
            self._next_space_check = self.written + FREE_SPACE_EVERY
            self._check_space(count)  # the bytes counted are about to be written

    def _check_space(self, needed: int) -> None:
        if self.folder is None:
            return
        try:
            st = os.statvfs(self.folder)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        reserve = free_space_reserve(st)
        if free - needed < reserve:
            left = f"{_size_text(free)} free" + (f", {_size_text(needed)} needed" if needed else "")
            raise ArchiveError(
                f"{self.what}: the store's disk is almost full while expanding ({left}; "
                f"{_size_text(reserve)} are always left free): nothing of it was kept",
                hint="free some disk space (see `datamaestro store gc`) and run again",
            )
