"""Resources that use other datasets: :class:`reference` and :class:`links`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError
from ..store import Output
from ..resource import FolderResource, Resource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job


def _definition_of(target):
    """The DatasetDefinition of a dataset class, function, definition or id."""
    from ..definition import DatasetDefinition

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

    def present_output(self, manifest_of) -> Output | None:
        """What :meth:`produce` would give when the referenced dataset is prepared already; else None (read-only).

        :param manifest_of: the manifest of a dataset's definition when it is prepared, else None (the pipeline's)
        """
        manifest = manifest_of(self.target_definition)
        return None if manifest is None else Output(Kind.VALUE, value=manifest)

    @property
    def path(self):
        """The referenced dataset's readable folder."""
        return self.target_definition.datapath

    def value(self):
        """The referenced dataset's config (built, not prepared)."""
        return self.target_definition.config()

    def _resolve_reference(self):
        """The referenced dataset (1.16's API): the definition of a ``@dataset`` target or id, else the dataset object given, which answers for itself."""
        from ..definition import DatasetDefinition

        target = self.target
        if isinstance(target, (DatasetDefinition, str)) or isinstance(getattr(target, "__dataset__", None), DatasetDefinition):
            return self.target_definition
        return target

    def prepare(self):
        """The referenced dataset's config (the original API's name): its definition's ``_prepare()``, as 1.16 called it."""
        from ..definition import DatasetDefinition

        resolved = self._resolve_reference()
        if isinstance(resolved, DatasetDefinition):
            return resolved._prepare()
        return resolved.prepare()

    def download(self, force: bool = False) -> None:
        """Makes the referenced dataset's data present (the original API; a pipeline produces it as an input instead)."""
        legacy = getattr(self.target, "__datamaestro__", None)
        if legacy is not None:
            # a dataset object of datamaestro 1
            legacy._download_or_raise(force)
            return
        self._resolve_reference().download(force)

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
                for entry in store.trees.iter_tree_entries(digest):
                    entries.append({**entry, "path": f"{prefix}/{entry['path']}"})
        return Output(Kind.TREE, store.trees.store_entries(entries))
