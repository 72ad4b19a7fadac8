"""The rotating check of large trees: which files of a tree one use checks, and where the rotation stands.

A warm ``prepare`` compared every file of every tree it handed out with its
stamp: a ``stat`` and a ``readlink`` per file, 1.3 s for 100,000 files on a
local disk, minutes on a network file system. A tree of more than
:func:`slice_files` files is now checked one *slice* per use: its files are
split, in the tree's order, into blocks of that many files, and each use
checks the next block, round and round. Every file is so checked within
``ceil(files / slice_files)`` uses; ``store verify`` still rehashes them all.
A tree of at most that many files is one block: checked whole on every use.

What a use needs, without reading the tree document (a million entries are
seconds of parsing), is kept per user and per store in the user cache
(``checked/<store>.trees/``, beside the records of
:class:`~datamaestro.store.integrity.ReaderChecks`):

- ``<tree hex>.index``: the tree's file digests (32 bytes each, one per
  file entry, in the tree's order), in blocks, each block followed by the
  blake3 of the tree's digest, the block's number and its bytes; written
  once, by the process that materialized the tree
  (:meth:`TreeSlices.materialized`: the first use then checks one block,
  not the whole tree) or else after a use that checked the whole tree
  found it as stored;
- ``<tree hex>.cursor``: the next block to check, rewritten (a private name,
  then a rename) by every use; or ``whole``, after a use found a changed
  file in the tree: the next use checks it whole (a materialization that
  repairs the tree leaves the mark).

Both are outside input to the next process (another process, another
machine sharing the home folder, a damaged disk may have written them):
they are read without following links, only from a folder of this user
that nobody else may write, and every field is checked. Anything that does
not check out — no cursor, a garbled or hostile one, a block whose check
fails, another slice size — makes that use check the whole tree, which
writes both anew. Two uses at once may check the same block and write the
same next one: a block is never skipped (the cursor only ever moves on past
a block that was checked), at worst checked twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .digests import digest_bytes, hasher, hex_of, is_digest
from .layout import READ_NOFOLLOW, Layout, write_aside

logger = logging.getLogger(__name__)

#: files checked per use of a tree on a local disk (a ``stat`` and a ``readlink`` each: about 10 µs on a quiet
#: machine, 100–200 µs on a loaded one, where 512 made a warm prepare 3× the 10-file one)
SLICE_FILES_LOCAL = 128
#: files checked per use on a network file system, where each of those calls is a round trip (0.2–3 ms)
SLICE_FILES_NETWORK = 16

INDEX_FORMAT = b"datamaestro-tree-index/1"
CURSOR_FORMAT = "datamaestro-tree-cursor/1"
#: the index starts with a header of this many bytes: format, tree, files, slice size (space-padded)
HEADER_SIZE = 160
DIGEST_SIZE = 32
CHECK_SIZE = 32
#: a cursor file is one short line: anything longer is not one
CURSOR_LIMIT = 128
_CURSOR = re.compile(rf"{re.escape(CURSOR_FORMAT)} ([0-9a-f]{{64}}) (0|[1-9][0-9]{{0,9}}) ([1-9][0-9]{{0,9}})\n")


def slice_files(layout: Layout) -> int:
    """How many files of a tree one use checks in this store (and the largest tree checked whole on each use)."""
    return SLICE_FILES_LOCAL if layout.local else SLICE_FILES_NETWORK


@dataclass
class Slice:
    """One block of a tree's files, to check on this use.

    :ivar tree: the tree's digest
    :ivar block: its number (0 is the first files of the tree)
    :ivar blocks: how many blocks the tree has
    :ivar digests: the digests of its files
    """

    tree: str
    block: int
    blocks: int
    digests: list[str]


class TreeSlices:
    """The index and cursor of each large tree this user uses from one store (see the module's documentation)."""

    def __init__(self, layout: Layout):
        from ..settings import user_cache_dir

        self.layout = layout
        self.per_slice = slice_files(layout)
        name = hex_of(digest_bytes(os.fsencode(os.path.realpath(layout.root))))[:32]
        self.folder = user_cache_dir() / "checked" / f"{name}.trees"

    # -- reading

    def next_slice(self, tree: str) -> Slice | None:
        """The block of ``tree`` this use checks; None when the whole tree must be checked (no state, or state that does not check out)."""
        if not self._folder_is_private():
            return None
        hexdigest = hex_of(tree)
        cursor = self._read_cursor(hexdigest)
        if cursor is None:
            return None
        block, blocks = cursor
        try:
            fd = os.open(self.folder / f"{hexdigest}.index", READ_NOFOLLOW)
        except OSError:
            return None
        try:
            files = self._sound_index_files(fd, hexdigest)
            if files is None or -(-files // self.per_slice) != blocks:
                return None
            count = min(self.per_slice, files - block * self.per_slice)
            offset = HEADER_SIZE + block * (self.per_slice * DIGEST_SIZE + CHECK_SIZE)
            data = os.pread(fd, count * DIGEST_SIZE + CHECK_SIZE, offset)
        except OSError:
            return None
        finally:
            os.close(fd)
        body, check = data[: count * DIGEST_SIZE], data[count * DIGEST_SIZE :]
        if len(body) != count * DIGEST_SIZE or check != _block_check(hexdigest, block, body):
            logger.debug("the index of tree %s fails its check at block %d: the whole tree is checked, the index written anew", tree, block)
            with contextlib.suppress(OSError):
                os.unlink(self.folder / f"{hexdigest}.index")
            return None
        digests = ["blake3:" + body[i : i + DIGEST_SIZE].hex() for i in range(0, len(body), DIGEST_SIZE)]
        return Slice(tree, block, blocks, digests)

    def _folder_is_private(self) -> bool:
        """True when the state folder is a folder of this user that no one else may write (else its files say nothing)."""
        try:
            st = os.lstat(self.folder)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022

    def _files_of(self, header: bytes, hexdigest: str) -> int | None:
        """The number of files an index header declares, when it is an index of this tree and slice size; else None."""
        fields = header.split()
        if len(header) != HEADER_SIZE or len(fields) != 4 or fields[0] != INDEX_FORMAT or fields[1] != hexdigest.encode():
            return None
        if not (fields[2].isdigit() and fields[3].isdigit()) or int(fields[3]) != self.per_slice:
            return None
        files = int(fields[2])
        return files if files > self.per_slice else None

    def _read_cursor(self, hexdigest: str) -> tuple[int, int] | None:
        """The (next block, blocks) a cursor file says, when it parses and is within its bounds; else None."""
        try:
            fd = os.open(self.folder / f"{hexdigest}.cursor", READ_NOFOLLOW)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = os.read(fd, CURSOR_LIMIT + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if data == _whole_mark(hexdigest):
            return None  # a changed file was found in the tree: this use checks it whole
        match = _CURSOR.fullmatch(data.decode("ascii", "replace")) if len(data) <= CURSOR_LIMIT else None
        if match is None or match.group(1) != hexdigest:
            logger.debug("the cursor of tree %s is garbled: the whole tree is checked", hexdigest)
            return None
        block, blocks = int(match.group(2)), int(match.group(3))
        return (block, blocks) if block < blocks else None

    # -- writing (best effort: without its state, a tree is checked whole on its next use)

    def advance(self, done: Slice) -> bool:
        """Moves the tree's cursor past a block that was checked and found as stored; False when it could not be written."""
        return self._write_cursor(hex_of(done.tree), (done.block + 1) % done.blocks, done.blocks)

    def checked_whole(self, tree: str, digests: list[str]) -> None:
        """After a use that checked every file of ``tree`` and found it as stored: its index (when large) and a cursor at its first block."""
        if len(digests) <= self.per_slice or not all(is_digest(d) for d in digests):
            return  # one block: checked whole on each use, no state
        self._start_rotation(tree, b"".join(bytes.fromhex(d[7:]) for d in digests))

    def materialized(self, tree: str, digests: bytes | bytearray) -> None:
        """After this process materialized ``tree`` (linked each of its files): its index (when large) and a cursor at its first block.

        The rotation starts there, so that the first use of a large tree is
        one slice, not a whole check (minutes on a network file system): each
        of its files is then checked within ``ceil(files / slice_files)``
        uses of the materialization, as after a whole check. A tree this
        user already has an index of is left as it is: its rotation goes on,
        and a tree materialized again after a use found a changed file in it
        (which dropped its cursor) is still checked whole on its next use.

        :param digests: the raw digests (32 bytes each) of the tree's file
            entries, in the tree's order (the order of the whole check)
        """
        if len(digests) % DIGEST_SIZE or len(digests) <= self.per_slice * DIGEST_SIZE:
            return  # one block: checked whole on each use, no state
        hexdigest = hex_of(tree)
        if self._folder_is_private() and (os.path.lexists(self.folder / f"{hexdigest}.cursor") or self._index_in_place(hexdigest, len(digests) // DIGEST_SIZE)):
            return  # a rotation under way, or a tree marked to be checked whole
        self._start_rotation(tree, digests)

    def _start_rotation(self, tree: str, body: bytes | bytearray) -> None:
        """Writes the index of ``tree`` (raw digests ``body``), unless a sound one of the same size is in place, and a cursor at its first block."""
        hexdigest = hex_of(tree)
        files = len(body) // DIGEST_SIZE
        blocks = -(-files // self.per_slice)
        try:
            self._make_folder()
            if not self._index_in_place(hexdigest, files):
                self._write_index(hexdigest, body)
        except OSError as exc:
            logger.debug("no index of tree %s in %s: %s", tree, self.folder, exc)
            return
        self._write_cursor(hexdigest, 0, blocks)

    def forget(self, tree: str) -> None:
        """Marks the tree's cursor *whole*: its next use checks it whole (after a changed file was found in it, or another user's object).

        A mark, not a removed cursor: the tree materialized again to repair
        it must not start its rotation anew (:meth:`materialized`).
        """
        hexdigest = hex_of(tree)
        try:
            self._make_folder()
            write_aside(self.folder / f"{hexdigest}.cursor", _whole_mark(hexdigest), 0o600)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / f"{hexdigest}.cursor")

    def _make_folder(self) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.folder, 0o700)
        if not self._folder_is_private():
            raise PermissionError(f"{self.folder} is not a private folder of this user")

    def _index_in_place(self, hexdigest: str, files: int) -> bool:
        try:
            fd = os.open(self.folder / f"{hexdigest}.index", READ_NOFOLLOW)
        except OSError:
            return False
        try:
            # the blocks' checks are read with each block; a damaged one sends that use to a whole check, which writes it anew
            return self._sound_index_files(fd, hexdigest) == files
        finally:
            os.close(fd)

    def _sound_index_files(self, fd: int, hexdigest: str) -> int | None:
        """The number of files an open index says it holds, when it is a regular file whose header and size agree; else None."""
        st = os.fstat(fd)
        files = self._files_of(os.pread(fd, HEADER_SIZE, 0), hexdigest)
        if not stat.S_ISREG(st.st_mode) or files is None:
            return None
        blocks = -(-files // self.per_slice)
        return files if st.st_size == HEADER_SIZE + files * DIGEST_SIZE + blocks * CHECK_SIZE else None

    def _write_index(self, hexdigest: str, body: bytes | bytearray) -> None:
        files = len(body) // DIGEST_SIZE
        header = b"%s %s %d %d" % (INDEX_FORMAT, hexdigest.encode(), files, self.per_slice)
        # one buffer, no list of parts to join: a million files' index is 32 MB, held once beside the digests
        out = bytearray(header.ljust(HEADER_SIZE - 1) + b"\n")
        step = self.per_slice * DIGEST_SIZE
        view = memoryview(body)
        for block, start in enumerate(range(0, len(body), step)):
            part = view[start : start + step]
            out += part
            out += _block_check(hexdigest, block, part)
        write_aside(self.folder / f"{hexdigest}.index", out, 0o600)

    def _write_cursor(self, hexdigest: str, block: int, blocks: int) -> bool:
        try:
            self._make_folder()
            write_aside(self.folder / f"{hexdigest}.cursor", f"{CURSOR_FORMAT} {hexdigest} {block} {blocks}\n".encode(), 0o600)
        except OSError as exc:
            logger.debug("the cursor of tree %s was not written in %s: %s", hexdigest, self.folder, exc)
            return False
        return True


def _whole_mark(hexdigest: str) -> bytes:
    """The cursor of a tree whose next use checks it whole (see :meth:`TreeSlices.forget`)."""
    return f"{CURSOR_FORMAT} {hexdigest} whole\n".encode()


def _block_check(hexdigest: str, block: int, body: bytes) -> bytes:
    """What follows a block in the index: the blake3 of the tree, the block's number and its bytes."""
    check = hasher()
    check.update(b"%s %d\n" % (hexdigest.encode(), block))
    check.update(body)
    return check.digest()
