"""1.x face: ``datamaestro.record``, records of typed items (see :mod:`datamaestro.compat.record`)."""

from .lazy import face

__all__ = ["Item", "T", "Items", "Record", "RecordType", "record_type"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.record": [*__all__, "_missing"]})
