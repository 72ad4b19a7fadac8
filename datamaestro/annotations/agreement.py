"""1.x face: ``datamaestro.annotations.agreement``, user agreements (see :mod:`datamaestro.compat.agreement`)."""

from datamaestro.compat.agreement import (  # noqa: F401
    useragreement,
    check_agreement,
)

__all__ = ['useragreement', 'check_agreement']
