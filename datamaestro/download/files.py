"""A folder made of some files of another folder resource (no byte copied)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError
from ..resource import FolderResource, Resource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job
    from ..store import Output


class FilesCopy(FolderResource):
    """A folder made of some files of another resource's folder (no byte is copied).

    Useful to keep a few files of a transient archive::

        ARCHIVE = ZipDownloader("data", url, transient=True)
        FILES = FilesCopy(ARCHIVE, {"queries.jsonl": "queries.jsonl", "test.tsv": "qrels/test.tsv"})

    :param source: the folder resource to take files from
    :param files: ``{path in the new folder: path in the source folder}``
    :param name: the folder's name (default: the attribute's name)
    """

    def __init__(self, source: Resource, files: dict[str, str], name: str | None = None, *, transient: bool = False):
        super().__init__(name, transient=transient)
        if not isinstance(source, Resource):
            raise DefinitionError(f"FilesCopy: {source!r} is not a resource")
        self.source = source
        self.files = dict(files)
        self._dependencies.append(source)

    def check(self):
        """Nothing remote to check: the files come from another resource (SKIPPED, as in 1.16)."""
        from ..resource import CheckStatus, ResourceCheckResult

        return ResourceCheckResult(resource=self.name, status=CheckStatus.SKIPPED, message="Local resource")

    def recipe(self) -> dict[str, Any]:
        """The file mapping."""
        return {**super().recipe(), "files": dict(sorted(self.files.items()))}

    def produce(self, job: "Job") -> "Output":
        """A tree whose entries are the source's objects, under their new paths."""
        from ..errors import ArchiveError
        from ..store import Output

        source = job.input(self.source)
        if source.kind != Kind.TREE:
            raise DefinitionError(f"FilesCopy {self.name}: {self.source.name} is not a folder")
        wanted = {origin.strip("/") for origin in self.files.values()}
        entries = {entry["path"]: entry for entry in job.store.trees.iter_tree_entries(source.digest) if entry["path"] in wanted}
        selected = []
        for target, origin in sorted(self.files.items()):
            entry = entries.get(origin.strip("/"))
            if entry is None or entry.get("kind") != "file":
                raise ArchiveError(
                    f"{self.source.name} has no file {origin!r} (wanted by {self.name}/{target})",
                    hint="check the file paths of the definition",
                )
            selected.append({**entry, "path": target.strip("/")})
        return Output(Kind.TREE, job.store.trees.store_entries(selected))
