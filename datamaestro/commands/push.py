"""``datamaestro store push``: what this store holds of some datasets, sent to a remote cache.

For each dataset (and each dataset it references) every resource's action
record (recipe key -> output) is pushed with the objects its output needs
(see :mod:`datamaestro.remotes.push`, which sends them). A transient input
whose objects were collected here is pushed as its record only: a reader
needs its digest to compute the recipe keys downstream, and takes its bytes
(if it ever needs them) from the original source.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..remotes.push import PushReport, push_records
from ..store.actions import ActionRecord

if TYPE_CHECKING:
    from ..context import Context
    from ..definition import DatasetDefinition


def push(
    context: "Context", target: str, dataset_ids: list[str], *, use_lock: bool = False, jobs: int | None = None, sign: "Path | None" = None
) -> PushReport:
    """Pushes the objects and action records of some datasets (or of the project's lock) to a remote.

    :param target: a remote's name in the settings, or a URL (``s3://bucket/prefix``) or folder
    :param dataset_ids: the datasets to push
    :param use_lock: also push every dataset the project's ``datamaestro.lock`` pins
    :param jobs: uploads at once (default: 16)
    :param sign: a secret key file signing the action records (default: the remote's ``signing_key`` setting, if any)
    :raises UsageError: no dataset named, no lock, an unknown remote, a read-only remote, a secret key others may read
    :raises RemoteError: the remote refused or could not be reached
    """
    start = time.monotonic()
    remote = context.remote(target)
    if not remote.writable:
        raise UsageError(f"{remote.label} is read-only: nothing can be pushed to it", hint="push to a folder or an s3:// remote")
    signer = _signer(context, target, sign)  # before anything goes up: a key others may read stops the push
    report = PushReport(remote.label, signed_by=signer.name if signer else None)
    ids = list(dataset_ids)
    pinned: list = []
    if use_lock:
        lock = context.lockfile()
        if lock is None:
            raise UsageError("--lock: the project has no datamaestro.lock", hint="run `datamaestro lock` first, or name the datasets")
        ids += sorted(lock.datasets)
        pinned = [output for entry in lock.datasets.values() for output in entry.outputs()]
    if not ids:
        raise UsageError("nothing to push: name datasets, or give --lock")
    from ..project.resolve import closure

    records = _records(context, closure(context, ids).values(), report)
    show = context.progress if context.progress is not None else sys.stderr.isatty()
    push_records(context.store, remote, records, pinned, report, signer=signer, jobs=jobs or 16, show_progress=show)
    report.seconds = time.monotonic() - start
    return report


def _signer(context: "Context", target: str, sign: "Path | None"):
    """The secret key that signs the records: ``--sign``, else the remote's ``signing_key``, else None."""
    path = sign if sign is not None else (context.settings.remotes.get(target) or {}).get("signing_key")
    if path is None:
        return None
    from ..remotes.signing import load_signing_key

    return load_signing_key(Path(path))


def _records(context: "Context", definitions, report: PushReport) -> dict[str, ActionRecord]:
    """The local action records of every resource of the datasets, by recipe key."""
    store = context.store
    found: dict[str, ActionRecord] = {}
    for definition in definitions:
        pipeline = context.pipeline(use_remotes=False)  # what this store knows, nothing else
        report.datasets.append(definition.id)
        for resource in definition.ordered_resources():
            if getattr(resource, "volatile", False):
                continue  # a reference: its dataset is pushed for itself
            key, output = pipeline.lookup(resource)
            record = store.actions.get(key) if key is not None and output is not None else None
            if record is None:
                report.notes.append(_never_prepared(definition, resource.name))
                continue
            found[key] = record
    return found


def _never_prepared(definition: "DatasetDefinition", name: str) -> str:
    return f"{definition.id}/{name}: not prepared in this store (run `datamaestro prepare {definition.id}` first)"
