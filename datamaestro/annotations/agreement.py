"""1.x face: ``datamaestro.annotations.agreement``, user agreements (see :mod:`datamaestro.compat.agreement`)."""

from ..lazy import face

__all__ = ["useragreement", "check_agreement"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.agreement": [*__all__]})
