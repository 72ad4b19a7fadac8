"""``datamaestro.lock``: pin a project's data, reproduce it anywhere, verify it.

- :mod:`~datamaestro.lock.model`: the dataclasses (:class:`Lock`, :class:`LockedDataset`, :class:`LockedResource`)
- :mod:`~datamaestro.lock.fileformat`: reading and writing the TOML file
- :mod:`~datamaestro.lock.project`: the project's dataset list in ``pyproject.toml``
- :mod:`~datamaestro.lock.resolve`: ``lock`` (definitions -> pins)
- :mod:`~datamaestro.lock.sync`: ``sync`` (pins -> store and readable folders) and ``store export``

The package uses the store, the remotes (:mod:`datamaestro.remotes`: other
stores objects are taken from), the pipeline and the context; it never
speaks HTTP itself (remotes on the web go through the context's fetcher),
and the store never imports it.
"""
