"""1.x face: ``datamaestro.record``, records of typed items (see :mod:`datamaestro.compat.record`)."""

from datamaestro.compat.record import (  # noqa: F401
    Item,
    T,
    Items,
    _missing,
    Record,
    RecordType,
    record_type,
)

__all__ = ['Item', 'T', 'Items', 'Record', 'RecordType', 'record_type']
