"""Archive resources: :class:`ZipDownloader` and :class:`TarDownloader`.

Both download an archive, extract it (or part of it) and store the result as
a tree. The archive is checked as a whole before anything of it is written: a
member that would land outside the extraction folder (``../x``, ``/etc/x``,
``C:\\x``), below a link or a file of the archive, a link leading out of it
(resolved through the archive's own links, never through ``realpath``), a
hard link to anything but an earlier file, or a device file or fifo makes the
whole archive fail with one :class:`~datamaestro.errors.ArchiveError` naming
the URL and the member. The members are then written by datamaestro itself
through the store's :class:`~datamaestro.store.treewriter.TreeWriter`
(relative to folder descriptors, never through a link, never over an entry),
not by :mod:`tarfile`'s extraction, so that this holds on every Python; what
they expand to is bounded (:class:`~datamaestro.store.expansion.ExpansionBudget`).
Whatever was extracted is removed on failure: the store, its ``tmp/`` folder
and the dataset's readable path are as they were.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import ArchiveError, DefinitionError, UnreadableArchiveError
from ..store import Output
from ..store.expansion import ExpansionBudget
from ..store.digests import format_digest
from ..store.layout import disk_error, remove_tree
from ..store.objects import OBJECT_MODE
from ..store.treewriter import MAX_ENTRIES, TreeRefusal, TreeWriter, resolve_link, split_tree_path
from ..resource import FolderResource
from .single import _checkers, expansion_budget, using_downloaded_file
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..fetch import FetchResult
    from ..resource import Job

# Errors that mean "the disk", not "the archive": reported as store errors
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
# A zip symlink's target is the member's content: anything longer is not a path
_MAX_LINK_TARGET = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")


def _escapes(path: str) -> bool:
    """True when a relative POSIX path, once normalized, leaves its folder."""
    normalized = posixpath.normpath(path)
    return normalized == ".." or normalized.startswith("../") or posixpath.isabs(normalized)


class _Member:
    """One archive member, as the checks see it.

    :param name: the member's path in the archive, normalized (no ``./``,
        no trailing ``/``)
    :param kind: ``file``, ``dir``, ``symlink``, ``hardlink`` or ``special``
    :param link: the link target (symlinks: relative to the member's folder;
        hardlinks: a member name)
    :param raw: the ``TarInfo`` or ``ZipInfo``
    :param index: its place in the archive
    :param size: the size the archive announces for its content
    """

    __slots__ = ("name", "kind", "link", "raw", "index", "size", "path", "source")

    def __init__(self, name: str, kind: str, link: str | None, raw, index: int = 0, size: int = 0):
        self.name = name
        self.kind = kind
        self.link = link
        self.raw = raw
        self.index = index
        self.size = size
        #: its path in the output (set by the plan; None: not written)
        self.path: str | None = None
        #: a hard link's file member (set by the plan)
        self.source: _Member | None = None


class ArchiveDownloader(FolderResource):
    """Downloads an archive and stores its content (or part of it) as a folder.

    Subclasses read one archive format (:class:`ZipDownloader`,
    :class:`TarDownloader`). When the extracted content is a single folder,
    the output is that folder's content (as the original datamaestro did:
    ``aclImdb_v1.tar.gz`` holds ``aclImdb/train/...``, the resource's path
    holds ``train/...``).

    :param name: the folder's name in the dataset folder
    :param url: the archive's URL
    :param checker: a checker or a list of them, applied to the archive's bytes
        (``HashCheck("<md5>")``)
    :param subpath: a folder inside the archive: only its content is kept and
        it becomes the root of the output (``"cqadupstack/android"``)
    :param files: keep only some files: a collection of paths (relative to
        ``subpath``, or full paths in the archive) or a predicate called with
        each file's path relative to ``subpath``
    :param files_key: a name for a predicate ``files``, recorded in the recipe
        key in its place (code cannot be hashed); change it when the predicate
        changes
    :param transient: an intermediate, dropped once its dependents are complete
    :param varname: explicit variable name for decorator-style definitions

    The original datamaestro's argument order ``(name, url, subpath,
    checker)`` is accepted as well: a string in ``checker``'s place is taken
    as the subpath.
    """

    #: the format's name in messages (``zip``, ``tar``)
    label = ""

    def __init__(
        self,
        name: str,
        url: str,
        checker=None,
        subpath: str | None = None,
        files: Iterable[str] | Callable[[str], bool] | None = None,
        *,
        files_key: str | None = None,
        transient: bool = False,
        varname: str | None = None,
    ):
        super().__init__(name, transient=transient, varname=varname)
        if isinstance(checker, str):
            checker, subpath = subpath, checker
        if not isinstance(url, str) or "://" not in url:
            raise DefinitionError(f"{name}: {url!r} is not a URL")
        self.url = url
        self.checkers = _checkers(checker, None)
        self.subpath = self._parse_subpath(subpath)
        self.files_key = files_key
        if files is None or callable(files):
            if callable(files) and not isinstance(files_key, str):
                raise DefinitionError(
                    f"{name}: files is a function, which cannot be part of a recipe key",
                    hint="give files_key='<a name that changes with the function>' or a set of file names",
                )
            self.files = files
        elif isinstance(files, str):
            raise DefinitionError(f"{name}: files must be a collection of paths, not the string {files!r}")
        else:
            files = list(files)
            if not all(isinstance(path, str) for path in files):
                raise DefinitionError(f"{name}: files must be paths (strings), got {files!r}")
            self.files = frozenset(path.strip("/").removeprefix("./") for path in files)

    def _parse_subpath(self, subpath: str | None) -> str | None:
        if subpath is None:
            return None
        if not isinstance(subpath, str) or subpath.startswith("/") or _escapes(subpath.strip("/") or "."):
            raise DefinitionError(f"{self.name}: subpath {subpath!r} must be a relative folder inside the archive")
        normalized = posixpath.normpath(subpath.strip("/"))
        return None if normalized == "." else normalized

    def recipe(self) -> dict:
        """URL, subpath, file selection and checks: what determines the tree."""
        recipe = {
            **super().recipe(),
            "url": self.url,
            "subpath": self.subpath,
            "files": sorted(self.files) if isinstance(self.files, frozenset) else None,
            "checks": [c.recipe() for c in self.checkers],
        }
        if self.files_key is not None:
            recipe["files_key"] = self.files_key
        return recipe

    def urls(self) -> list[str]:
        """The archive's URL."""
        return [self.url]

    @property
    def extractall(self) -> bool:
        """Whether the whole archive is extracted: no subpath, no file selection (1.16's name)."""
        return self.subpath is None and self.files is None

    # -- selection
    def _relative(self, member: _Member) -> str | None:
        """The member's path below ``subpath``; None when it is not below it."""
        if self.subpath is None:
            return member.name
        prefix = self.subpath + "/"
        return member.name[len(prefix) :] if member.name.startswith(prefix) else None

    def _selected(self, member: _Member) -> bool:
        relative = self._relative(member)
        if not relative:
            return False
        if self.files is None:
            return True
        if member.kind == "dir":
            # folders come with the files kept in them
            return False
        if isinstance(self.files, frozenset):
            return relative in self.files or member.name in self.files
        return bool(self.files(relative))

    # -- checks
    def _refuse(self, member: str, why: str) -> ArchiveError:
        return ArchiveError(
            f"{self.url}: member {member!r} {why}; the archive was not extracted",
            hint="the archive is malformed or hostile: check the URL and its checksum",
        )

    def _check_name(self, name: str, shown: str | None = None) -> str:
        """The normalized member name; refuses absolute paths and ``..``.

        :param shown: the name as written in the archive, for messages
        """
        if name.startswith("/"):
            raise self._refuse(shown or name, "has an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self._refuse(shown or name, "has a '..' component (it would be written outside the extraction folder)")
        return "/".join(parts)

    def _check_member(self, member: _Member) -> None:
        if member.kind == "special":
            raise self._refuse(member.name, "is a device file, fifo or other special file")
        if member.kind == "symlink":
            if posixpath.isabs(member.link) or _DRIVE.match(member.link):
                raise self._refuse(member.name, f"is a symbolic link to the absolute path {member.link!r}")
            if _escapes(posixpath.join(posixpath.dirname(member.name), member.link)):
                raise self._refuse(member.name, f"is a symbolic link to {member.link!r}, outside the extraction folder")
        if member.kind == "hardlink":
            if posixpath.isabs(member.link) or _escapes(member.link):
                raise self._refuse(member.name, f"is a hard link to {member.link!r}, outside the extraction folder")

    def _check_count(self, count: int) -> None:
        if count > MAX_ENTRIES:
            raise ArchiveError(f"{self.url}: more than {MAX_ENTRIES} members; the archive was not extracted", hint="the archive is malformed or hostile")

    # -- production
    def produce(self, job: "Job") -> Output:
        """Downloads the archive into tmp, checks every member, writes the selected ones and stores the tree."""

        def extract(archive_path: Path, result: "FetchResult") -> Output:
            budget = expansion_budget(job, self.url, os.stat(archive_path).st_size)
            folder = job.tmp_path(".extract")
            try:
                os.mkdir(folder, 0o700)
                try:
                    hashed = self._extract(archive_path, folder, budget)
                except TreeRefusal as refusal:
                    raise self._refuse(refusal.path, refusal.why) from None
                except OSError as exc:
                    if exc.errno in _DISK_ERRNOS:
                        raise disk_error(exc, f"extracting {self.url}") from None
                    raise ArchiveError(f"{self.url}: cannot extract {exc.filename or ''}: {exc.strerror or exc}") from None
                # the files become objects where they are, and the folder the tree's materialization
                digest = job.store.ingest_tree(folder, move=True, hashed=hashed, install=True)
            finally:
                remove_tree(folder)
            return Output(Kind.TREE, digest, source_digest=result.source_digest, url=result.url, size=result.size)

        return using_downloaded_file(job, self.url, self.checkers, extract)

    def _plan(self, members: list[_Member]) -> list[_Member]:
        """The members to write, in archive order, each with its path in the output (``member.path``); checked as a whole.

        Every member is checked (a single bad one refuses the archive); the
        selected ones are placed below ``subpath``, unwrapped when they hold a
        single folder (as the original datamaestro did); of members with one
        name, the last is kept (as tar does), never written over the first; no
        member may be below a file or a link of the output; every link must
        stay inside the output, resolved through the output's own links; a
        hard link takes the content of the file it names.
        """
        seen: dict[str, _Member] = {}
        for member in members:
            self._check_member(member)
            if member.kind == "hardlink":
                member.source = self._hardlink_source(member, seen)
            seen[member.name] = member
        selected = [m for m in members if self._selected(m)]
        if not selected:
            sample = ", ".join(m.name for m in members[:5]) or "none"
            raise ArchiveError(
                f"{self.url}: no member of the archive matches the definition (subpath {self.subpath!r}, files {self._files_text()})",
                hint=f"the archive's first members are: {sample}",
            )
        final: dict[str, _Member] = {}
        for member in selected:
            path = self._relative(member)
            previous = final.get(path)
            if previous is not None and (previous.kind == "dir") != (member.kind == "dir"):
                raise self._refuse(member.name, "is both a folder and a file or link in the archive")
            final[path] = member
        prefix = self._wrapper(final)
        kinds: dict[str, str] = {}
        for path, member in final.items():
            if prefix is not None:
                if path == prefix:
                    continue
                path = path[len(prefix) + 1 :]
            member.path = path
            kinds[path] = "dir" if member.kind == "dir" else "symlink" if member.kind == "symlink" else "file"
        planned = [m for m in final.values() if m.path is not None]
        links = {m.path: m.link for m in planned if m.kind == "symlink"}
        for member in planned:
            try:
                split_tree_path(member.path)
                cut = member.path.rfind("/")
                while cut > 0:
                    parent_kind = kinds.get(member.path[:cut])
                    if parent_kind in ("file", "symlink"):
                        what = "a file" if parent_kind == "file" else "a symbolic link"
                        raise TreeRefusal(member.path, f"is below {what} of the archive ({member.path[:cut]!r}): it would be written through it")
                    cut = member.path.rfind("/", 0, cut)
                if member.kind == "symlink":
                    resolve_link(member.path, member.link, links)
            except TreeRefusal as refusal:
                raise self._refuse(member.name, refusal.why) from None
        self._check_count(len(planned))
        return sorted(planned, key=lambda m: m.index)

    def _hardlink_source(self, member: _Member, seen: dict[str, _Member]) -> _Member:
        """The file member whose content a hard link takes: the last member of that name before it."""
        name = "/".join(part for part in member.link.split("/") if part not in ("", "."))
        source = seen.get(name)
        if source is not None and source.kind == "hardlink":
            source = source.source
        if source is None or source.kind != "file":
            raise self._refuse(member.name, f"is a hard link to {member.link!r}, which is not a file before it in the archive")
        return source

    @staticmethod
    def _wrapper(final: dict[str, _Member]) -> str | None:
        """The single top folder holding everything kept, unwrapped (None when there is none)."""
        tops = {path.split("/", 1)[0] for path in final}
        if len(tops) != 1:
            return None
        top = tops.pop()
        member = final.get(top)
        if member is not None and member.kind != "dir":
            return None
        if member is None and not any(path.startswith(top + "/") for path in final):
            return None
        return top

    def _files_text(self) -> str:
        if isinstance(self.files, frozenset):
            return repr(sorted(self.files))
        return self.files_key if self.files is not None else "all"

    def _invalid(self, exc: Exception) -> UnreadableArchiveError:
        return UnreadableArchiveError(
            f"{self.url}: not a valid {self.label} archive ({exc})",
            hint="the server may have sent an error page or a truncated file; check the URL, or use the resource that matches the file's format",
        )

    def _extract(self, archive_path: Path, folder: Path, budget: ExpansionBudget) -> dict[str, tuple[str, int]]:
        """Writes the selected members into ``folder`` through a :class:`TreeWriter` (see :meth:`_write`, whose result it returns). Subclasses implement it."""
        raise NotImplementedError

    @staticmethod
    def _declare(planned: list[_Member], budget: ExpansionBudget) -> None:
        """Checks the sizes the archive announces for what will be written, before any byte is."""
        budget.declare(sum(m.size for m in planned if m.kind == "file") + sum(m.source.size for m in planned if m.kind == "hardlink"))

    def _write(self, planned: list[_Member], folder: Path, budget: ExpansionBudget, open_member) -> dict[str, tuple[str, int]]:
        """Checks the announced sizes, then writes the planned members through a :class:`TreeWriter`.

        Each file is hashed as it is written and made read-only (it becomes
        a store object where it is: see :meth:`~datamaestro.store.Store.ingest_tree`).

        :param open_member: a member's raw archive entry -> a readable file of its content
        :returns: path -> (digest, size) of every file written (a hard link's second name aside)
        """
        self._declare(planned, budget)
        hashed: dict[str, tuple[str, int]] = {}
        with TreeWriter(folder, budget=budget) as writer:
            for member in planned:
                if member.kind == "dir":
                    writer.directory(member.path)
                elif member.kind == "symlink":
                    writer.symlink(member.path, member.link)
                elif member.kind == "file":
                    hexdigest, size = writer.hashed_file(member.path, _chunks(open_member(member.raw)), OBJECT_MODE)
                    hashed[member.path] = (format_digest(hexdigest), size)
                elif member.source.path is not None:
                    # its file is written already (it comes earlier): a second name inside the tree
                    writer.hardlink(member.path, member.source.path)
                else:
                    hexdigest, size = writer.hashed_file(member.path, _chunks(open_member(member.source.raw)), OBJECT_MODE)
                    hashed[member.path] = (format_digest(hexdigest), size)
        return hashed


class ZipDownloader(ArchiveDownloader):
    """Downloads a zip archive and stores its content as a folder.

    See :class:`ArchiveDownloader` for the parameters. Member names written
    with backslashes (by some Windows tools) are read as paths; Unix
    symbolic links are recreated when they stay inside the archive's folder.

    Example::

        @dataset(url="https://nlp.stanford.edu/projects/glove/")
        class Glove6B(Dataset):
            EMBEDDINGS = ZipDownloader("embeddings", "http://nlp.stanford.edu/data/glove.6B.zip",
                                       files={"glove.6B.50d.txt"})

            def config(self) -> File:
                return File.C(path=self.EMBEDDINGS.path / "glove.6B.50d.txt")
    """

    label = "zip"

    def _members(self, archive: zipfile.ZipFile, budget: ExpansionBudget) -> list[_Member]:
        infos = archive.infolist()
        self._check_count(len(infos))
        members = []
        for index, info in enumerate(infos):
            raw_name = info.filename.replace("\\", "/")
            if _DRIVE.match(raw_name):
                raise self._refuse(info.filename, "has an absolute path (a Windows drive)")
            name = self._check_name(raw_name, info.filename)
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{self.url}: member {info.filename!r} is encrypted", hint="encrypted zip archives are not supported")
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            # zipfile.writestr and some tools write permissions without a file type: a file
            file_type = stat.S_IFMT(mode)
            link = None
            if raw_name.endswith("/") or file_type == stat.S_IFDIR:
                kind = "dir"
            elif file_type == stat.S_IFLNK:
                kind = "symlink"
                if info.file_size > _MAX_LINK_TARGET:
                    raise self._refuse(info.filename, "is a symbolic link with an impossibly long target")
                link = archive.read(info).decode("utf-8", "surrogateescape")
            elif file_type not in (0, stat.S_IFREG):
                kind = "special"
            else:
                kind = "file"
            if name:
                members.append(_Member(name, kind, link, info, index, info.file_size))
        total = sum(m.size for m in members if m.kind == "file")
        if total > budget.limit:
            budget.declare(total)
        return members

    def _extract(self, archive_path: Path, folder: Path, budget: ExpansionBudget) -> dict[str, tuple[str, int]]:
        """Writes the selected members ourselves: zipfile has no extraction filter."""
        try:
            with zipfile.ZipFile(archive_path) as archive:
                return self._write(self._plan(self._members(archive, budget)), folder, budget, archive.open)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError) as exc:
            raise self._invalid(exc) from None


