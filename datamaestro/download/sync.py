"""1.x face: ``datamaestro.download.sync``, the original datamaestro's Google Storage sync, retired.

``gsync`` stays importable (with a deprecation warning); using it says what
replaces it (:class:`datamaestro.compat.legacy.gsync`). Its constructor did
not work in datamaestro 1.16 either.
"""

from ..lazy import face

__getattr__, __dir__ = face(
    __name__,
    {"datamaestro.compat.legacy": ["gsync"]},
    deprecated={"gsync": "datamaestro.download.sync.gsync is deprecated: use a custom_download whose function runs `gsutil -m rsync gs://... <root>`"},
)
