"""``datamaestro store push``: what this store holds of some datasets, sent to a remote cache.

For each dataset (and each dataset it references) every resource's action
record (recipe key -> output) is pushed with the objects its output needs:
a file's object, a tree's document and every file it lists. A transient
input whose objects were collected here is pushed as its record only: a
reader needs its digest to compute the recipe keys downstream, and takes
its bytes (if it ever needs them) from the original source.

Objects the remote has are skipped (one listing, or a HEAD each for a few);
the others go up in parallel, each in one atomic upload; the action records
go up last, once every object they name is there. A push killed halfway
is resumed by running it again: it skips what arrived.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from array import array
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RemoteError, UsageError
from .remotes import PeerUnavailable
from .store.actions import ActionRecord, Kind
from .store.digests import canonical_json

if TYPE_CHECKING:
    from .context import Context
    from .definition import DatasetDefinition

logger = logging.getLogger(__name__)


@dataclass
class PushReport:
    """What a push did.

    :param remote: the remote's label
    :param datasets: the datasets pushed (referenced ones included)
    :param objects_sent: objects uploaded
    :param objects_present: objects the remote had already
    :param bytes_sent: bytes uploaded
    :param actions_sent: action records uploaded
    :param notes: what could not be pushed, and why (a dataset never prepared here)
    :param seconds: wall-clock duration
    :param signed_by: the name of the key that signed the action records (None: unsigned)
    """

    remote: str
    datasets: list[str] = field(default_factory=list)
    objects_sent: int = 0
    objects_present: int = 0
    bytes_sent: int = 0
    actions_sent: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    signed_by: str | None = None


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
    from .lock.resolve import closure

    records = _records(context, closure(context, ids).values(), report)
    store = context.store
    outputs = [record.output for record in records.values()] + pinned
    digests = _objects_of(store, outputs)
    try:
        missing = remote.missing(digests)
        report.objects_present = len(digests) - len(missing)
        _upload(context, remote, missing, report, jobs or 16)
        # records last: a reader never follows one to an object not there yet
        # (in parallel: each is read first, to keep the signatures it has)
        def put_record(item: tuple[str, ActionRecord]) -> None:
            key, record = item
            document = {"key": key, "recipe": record.recipe, "output": record.output.to_json(), "created": record.created}
            signatures = _signatures(remote, key, record.output, signer)
            if signatures:
                document["signatures"] = signatures
            remote.put_action(key, canonical_json(document))

        with ThreadPoolExecutor(max_workers=max(1, jobs or 16)) as pool:
            for _ in pool.map(put_record, records.items()):
                report.actions_sent += 1
    except PeerUnavailable as error:
        from .remotes import reason_of

        hint = getattr(error, "hint", None) or "what was sent stays; run the push again to send the rest"
        raise RemoteError(f"push to {remote.label} failed: {reason_of(remote, error)}", hint=hint) from None
    report.seconds = time.monotonic() - start
    return report


def _signer(context: "Context", target: str, sign: "Path | None"):
    """The secret key that signs the records: ``--sign``, else the remote's ``signing_key``, else None."""
    path = sign if sign is not None else (context.settings.remotes.get(target) or {}).get("signing_key")
    if path is None:
        return None
    from .remotes.signing import load_signing_key

    return load_signing_key(Path(path))


def _signatures(remote, key: str, output, signer) -> list[str]:
    """The signatures a pushed record carries: the remote's record's (when it says the same) and ours.

    Pushing again never drops what others signed: a record signed by the
    lab's CI stays signed when a member pushes it unsigned, and a second key
    adds its signature beside the first.
    """
    from .remotes.signing import merge_signatures

    return merge_signatures(remote.get_action(key), key, output, signer.sign(key, output) if signer else None)


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


def _objects_of(store, outputs) -> list[str]:
    """The objects the outputs need that this store holds (a tree: its document and its files)."""
    digests: list[str] = []
    for output in outputs:
        if output is None or not output.kind.stored or not output.digest:
            continue
        if output.kind == Kind.TREE:
            if store.objects.has(output.digest):
                digests.append(output.digest)
                digests.extend(store.trees.iter_object_digests(output.digest))
        elif store.objects.has(output.digest):
            digests.append(output.digest)
    # unique by sorting in place: a tree of a million files holds no second table of its digests
    digests.sort()
    return [digest for index, digest in enumerate(digests) if (index == 0 or digest != digests[index - 1]) and store.objects.has(digest)]


#: objects of at least this size are uploaded first, largest first (the small ones fill in beside them)
_LARGE = 1 << 20


def _upload(context: "Context", remote, digests: list[str], report: PushReport, jobs: int) -> None:
    """Uploads objects in parallel with a progress bar (bytes) on a terminal, log lines elsewhere."""
    from .fetch import ProgressBar

    store = context.store
    # compact tables (a tree of a million files): sizes and the upload order as machine integers
    sizes = array("q", (os.stat(store.objects.path_of(digest)).st_size for digest in digests))
    # largest first: the long uploads start at once, the small ones fill in beside them
    order = array("q", sorted((index for index, size in enumerate(sizes) if size >= _LARGE), key=lambda index: -sizes[index]))
    order.extend(index for index, size in enumerate(sizes) if size < _LARGE)
    show = context.progress if context.progress is not None else sys.stderr.isatty()
    lock = threading.Lock()
    step = max(1, len(digests) // 10)
    # a bounded number of uploads in flight: one future per object of a million-file tree is gigabytes
    window = max(1, jobs) * 16
    with ProgressBar(show and bool(digests), f"push to {remote.label}") as bar, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        bar.set_total(sum(sizes))
        futures: dict = {}
        position = 0
        while position < len(order) or futures:
            while position < len(order) and len(futures) < window:
                index = order[position]
                position += 1
                futures[pool.submit(remote.put_object, digests[index], store.objects.path_of(digests[index]))] = index
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures.pop(future)
                try:
                    future.result()
                except BaseException:
                    for other in futures:
                        other.cancel()
                    raise
                with lock:
                    report.objects_sent += 1
                    report.bytes_sent += sizes[index]
                    sent = report.objects_sent
                bar.advance(sizes[index])
                if not show and sent % step == 0:
                    logger.info("push to %s: %d of %d objects sent", remote.label, sent, len(digests))
