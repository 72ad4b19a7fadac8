"""``datamaestro.project``: the operations on a project's lock file, above the context that runs them.

- :mod:`~datamaestro.project.datasets`: the project's dataset list in ``pyproject.toml``
- :mod:`~datamaestro.project.resolve`: ``lock`` (definitions -> pins)
- :mod:`~datamaestro.project.sync`: ``sync`` (pins -> store and readable folders) and ``store export``

The package uses the lock file's format (:mod:`datamaestro.lock`), the store,
the remotes (other stores objects are taken from), the pipeline and the
context; it never speaks HTTP itself (remotes on the web go through the
context's fetcher), and nothing below the API imports it.
"""
