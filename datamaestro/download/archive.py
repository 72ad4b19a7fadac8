"""Archive resources: :class:`ZipDownloader` and :class:`TarDownloader`.

Both download an archive, extract it (or part of it) and store the result as
a tree. The archive is checked before anything of it reaches the store: a
member that would land outside the extraction folder (``../x``, ``/etc/x``,
``C:\\x``), a link leading out of it, or a device file or fifo makes the whole
archive fail with one :class:`~datamaestro.errors.ArchiveError` naming the
URL and the member. Whatever was extracted is then removed: the store, its
``tmp/`` folder and the dataset's readable path are as they were.
"""

from __future__ import annotations

import errno
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import ArchiveError, DefinitionError
from ..store import Output
from ..store.objects import disk_error, remove_tree
from ..resource import FolderResource
from .single import _checkers, downloaded_file
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..pipeline import Job

# Errors that mean "the disk", not "the archive": reported as store errors
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
# A zip symlink's target is the member's content: anything longer is not a path
_MAX_LINK_TARGET = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")


def _escapes(path: str) -> bool:
    """True when a relative POSIX path, once normalized, leaves its folder."""
    normalized = posixpath.normpath(path)
    return normalized == ".." or normalized.startswith("../") or posixpath.isabs(normalized)


def _inside(path: str | Path, real_folder: str) -> bool:
    """True when ``path``, all links resolved, is ``real_folder`` or below it."""
    resolved = os.path.realpath(path)
    return resolved == real_folder or resolved.startswith(real_folder + os.sep)


