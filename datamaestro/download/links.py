"""Resources that use other datasets: :class:`reference` and :class:`links`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError
from ..store import Output
from . import FolderResource, Resource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..pipeline import Job


def _definition_of(target):
    """The DatasetDefinition of a dataset class, function, definition or id."""
    from ..definitions import DatasetDefinition

    if isinstance(target, DatasetDefinition):
        return target
    definition = getattr(target, "__dataset__", None)
    if isinstance(definition, DatasetDefinition):
        return definition
    if isinstance(target, str):
        from .. import session

        return session.current().dataset(target)
    if callable(getattr(target, "as_definition", None)):
        # a dataset a repository generates (1.x ``AbstractDataset``)
        return target.as_definition()
    raise DefinitionError(f"{target!r} is not a dataset (a @dataset class or function, or a dataset id)")


class reference(Resource):
    """Another dataset, prepared first; definitions receive its config.

    Preparing the referring dataset prepares the referenced one (once: a
    warm dataset costs a few file checks). Its output is the referenced
    dataset's manifest digest, so that anything derived from it changes
    when the referenced data changes.

    :param name: the variable name (default: the attribute's name)
    :param dataset: a ``@dataset`` class or function, or a dataset id

    Example::

        class Queries(Dataset):
            COLLECTION = reference("collection", MsMarcoPassages)

            def config(self) -> Adhoc:
                return Adhoc.C(documents=self.COLLECTION.value().documents, ...)

    The original datamaestro's forms work too: ``reference(MsMarcoPassages)``
    and ``reference(varname="collection", reference=MsMarcoPassages)``;
    ``self.COLLECTION.prepare()`` and ``.config()`` return the config.
    """

    kind = Kind.VALUE
    volatile = True

    def __init__(self, *args: Any, varname: str | None = None, reference: Any = None, dataset: Any = None):
        if len(args) == 2 and isinstance(args[0], str):
            name, target = args
        elif len(args) == 1 and (reference is None and dataset is None):
            name, target = None, args[0]
        elif not args:
            name, target = None, reference if reference is not None else dataset
        else:
            raise DefinitionError(f"reference{args!r}: give (name, dataset), (dataset) or reference=dataset")
        if target is None:
            raise DefinitionError("reference: no dataset given", hint="reference(OtherDataset) or reference(varname=..., reference=OtherDataset)")
        name = name or varname
        super().__init__(name, varname=varname or name)
        self.target = target

    @property
    def target_definition(self):
        """The referenced dataset's definition."""
        return _definition_of(self.target)

    def recipe(self) -> dict:
        """The referenced dataset's id."""
        return {**super().recipe(), "dataset": self.target_definition.id}

    def produce(self, job: "Job") -> Output:
        """Prepares the referenced dataset; returns its manifest digest as the value."""
        result = job.prepare_dataset(self.target_definition)
        return Output(Kind.VALUE, value=result.manifest)

    @property
    def path(self):
        """The referenced dataset's readable folder."""
        return self.target_definition.datapath

    def value(self):
        """The referenced dataset's config (built, not prepared)."""
        return self.target_definition.config()

    def prepare(self):
        """The referenced dataset's config (the original API's name)."""
        return self.value()

    def config(self):
        """The referenced dataset's config (the original API's name)."""
        return self.value()


class links(FolderResource):
    """A folder gathering other datasets: ``<name>/<key>/...`` holds each one's files.

    The folder is a tree of the store built from the referenced datasets'
    manifests: no byte is copied (files are the same objects), and it never
    changes under a reader.

    :param name: the folder's name in the dataset
    :param targets: key -> dataset (``@dataset`` class or function, or id)

    Example::

        ALL = links("all", train=TrainSet, test=TestSet)   # all/train/..., all/test/...
    """

    def __init__(self, name: str, *, transient: bool = False, varname: str | None = None, **targets: Any):
        super().__init__(name, transient=transient, varname=varname)
        if not targets:
            raise DefinitionError(f"links {name!r} names no dataset")
        self.references = {key: reference(f"{name}.{key}", target) for key, target in targets.items()}

    def dependencies(self) -> list[Resource]:
        """One reference per linked dataset."""
        return list(self.references.values())

    def recipe(self) -> dict:
        """The keys (the pipeline adds each referenced manifest)."""
        return {**super().recipe(), "keys": sorted(self.references)}

    def produce(self, job: "Job") -> Output:
        """Builds the tree of every referenced dataset's files under its key."""
        store = job.store
        entries = []
        for key, ref in sorted(self.references.items()):
            manifest = job.input(ref).value
            for name, (kind, digest) in sorted(store.views.read_manifest(manifest).items()):
                prefix = f"{key}/{name}"
                if kind == Kind.FILE:
                    entries.append({"path": prefix, "kind": "file", "digest": digest, "size": store.path_of(digest).stat().st_size})
                    continue
                for entry in store.trees.read(digest)["entries"]:
                    entries.append({**entry, "path": f"{prefix}/{entry['path']}"})
        return Output(Kind.TREE, store.trees.store_entries(entries))


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

    def check(self, path) -> None:
        """Raises :class:`IntegrityError` when the folder's content is not the expected one."""
        import logging

        from ..errors import IntegrityError

        digest = self.compute(path)
        if digest is None:
            raise IntegrityError(f"{path}: no file matches {self.glob!r}", hint="is this the right folder?")
        if self.md5 is None:
            logging.getLogger(__name__).info("%s: files %s have the combined md5 %s", path, self.glob, digest)
        elif digest != self.md5:
            raise IntegrityError(
                f"{path}: the files {self.glob!r} have the combined md5 {digest}, expected {self.md5}",
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

    def _resolve(self, context):
        """The first existing proposal, or raises with every place looked at."""
        from ..datafolders import ResolvablePath, describe_proposal
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

    def recipe(self) -> dict:
        """The resolved path and a fingerprint of its files (sizes and dates), so that a change is seen."""
        from .. import session
        from ..datafolders import describe_proposal
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
            self.checker.check(path)
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
