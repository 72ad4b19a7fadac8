"""1.x face: ``datamaestro.download.manual``, data a user provides by hand.

Licensed corpora are obtained by each user; ``datamaestro datafolders set
ID PATH`` says where, and these resources read them into the store::

    from datamaestro.context import DatafolderPath
    from datamaestro.download.manual import linkfolder

    DOCUMENTS = linkfolder("documents", [DatafolderPath("gov.nist.trec.tipster", "Disk1/WSJ")])
"""

from ..lazy import face

__all__ = ["DatafolderPath", "GlobChecker", "ResolvablePath", "linkfile", "linkfolder", "linkpath"]

__getattr__, __dir__ = face(
    __name__,
    {
        "datamaestro.compat.datafolders": ["DatafolderPath", "ResolvablePath"],
        "datamaestro.compat.links": ["GlobChecker", "linkfile", "linkfolder", "linkpath"],
    },
)
