"""The original datamaestro's (1.x) attributes of ``Repository``, kept for the published plugins.

:class:`datamaestro.repository.Repository` finds these names here on first
use (its ``__getattr__``, from the table ``repository._FACE_NAMES``): the
core reads none of them, and importing the core does not load this module.
"""

from __future__ import annotations

from pathlib import Path


class RepositoryFace:
    """The 1.x attributes of a plugin's ``Repository``, read through the context it was created with."""

    @property
    def datapath(self) -> Path:
        """``<data dir>/data/<namespace>``."""
        return self.context.data_dir / "data" / self.id