class _Member:
    """One archive member, as the checks see it.

    :param name: the member's path in the archive, normalized (no ``./``,
        no trailing ``/``)
    :param kind: ``file``, ``dir``, ``symlink``, ``hardlink`` or ``special``
    :param link: the link target (symlinks: relative to the member's folder;
        hardlinks: a member name)
    :param raw: the ``TarInfo`` or ``ZipInfo``
    """

    __slots__ = ("name", "kind", "link", "raw")

    def __init__(self, name: str, kind: str, link: str | None, raw):
        self.name = name
        self.kind = kind
        self.link = link
        self.raw = raw


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

    def _check_links(self, root: Path, folder: Path) -> None:
        """Every symlink of the output must stay inside it, lexically and once resolved.

        Catches chains of links that each look harmless (``a/b -> ..`` then
        ``c -> a/b/..``) and links that ``subpath`` left pointing out of the
        kept folder.
        """
        real_root = os.path.realpath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    continue
                target = os.readlink(path)
                relative = os.path.relpath(path, root)
                if os.path.isabs(target) or _escapes(posixpath.join(posixpath.dirname(relative), target)) or not _inside(path, real_root):
                    raise self._refuse(os.path.relpath(path, folder), f"is a symbolic link to {target!r}, outside the extracted folder")

    # -- production
    def produce(self, job: "Job") -> Output:
        """Downloads the archive into tmp, extracts it, checks it and stores the tree."""
        folder = job.tmp_path(".extract")
        with downloaded_file(job, self.url, self.checkers) as (archive_path, result):
            try:
                os.mkdir(folder, 0o700)
                try:
                    self._extract(archive_path, folder)
                except OSError as exc:
                    if exc.errno in _DISK_ERRNOS:
                        raise disk_error(exc, f"extracting {self.url}") from None
                    raise ArchiveError(f"{self.url}: cannot extract {exc.filename or ''}: {exc.strerror or exc}") from None
                root = self._root(folder)
                self._check_links(root, folder)
                digest = job.store.ingest_tree(root, move=True)
            finally:
                remove_tree(folder)
        return Output(Kind.TREE, digest, source_digest=result.source_digest, url=result.url, size=result.size)

    def _root(self, folder: Path) -> Path:
        """The folder to store: ``subpath`` if given, unwrapped when it holds a single folder."""
        root = folder / self.subpath if self.subpath else folder
        if not root.is_dir() or root.is_symlink():
            raise ArchiveError(f"{self.url}: no folder {self.subpath!r} in the archive", hint="check the subpath of the definition")
        children = list(root.iterdir())
        if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
            return children[0]
        return root

    def _select(self, members: list[_Member]) -> list[_Member]:
        """Checks every member (a single bad one refuses the archive) and keeps the selected ones."""
        for member in members:
            self._check_member(member)
        selected = [m for m in members if self._selected(m)]
        if not selected:
            sample = ", ".join(m.name for m in members[:5]) or "none"
            raise ArchiveError(
                f"{self.url}: no member of the archive matches the definition (subpath {self.subpath!r}, files {self._files_text()})",
                hint=f"the archive's first members are: {sample}",
            )
        return selected

    def _files_text(self) -> str:
        if isinstance(self.files, frozenset):
            return repr(sorted(self.files))
        return self.files_key if self.files is not None else "all"

    def _invalid(self, exc: Exception) -> ArchiveError:
        return ArchiveError(
            f"{self.url}: not a valid {self.label} archive ({exc})",
            hint="the server may have sent an error page or a truncated file; check the URL, or use the resource that matches the file's format",
        )

    def _extract(self, archive_path: Path, folder: Path) -> None:
        """Extracts the selected members into ``folder``. Subclasses implement it."""
        raise NotImplementedError


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

    def _members(self, archive: zipfile.ZipFile) -> list[_Member]:
        members = []
        for info in archive.infolist():
            raw_name = info.filename.replace("\\", "/")
            if _DRIVE.match(raw_name):
                raise self._refuse(info.filename, "has an absolute path (a Windows drive)")
            name = self._check_name(raw_name, info.filename)
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{self.url}: member {info.filename!r} is encrypted", hint="encrypted zip archives are not supported")
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            link = None
            if raw_name.endswith("/") or stat.S_ISDIR(mode):
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind = "symlink"
                if info.file_size > _MAX_LINK_TARGET:
                    raise self._refuse(info.filename, "is a symbolic link with an impossibly long target")
                link = archive.read(info).decode("utf-8", "surrogateescape")
            elif mode and not stat.S_ISREG(mode):
                kind = "special"
            else:
                kind = "file"
            if name:
                members.append(_Member(name, kind, link, info))
        return members

    def _extract(self, archive_path: Path, folder: Path) -> None:
        """Writes the selected members ourselves: zipfile has no extraction filter."""
        try:
            with zipfile.ZipFile(archive_path) as archive:
                for member in self._select(self._members(archive)):
                    self._write(archive, member, folder)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError) as exc:
            raise self._invalid(exc) from None

    def _write(self, archive: zipfile.ZipFile, member: _Member, folder: Path) -> None:
        path = folder / member.name
        if member.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A parent could be a link made by an earlier member: writing through
        # it must still land inside the folder.
        real_folder = os.path.realpath(folder)
        if not _inside(path.parent, real_folder):
            raise self._refuse(member.name, "would be written through a link outside the extraction folder")
        if os.path.lexists(path) and not path.is_dir():
            # a later member of the same name replaces it, never writes through it
            path.unlink()
        if member.kind == "symlink":
            if not _inside(path.parent / member.link, real_folder):
                raise self._refuse(member.name, f"is a symbolic link to {member.link!r}, outside the extraction folder")
            os.symlink(member.link, path)
            return
        with archive.open(member.raw) as source, open(path, "xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)


class TarDownloader(ArchiveDownloader):
    """Downloads a tar archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) and stores its content as a folder.

    See :class:`ArchiveDownloader` for the parameters. The compression is
    recognized from the bytes, whatever the URL says. Extraction uses
    Python's ``data`` filter on top of datamaestro's own checks: permissions
    are sanitized, and no member can be written or linked outside the folder.

    Example::

        @dataset(url="https://ai.stanford.edu/~amaas/data/sentiment/")
        class Imdb(Dataset):
            DATA = TarDownloader("data", "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz")

            def config(self) -> Folder:
                return Folder.C(path=self.DATA.path / "train")
    """

    label = "tar"

    def _members(self, archive: tarfile.TarFile) -> list[_Member]:
        members = []
        for info in archive.getmembers():
            name = self._check_name(info.name)
            if info.issym():
                kind = "symlink"
            elif info.islnk():
                kind = "hardlink"
            elif info.isdir():
                kind = "dir"
            elif info.isreg():
                kind = "file"
            else:
                kind = "special"
            link = info.linkname if kind in ("symlink", "hardlink") else None
            if name:
                members.append(_Member(name, kind, link, info))
        return members

    def _extract(self, archive_path: Path, folder: Path) -> None:
        """Checks every member, then extracts the selected ones through the ``data`` filter."""
        if not hasattr(tarfile, "data_filter"):
            import platform

            # the filter refuses what escapes the folder, device files, setuid bits: never extract without it
            raise ArchiveError(
                f"{self.url}: extracting a tar archive safely needs Python 3.11.4 or later (tar extraction filters); "
                f"this is Python {platform.python_version()}",
                hint="run datamaestro with a newer Python (3.11.4+, 3.12+)",
            )
        try:
            with tarfile.open(archive_path, "r:*", errorlevel=1) as archive:
                selected = self._select(self._members(archive))
                archive.extractall(folder, members=[m.raw for m in selected], filter="data")
        except tarfile.FilterError as exc:
            raise self._refuse(exc.tarinfo.name, f"is refused by the tar data filter ({exc})") from None
        except KeyError as exc:
            # a hard link whose target is not in the archive
            raise self._invalid(f"hard link target {exc} is missing") from None
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise self._invalid(exc) from None
        except OSError as exc:
            if exc.errno is None:
                # bz2 and lzma report corrupt streams as errno-less OSErrors
                raise self._invalid(exc) from None
            raise


zipdownloader = ZipDownloader.apply
tardownloader = TarDownloader.apply
