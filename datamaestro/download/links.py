"""1.x face: ``datamaestro.download.links``, references to other datasets and data a user provides."""

from ..lazy import face

__all__ = ["GlobChecker", "linkfile", "linkfolder", "linkpath", "links", "reference"]

__getattr__, __dir__ = face(
    __name__,
    {
        "datamaestro.compat.links": ["GlobChecker", "linkfile", "linkfolder", "linkpath"],
        "datamaestro.download.references": ["links", "reference"],
    },
)
