"""Pauses at named points of the code, for the tests that make a race happen on demand.

``DATAMAESTRO_TEST_PAUSE="point=seconds,point=seconds"`` makes :func:`pause`
sleep that long when the code reaches ``point``. Unset (always, outside the
tests), a pause costs one dictionary lookup. The points:

- ``before-publish``: a pipeline has produced every output of a dataset and
  is about to publish its view and link its readable folder;
- ``download-thread-started``: a pipeline has started one of the threads
  that download a dataset's files at once, and is about to start the next;
- ``gc-sweep``: ``store gc`` has marked what the roots reach and is about to
  delete the rest;
- ``tmp-create``: a thread has the name of a new object's file in the
  store's ``tmp/`` (its process was not stopping) and is about to create it;
- ``tmp-created``: that thread has created it (a thread that stays here
  while its process exits on a signal leaves its file to the sweeps);
- ``tmp-swept``: a process stopping on a signal has swept its ``tmp/``
  entries for the last time and is about to exit.
- ``tree-materialize``: a tree's document and objects are stored (and
  stamped) and its folder is about to be materialized (linked).
"""

from __future__ import annotations

import os
import time

ENV_PAUSE = "DATAMAESTRO_TEST_PAUSE"
#: a file to which each pause appends its point's name as it begins, so that a
#: test acts (sends a signal, say) while the code waits there
ENV_PAUSE_LOG = "DATAMAESTRO_TEST_PAUSE_LOG"


def _pauses() -> dict[str, float]:
    pauses = {}
    for item in os.environ.get(ENV_PAUSE, "").split(","):
        point, _, seconds = item.partition("=")
        try:
            pauses[point.strip()] = float(seconds)
        except ValueError:
            continue  # a test's typo pauses nothing (the test then fails to see its race)
    return pauses


def pause(point: str) -> None:
    """Sleeps as long as ``DATAMAESTRO_TEST_PAUSE`` says for ``point`` (not at all when unset)."""
    if ENV_PAUSE not in os.environ:
        return
    seconds = _pauses().get(point, 0.0)
    if seconds > 0:
        log = os.environ.get(ENV_PAUSE_LOG)
        if log:
            with open(log, "a") as fp:
                fp.write(point + "\n")
        time.sleep(seconds)
