"""A placeholder for a resource nobody has written yet (the original's ``download.todo``)."""

from __future__ import annotations

from ..errors import DefinitionError
from ..resource import Resource


class Todo(Resource):
    """Stands for a download that is not implemented: preparing the dataset fails with a clear message."""

    def produce(self, job):
        """Always fails."""
        raise DefinitionError(
            f"{job.description}: this dataset's download is not written yet",
            hint="the definition needs a real resource here; report it to the plugin's authors",
        )

    def value(self):
        """Nothing yet (the config still builds: ``datamaestro check`` builds every config)."""
        return None

    def download(self, force: bool = False):
        """Not written yet (the original API)."""
        raise NotImplementedError(f"{self.name}: this dataset's download is not written yet")

    def prepare(self):
        """Not written yet: there is no value to give (the original API)."""
        raise NotImplementedError(f"{self.name}: this dataset's download is not written yet")