def _chunks(fp):
    """The content of an open member, in chunks (closed at the end)."""
    with fp:
        while chunk := fp.read(1 << 20):
            yield chunk


class TarDownloader(ArchiveDownloader):
    """Downloads a tar archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) and stores its content as a folder.

    See :class:`ArchiveDownloader` for the parameters. The compression is
    recognized from the bytes, whatever the URL says. datamaestro writes the
    members itself (see the module's documentation): no member can be
    written or linked outside the folder, on any Python; permissions are not
    kept (stored files are read-only).

    Example::

        @dataset(url="https://ai.stanford.edu/~amaas/data/sentiment/")
        class Imdb(Dataset):
            DATA = TarDownloader("data", "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz")

            def config(self) -> Folder:
                return Folder.C(path=self.DATA.path / "train")
    """

    label = "tar"

    def _members(self, archive: tarfile.TarFile, budget: ExpansionBudget) -> list[_Member]:
        """Every member, read header by header: a member announcing more than the bounds stops the reading there."""
        members = []
        total = 0
        for index, info in enumerate(archive):
            self._check_count(index + 1)
            name = self._check_name(info.name)
            if info.issym():
                kind = "symlink"
            elif info.islnk():
                kind = "hardlink"
            elif info.isdir():
                kind = "dir"
            elif info.isreg():
                kind = "file"
                total += info.size
                if total > budget.limit:
                    budget.declare(total)  # before its bytes are even decompressed
            else:
                kind = "special"
            link = info.linkname if kind in ("symlink", "hardlink") else None
            if name:
                members.append(_Member(name, kind, link, info, index, info.size))
        return members

    def _extract(self, archive_path: Path, folder: Path, budget: ExpansionBudget) -> dict[str, tuple[str, int]]:
        """Checks every member, then writes the selected ones through a :class:`TreeWriter` (no ``tarfile`` extraction)."""
        plain = _gunzipped(archive_path, budget)
        try:
            with tarfile.open(plain or archive_path, "r:*", errorlevel=1) as archive:
                return self._write(self._plan(self._members(archive, budget)), folder, budget, archive.extractfile)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise self._invalid(exc) from None
        except OSError as exc:
            if exc.errno is None:
                # bz2 and lzma report corrupt streams as errno-less OSErrors
                raise self._invalid(exc) from None
            raise
        finally:
            if plain is not None:
                os.unlink(plain)


