"""Data a user provides by hand, read into the store (the original API's ``linkfolder``, ``linkfile``, ``linkpath``).

Licensed corpora are obtained by each user; ``datamaestro datafolders set
ID PATH`` says where (see :mod:`datamaestro.compat.datafolders`), and these
resources store the files found there.
"""

from __future__ import annotations

from pathlib import Path

from ..resource import Resource
from ..store import Output
from ..store.actions import Kind


class GlobChecker:
    """Checks a folder's content: a combined MD5 over the files a glob pattern matches.

    Each matching file's MD5 (of its gunzipped content for ``.gz`` files)
    is computed in name order; the MD5 of their concatenated hex digests is
    compared with ``md5``. Without ``md5`` the value is only logged, so that
    it can be copied into the definition.

    :param glob: the pattern, relative to the folder (``"FB*"``)
    :param md5: the expected combined MD5
    """

    def __init__(self, glob: str, md5: str | None = None):
        self.glob = glob
        self.md5 = md5

    def compute(self, path) -> str | None:
        """The combined MD5 of the folder at ``path``, None when nothing matches."""
        import gzip
        import hashlib

        files = sorted(p for p in path.glob(self.glob) if p.is_file())
        if not files:
            return None
        combined = hashlib.md5()
        for file in files:
            digest = hashlib.md5()
            opener = gzip.open if file.suffix == ".gz" else open
            with opener(file, "rb") as fp:
                while chunk := fp.read(1 << 20):
                    digest.update(chunk)
            combined.update(digest.hexdigest().encode())
        return combined.hexdigest()

    def check(self, path) -> bool:
        """True when the folder's content is the expected one (or none is expected: the md5 is logged), False otherwise.

        As in the original datamaestro.

        :raises FileNotFoundError: no file matches the glob
        """
        import logging

        digest = self.compute(Path(path))
        if digest is None:
            raise FileNotFoundError(f"No files matching '{self.glob}' in {path}")
        logger = logging.getLogger(__name__)
        if self.md5 is None:
            logger.info("GlobChecker(%s): computed md5 = %s for %s", self.glob, digest, path)
            return True
        if digest != self.md5:
            logger.error("GlobChecker(%s): md5 mismatch for %s: expected %s, got %s", self.glob, path, self.md5, digest)
            return False
        return True

    def verify(self, path) -> None:
        """Raises :class:`IntegrityError` unless :meth:`check` passes (what storing a provided folder does)."""
        from ..errors import IntegrityError

        try:
            ok = self.check(path)
        except FileNotFoundError:
            raise IntegrityError(f"{path}: no file matches {self.glob!r}", hint="is this the right folder?") from None
        if not ok:
            raise IntegrityError(
                f"{path}: the files {self.glob!r} have the combined md5 {self.compute(Path(path))}, expected {self.md5}",
                hint="the folder holds other data than the definition expects",
            )


class linkpath(Resource):
    """Data a user provides by hand (licensed corpora), stored from the first proposal that exists.

    Each proposal is a path or a :class:`~datamaestro.datafolders.DatafolderPath`
    (``datamaestro datafolders set ID PATH`` says where the folder is). On
    prepare the first proposal that exists is read into the store (files
    are copied once, then shared like any download), so the dataset does
    not depend on the folder staying where it is.

    :param name: the entry's name in the dataset folder
    :param proposals: the candidate paths, tried in order
    :param checker: a :class:`GlobChecker` (folders only)
    """

    def __init__(self, name: str, proposals, *, transient: bool = False, checker: GlobChecker | None = None, varname: str | None = None):
        super().__init__(name, transient=transient, varname=varname)
        self.proposals = list(proposals) if isinstance(proposals, (list, tuple)) else [proposals]
        self.checker = checker

    def _found(self, path) -> bool:
        raise NotImplementedError

    def _check_path(self, path) -> bool:
        """Whether ``path`` is what this resource takes: a folder (or file) of the right kind that passes the checker (1.16's API)."""
        path = Path(path)
        if not self._found(path):
            return False
        return self.checker is None or bool(self.checker.check(path))

    def _resolve(self, context):
        """The first existing proposal, or raises with every place looked at."""
        from .datafolders import ResolvablePath, describe_proposal
        from ..errors import DatamaestroError

        tried, unset = [], None
        for proposal in self.proposals:
            try:
                path = ResolvablePath.resolve(context, proposal)
            except DatamaestroError as error:
                unset = unset or error
                continue
            if self._found(path):
                return path
            tried.append(str(path))
        if unset is not None and not tried:
            raise unset
        what = ", ".join(tried) or ", ".join(describe_proposal(p) for p in self.proposals)
        raise DatamaestroError(
            f"{self.name}: no {self.kind_label} found (looked at {what})",
            hint=unset.hint if unset is not None else "check the path given with `datamaestro datafolders set`",
        )

    kind_label = "path"

    def datafolder_ids(self) -> list[str]:
        """The ids of the data folders this resource proposes (``datamaestro datafolders list`` asks every resource)."""
        from .datafolders import DatafolderPath

        return [proposal.folderid for proposal in self.proposals if isinstance(proposal, DatafolderPath)]

    def recipe(self) -> dict:
        """The resolved path and a fingerprint of its files (sizes and dates), so that a change is seen."""
        from .. import session
        from .datafolders import describe_proposal
        from ..errors import DatamaestroError

        recipe = {**super().recipe(), "proposals": [describe_proposal(p) for p in self.proposals]}
        try:
            path = self._resolve(session.current())
        except DatamaestroError:
            return {**recipe, "resolved": None}
        return {**recipe, "resolved": str(path), "fingerprint": _stat_fingerprint(path)}

    def produce(self, job) -> Output:
        """Stores the folder (or file) the user provides."""
        path = self._resolve(job.context)
        if self.checker is not None:
            verify = getattr(self.checker, "verify", None)
            if verify is not None:
                verify(path)
            elif self.checker.check(path) is False:
                from ..errors import IntegrityError

                raise IntegrityError(f"{path}: the check {self.checker!r} failed", hint="the folder holds other data than the definition expects")
        if path.is_dir():
            return Output(Kind.TREE, job.store.ingest_tree(path))
        return Output(Kind.FILE, job.store.ingest_file(path))


class linkfolder(linkpath):
    """A folder the user provides (see :class:`linkpath`).

    Example::

        DOCUMENTS = linkfolder("documents", [DatafolderPath("edu.upenn.ldc.aquaint", "APW")])
    """

    kind = Kind.TREE
    kind_label = "folder"

    def _found(self, path) -> bool:
        return path.is_dir()


class linkfile(linkpath):
    """A file the user provides (see :class:`linkpath`)."""

    kind = Kind.FILE
    kind_label = "file"

    def _found(self, path) -> bool:
        return path.is_file()


def _stat_fingerprint(path) -> str:
    """A digest of every file's relative path, size and modification time (cheap: no byte is read)."""
    import os

    from ..store.digests import canonical_json, digest_bytes

    if path.is_file():
        stat = path.stat()
        return digest_bytes(canonical_json([stat.st_size, stat.st_mtime_ns]))
    entries = []
    for folder, folders, files in os.walk(path):
        folders.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(folder, name))
            entries.append([os.path.relpath(os.path.join(folder, name), path), stat.st_size, stat.st_mtime_ns])
    return digest_bytes(canonical_json(entries))


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.download.links')
