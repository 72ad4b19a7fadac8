"""Pushing: objects and action records of this store, sent to a remote cache (no dataset known here).

Every record's output needs objects: a file's object, a tree's document and
every file it lists. Objects the remote has are skipped (one listing, or a
HEAD each for a few); the others go up in parallel, each in one atomic
upload; the action records go up last, once every object they name is
there. A push killed halfway is resumed by running it again: it skips what
arrived. Which records (of which datasets) is the caller's choice: see
:mod:`datamaestro.commands.push` (``datamaestro store push``).
"""

from __future__ import annotations

import logging
import os
import threading
from array import array
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import RemoteError
from ..store.actions import ActionRecord, Kind
from ..store.digests import canonical_json
from .base import Remote, RemoteUnavailable, reason_of

if TYPE_CHECKING:
    from ..store import Output, Store

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


def push_records(
    store: "Store",
    remote: Remote,
    records: dict[str, ActionRecord],
    pinned: list["Output"],
    report: PushReport,
    *,
    signer=None,
    jobs: int = 16,
    show_progress: bool = False,
) -> None:
    """Sends the objects the records' outputs (and ``pinned``) need, then the records, signed by ``signer`` when given.

    :param records: the action records to push, by recipe key
    :param pinned: more outputs whose objects go up (a lock's pins)
    :raises RemoteError: the remote refused or could not be reached (what was sent stays)
    """
    outputs = [record.output for record in records.values()] + pinned
    digests = objects_of(store, outputs)
    try:
        packing = None
        if remote.writes_packs:
            # a tree's small objects go up in packs (packs.py); the rest one by one
            from .packs import PackPush

            trees = [output.digest for output in outputs if output is not None and output.kind == Kind.TREE and output.digest in digests]
            packing = PackPush.plan(remote, store, trees, store.trees.iter_object_digests)
            # an object some output is (a file, a tree document) also goes up single: readers ask for it by its name
            named = {output.digest for output in outputs if output is not None}
            digests = [digest for digest in digests if digest not in packing.covered or digest in named]
        missing = remote.missing(digests)
        report.objects_present = len(digests) - len(missing) + (packing.present if packing else 0)
        upload_objects(store, remote, missing, report, jobs, show_progress=show_progress, packing=packing)
        if packing is not None:
            packing.write_indexes(remote)  # after every pack is up: what makes them visible
        # records last: a reader never follows one to an object not there yet
        # (in parallel: each is read first, to keep the signatures it has)
        def put_record(item: tuple[str, ActionRecord]) -> None:
            key, record = item
            document = {"key": key, "recipe": record.recipe, "output": record.output.to_json(), "created": record.created}
            signatures = _signatures(remote, key, record.output, signer)
            if signatures:
                document["signatures"] = signatures
            remote.put_action(key, canonical_json(document))

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for _ in pool.map(put_record, records.items()):
                report.actions_sent += 1
    except RemoteUnavailable as error:
        hint = getattr(error, "hint", None) or "what was sent stays; run the push again to send the rest"
        raise RemoteError(f"push to {remote.label} failed: {reason_of(remote, error)}", hint=hint) from None


def _signatures(remote: Remote, key: str, output, signer) -> list[str]:
    """The signatures a pushed record carries: the remote's record's (when it says the same) and ours.

    Pushing again never drops what others signed: a record signed by the
    lab's CI stays signed when a member pushes it unsigned, and a second key
    adds its signature beside the first.
    """
    from .signing import merge_signatures

    return merge_signatures(remote.get_action(key), key, output, signer.sign(key, output) if signer else None)


def objects_of(store: "Store", outputs) -> list[str]:
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


def upload_objects(store: "Store", remote: Remote, digests: list[str], report: PushReport, jobs: int, *, show_progress: bool = False, packing=None) -> None:
    """Uploads objects (and the packs of ``packing``, a :class:`~.packs.PackPush`) in parallel with a progress bar (bytes) when ``show_progress``, log lines otherwise."""
    from ..fetch.progress import ProgressBar

    # compact tables (a tree of a million files): sizes and the upload order as machine integers
    sizes = array("q", (os.stat(store.objects.path_of(digest)).st_size for digest in digests))
    # largest first: the long uploads start at once, the small ones fill in beside them
    order = array("q", sorted((index for index, size in enumerate(sizes) if size >= _LARGE), key=lambda index: -sizes[index]))
    order.extend(index for index, size in enumerate(sizes) if size < _LARGE)
    plans = packing.plans if packing is not None else []
    total = len(digests) + (packing.objects if packing is not None else 0)
    show = show_progress
    lock = threading.Lock()
    step = max(1, total // 10)
    # a bounded number of uploads in flight: one future per object of a million-file tree is gigabytes
    window = max(1, jobs) * 16
    with ProgressBar(show and bool(total), f"push to {remote.label}") as bar, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        bar.set_total(sum(sizes) + (packing.bytes if packing is not None else 0))
        futures: dict = {}
        position = 0  # objects first (largest first), then the packs
        while position < len(order) + len(plans) or futures:
            while position < len(order) + len(plans) and len(futures) < window:
                if position < len(order):
                    index = order[position]
                    future = pool.submit(remote.put_object, digests[index], store.objects.path_of(digests[index]))
                    futures[future] = (1, sizes[index])
                else:
                    number = position - len(order)
                    future = pool.submit(packing.send, remote, store, number)
                    futures[future] = (len(plans[number]), sum(size for _, size in plans[number]))
                position += 1
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                count, size = futures.pop(future)
                try:
                    future.result()
                except BaseException:
                    for other in futures:
                        other.cancel()
                    raise
                with lock:
                    before = report.objects_sent
                    report.objects_sent += count
                    report.bytes_sent += size
                    sent = report.objects_sent
                bar.advance(size)
                if not show and sent // step != before // step:
                    logger.info("push to %s: %d of %d objects sent", remote.label, sent, total)
