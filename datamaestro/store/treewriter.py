"""The one safe writer of trees, and the path and link rules every tree obeys.

Archive extraction (``download/archive.py``) and tree materialization
(``TreeStore.materialize``) both write a folder from a list of entries that
came from outside: members of an archive an origin or a mirror served, a tree
document a remote or a peer served. Both write through :class:`TreeWriter`:

- every entry is created relative to the descriptor of its parent folder
  (``mkdir``/``open``/``symlink``/``link`` with ``dir_fd``), and every parent
  is opened with ``O_NOFOLLOW | O_DIRECTORY``: a symbolic link of the tree
  (planted by an earlier entry) is never followed while the tree is built,
  whatever the Python or the path length (``realpath`` is never asked);
- every entry is created with ``O_EXCL`` (or ``mkdir``/``symlink``/``link``,
  which never replace): nothing is written over an existing entry;
- names and paths are bounded (:data:`NAME_MAX_BYTES`, :data:`PATH_MAX_BYTES`).

Where links may point is decided before anything is written, from the whole
list of entries (:func:`split_tree_path`, :func:`resolve_link`): a link is
resolved through the tree's own links, lexically, and must stay inside the
tree. Nothing here depends on :mod:`tarfile`'s extraction filters.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from typing import Iterable, Mapping

from .layout import LINK_REFUSALS

#: the longest name of one entry (bytes, as the file system's NAME_MAX)
NAME_MAX_BYTES = 255
#: the longest path of an entry inside its tree (bytes): the tree's own
#: location must still fit in PATH_MAX (4096) in front of it
PATH_MAX_BYTES = 2048
#: the longest symbolic-link target (bytes)
LINK_TARGET_MAX_BYTES = 4095
#: the most entries of one tree (an archive's members, a tree document's entries)
MAX_ENTRIES = 5_000_000
#: the most links followed while resolving one link (the kernel's own limit)
MAX_LINK_HOPS = 40
#: folder descriptors kept open while writing (far below any RLIMIT_NOFILE)
_OPEN_FOLDERS = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeRefusal(Exception):
    """An entry of a tree breaks a rule; callers turn it into their own error (naming the archive or the document).

    :param path: the entry's path as given
    :param why: what is wrong, completing "entry <path> ..." (``leaves the tree``)
    """

    def __init__(self, path: str, why: str):
        super().__init__(f"entry {path!r} {why}")
        self.path = path
        self.why = why


def split_tree_path(path) -> list[str]:
    """The components of a tree entry's path, checked.

    A path is relative, normalised (no empty, ``.`` or ``..`` component),
    holds no NUL, and fits :data:`PATH_MAX_BYTES` (each name
    :data:`NAME_MAX_BYTES`).

    :raises TreeRefusal: naming what is wrong
    """
    if not isinstance(path, str):
        raise TreeRefusal(str(path), "has a path that is not a string")
    if not path:
        raise TreeRefusal(path, "has an empty path")
    if "\0" in path:
        raise TreeRefusal(path, "holds a NUL character")
    if path.startswith("/"):
        raise TreeRefusal(path, "is an absolute path")
    # (this runs for every entry of every tree: the common case is kept cheap)
    size = len(path) if path.isascii() else len(os.fsencode(path))
    if size > PATH_MAX_BYTES:
        raise TreeRefusal(path[:80] + "...", f"has a path longer than {PATH_MAX_BYTES} bytes")
    parts = path.split("/")
    if ".." in parts:
        raise TreeRefusal(path, "leaves the tree")
    if "" in parts or "." in parts:
        raise TreeRefusal(path, "is not a normalised path (an empty or '.' component)")
    if size > NAME_MAX_BYTES and any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in parts):
        raise TreeRefusal(path, f"has a name longer than {NAME_MAX_BYTES} bytes")
    return parts


def check_link_target(path: str, target) -> None:
    """A symbolic link's target, alone: a non-empty relative path without NUL, of bounded length.

    :raises TreeRefusal: naming what is wrong
    """
    if not isinstance(target, str) or not target:
        raise TreeRefusal(path, "is a symbolic link without a target")
    if "\0" in target:
        raise TreeRefusal(path, "is a symbolic link whose target holds a NUL character")
    if target.startswith("/"):
        raise TreeRefusal(path, f"is a symbolic link to the absolute path {target!r}")
    if len(os.fsencode(target)) > LINK_TARGET_MAX_BYTES:
        raise TreeRefusal(path, f"is a symbolic link with a target longer than {LINK_TARGET_MAX_BYTES} bytes")


def resolve_link(path: str, target: str, links: Mapping[str, str]) -> list[str]:
    """Where the link ``path -> target`` leads, as components inside the tree, through the tree's own links.

    Resolution is lexical, as the kernel would do it inside the tree: each
    component that names a link of the tree (``links``: path -> target) is
    replaced by where that link leads, then ``..`` climbs from there. A link
    whose resolution climbs above the tree's root, or loops, is refused: a
    chain of links that each look harmless (``a/b -> ..`` then ``c -> a/b/..``)
    is caught whatever the order of the entries. The file system is never
    asked (``realpath`` stops resolving past PATH_MAX on older Pythons).

    :raises TreeRefusal: the link leads outside the tree, or loops
    """
    check_link_target(path, target)
    hops = [0]

    def resolve(start: list[str], text: str) -> list[str]:
        stack = list(start)
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise TreeRefusal(path, f"is a symbolic link to {target!r}, which leaves the tree")
                stack.pop()
                continue
            stack.append(part)
            inner = links.get("/".join(stack))
            if inner is not None:
                hops[0] += 1
                if hops[0] > MAX_LINK_HOPS:
                    raise TreeRefusal(path, f"is a symbolic link to {target!r}, which loops through more than {MAX_LINK_HOPS} links")
                if inner.startswith("/"):
                    raise TreeRefusal(path, f"is a symbolic link to {target!r}, which goes through a link to an absolute path")
                stack = resolve(stack[:-1], inner)
        return stack

    return resolve(path.split("/")[:-1], target)


class TreeWriter:
    """Writes the entries of one tree below a folder it owns, never through a link, never over an entry.

    The folder must exist, be new and private to the caller (a work folder in
    the store's ``tmp/``). Use as a context manager (the descriptors are
    closed at the end)::

        with TreeWriter(work) as writer:
            writer.directory("a")
            writer.file("a/x.txt", [b"bytes"])
            writer.symlink("b", "a/x.txt")

    The caller decides which links are allowed (:func:`resolve_link` over the
    whole tree, before writing); the writer guarantees that nothing is
    created outside ``root`` and that no entry is written twice.

    :param root: the folder to write into
    :param budget: counts the bytes written (``add(n)``), refusing past a bound
        (:class:`~datamaestro.store.expansion.ExpansionBudget`)
    :param remember_leaves: record every file and link written (to refuse a
        path given twice, and for :meth:`hardlink`). A caller whose entries
        are already checked sorted and unique (a tree document) passes False:
        only folders are then remembered, so memory grows with the number of
        folders, not of files; the kernel still refuses to write over an
        entry (``O_EXCL``, ``link``, ``symlink``)
    """

    def __init__(self, root, *, budget=None, remember_leaves: bool = True):
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.budget = budget
        self.remember_leaves = remember_leaves
        #: kind of every entry written ("dir", "file", "symlink"), by path
        self.kinds: dict[str, str] = {}
        self._folders: OrderedDict[str, int] = OrderedDict()

    def __enter__(self) -> "TreeWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes every descriptor."""
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # -- folders
    def _folder_fd(self, parts: list[str]) -> int:
        """The descriptor of the folder ``parts`` (created, with its parents, when missing)."""
        if not parts:
            return self.root_fd
        key = "/".join(parts)
        fd = self._folders.get(key)
        if fd is not None:
            self._folders.move_to_end(key)
            return fd
        parent = self._folder_fd(parts[:-1])
        kind = self.kinds.get(key)
        if kind is None:
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
            except FileExistsError:
                if not self.remember_leaves:
                    # only this writer writes in its folder: an earlier entry of the tree is there
                    raise TreeRefusal(key, "is a file or a symbolic link of the tree, and another entry is below it") from None
                raise TreeRefusal(key, "exists already (written by something else than this tree)") from None
            self.kinds[key] = "dir"
        elif kind != "dir":
            raise TreeRefusal(key, f"is a {_KIND_NAMES[kind]}, and another entry is below it")
        fd = self._open_folder(parts[-1], parent, key)
        self._folders[key] = fd
        while len(self._folders) > _OPEN_FOLDERS:
            os.close(self._folders.popitem(last=False)[1])
        return fd

    @staticmethod
    def _open_folder(name: str, parent: int, key: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise TreeRefusal(key, "is not a folder (a link or a file took its place)") from None
            raise

    def _parent(self, path: str, kind: str) -> tuple[int, str]:
        """The descriptor of ``path``'s folder and its last name; records ``path`` as ``kind``."""
        parts = split_tree_path(path)
        if path in self.kinds:
            raise TreeRefusal(path, "appears twice in the tree")
        fd = self._folder_fd(parts[:-1])
        if self.remember_leaves:
            self.kinds[path] = kind
        return fd, parts[-1]

    def directory(self, path: str) -> None:
        """Creates the folder ``path`` (and its parents); an existing folder of this tree is fine."""
        if self.kinds.get(path) == "dir":
            return
        if path in self.kinds:
            raise TreeRefusal(path, f"is both a folder and a {_KIND_NAMES[self.kinds[path]]}")
        self._folder_fd(split_tree_path(path))

    # -- files and links
    def file(self, path: str, chunks: Iterable[bytes], mode: int = 0o644) -> int:
        """Creates the file ``path`` from ``chunks`` (refused if anything is there); returns its size."""
        return self._write_file(path, chunks, mode, None)

    def hashed_file(self, path: str, chunks: Iterable[bytes], mode: int) -> tuple[str, int]:
        """:meth:`file`, hashing the bytes as they are written, and given exactly ``mode`` (whatever the umask); returns their blake3 (hex) and size.

        For a file that becomes a store object where it is (an archive
        member extracted into the store's ``tmp/``): what is hashed is what
        was written, with no second read.
        """
        from blake3 import blake3

        h = blake3()
        size = self._write_file(path, chunks, mode, h)
        return h.hexdigest(), size

    def _write_file(self, path: str, chunks: Iterable[bytes], mode: int, hasher) -> int:
        """Creates the file ``path`` from ``chunks``, feeding them to ``hasher`` (None: not hashed) and setting ``mode`` exactly when hashed."""
        parent, name = self._parent(path, "file")
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, mode, dir_fd=parent)
        except FileExistsError:
            raise TreeRefusal(path, "exists already (never written over)") from None
        # low-level writes: on an archive of many small files, a file object per member costs more than its bytes
        size = 0
        budget = self.budget
        try:
            for chunk in chunks:
                if budget is not None:
                    budget.add(len(chunk))
                if hasher is not None:
                    hasher.update(chunk)
                view = memoryview(chunk)
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                size += written
            if hasher is not None:
                os.fchmod(fd, mode)  # the umask may have taken bits the store's objects have
        finally:
            os.close(fd)
        return size

    def symlink(self, path: str, target: str) -> None:
        """Creates the symbolic link ``path -> target`` (the caller checked where it leads)."""
        parent, name = self._parent(path, "symlink")
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            raise TreeRefusal(path, "exists already (never written over)") from None

    def hardlink(self, path: str, existing: str) -> None:
        """Creates ``path`` as a second name of the file ``existing``, written by this writer."""
        if self.kinds.get(existing) != "file":
            raise TreeRefusal(path, f"is a hard link to {existing!r}, which is not a file of the tree")
        source_parts = split_tree_path(existing)
        source_fd = self._folder_fd(source_parts[:-1])
        # the source's folder may be evicted by the next lookup: keep it open meanwhile
        source_fd = os.dup(source_fd)
        try:
            parent, name = self._parent(path, "file")
            try:
                os.link(source_parts[-1], name, src_dir_fd=source_fd, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise TreeRefusal(path, "exists already (never written over)") from None
        finally:
            os.close(source_fd)

    def link_object(self, path: str, source: str) -> int | None:
        """Creates ``path`` as a hard link to the store file ``source`` (an absolute path the caller built).

        :returns: the file's size, or None when the file system refuses the
            hard link (the caller falls back to :meth:`symlink`; ``path`` is
            then still free)
        :raises FileNotFoundError: ``source`` is missing
        """
        parent, name = self._parent(path, "file")
        try:
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise TreeRefusal(path, "exists already (never written over)") from None
        except OSError as exc:
            if exc.errno not in LINK_REFUSALS:
                raise
            self.kinds.pop(path, None)
            return None
        return os.stat(name, dir_fd=parent, follow_symlinks=False).st_size


_KIND_NAMES = {"file": "file", "symlink": "symbolic link", "dir": "folder"}
