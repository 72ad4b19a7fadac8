"""1.x face: ``datamaestro.download.links``, references to other datasets and data a user provides."""

from ..compat.links import GlobChecker, linkfile, linkfolder, linkpath
from .references import links, reference

__all__ = ["GlobChecker", "linkfile", "linkfolder", "linkpath", "links", "reference"]
