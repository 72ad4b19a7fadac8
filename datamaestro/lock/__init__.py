"""``datamaestro.lock``: pin a project's data, reproduce it anywhere, verify it.

- :mod:`~datamaestro.lock.model`: the dataclasses (:class:`Lock`, :class:`LockedDataset`, :class:`LockedResource`)
- :mod:`~datamaestro.lock.fileformat`: reading and writing the TOML file
- :mod:`~datamaestro.lock.fingerprint`: what a lock entry is valid for

The package is the lock file's format only: it imports the store's digests
and paths and nothing above them, so the definitions, the context and the
pipeline read locks freely. The operations on a project's lock (``lock``,
``sync``, ``store export``: they need a context) are :mod:`datamaestro.project`.
"""