#: bytes of compressed input and most bytes of output per decompression call of :func:`_gunzipped`
_GUNZIP_CHUNK = 1 << 20
_GUNZIP_OUT = 4 << 20


def _gunzipped(archive_path: Path, budget: ExpansionBudget) -> str | None:
    """A gzipped tar decompressed once into a plain tar beside it (its path), or None to read the archive as it is.

    The members are read twice (all checked, then the selected ones
    written): through :mod:`gzip`, that decompresses the archive twice, in
    small Python-level reads (a header of 512 bytes at a time), which on an
    archive of many small files costs more than writing them. Decompressed
    once, in large calls, the plain tar is then read from the page cache.
    The plain tar is bounded like any expansion (a budget of its own, with
    the settings' bounds and the free-space check); past them, or on
    anything unexpected in the gzip stream (the usual reading then reports
    it), it is dropped and None returned.
    """
    try:
        with open(archive_path, "rb") as src:
            if src.read(2) != b"\x1f\x8b":
                return None
    except OSError:
        return None
    container = ExpansionBudget(
        f"{budget.what} (its tar stream)", budget.download_size, max_size=budget.max_size, max_ratio=budget.max_ratio, folder=budget.folder
    )
    plain = f"{os.fspath(archive_path)}.tar"
    try:
        with open(archive_path, "rb") as src, open(plain, "xb") as out:
            decompressor = zlib.decompressobj(wbits=31)  # one gzip member
            fed = False  # the current member has started
            while chunk := src.read(_GUNZIP_CHUNK):
                while chunk:
                    fed = True
                    data = decompressor.decompress(chunk, _GUNZIP_OUT)
                    container.add(len(data))
                    out.write(data)
                    if decompressor.eof:
                        chunk = decompressor.unused_data
                        if chunk and not chunk.startswith(b"\x1f\x8b"):
                            return _drop(plain)  # trailing bytes: gzip's own reading judges them
                        decompressor, fed = zlib.decompressobj(wbits=31), False  # the next member, if any
                    elif decompressor.unconsumed_tail:
                        chunk = decompressor.unconsumed_tail
                    elif len(data) == _GUNZIP_OUT:
                        chunk = b""
                        while len(data) == _GUNZIP_OUT and not decompressor.eof:  # output still held by zlib
                            data = decompressor.decompress(b"", _GUNZIP_OUT)
                            container.add(len(data))
                            out.write(data)
                        if decompressor.eof:
                            chunk = decompressor.unused_data
                            decompressor, fed = zlib.decompressobj(wbits=31), False
                            if chunk and not chunk.startswith(b"\x1f\x8b"):
                                return _drop(plain)
                    else:
                        chunk = b""
            if fed and not decompressor.eof:
                return _drop(plain)  # truncated: gzip's own reading reports it
    except (ArchiveError, zlib.error, OSError):
        return _drop(plain)
    return plain


def _drop(path: str) -> None:
    """Removes a partial plain tar; returns None (read the archive as it is)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    return None


zipdownloader = ZipDownloader.apply
tardownloader = TarDownloader.apply
