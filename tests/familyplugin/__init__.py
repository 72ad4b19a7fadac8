"""A repository with a family of variants, registered by the tests that need it (``tests/compat/test_variant_lock.py``)."""

from datamaestro.repository import Repository


class FamilyRepository(Repository):
    """Datasets with variants"""

    NAMESPACE = "family"
