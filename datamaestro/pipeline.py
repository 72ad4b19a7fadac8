"""Runs a dataset's resource DAG against the store.

For every resource the pipeline computes a recipe key (the resource's own
description plus the digests of its inputs) and asks the action cache. A
resource is

- COMPLETE when its recipe is cached and its output is in the store,
- PARTIAL when its recipe is cached but the output is gone (collected,
  quarantined): it is produced again,
- NONE when its recipe was never run on this store.

Only what is needed is produced: a transient intermediate whose dependents
are all complete is never fetched again. Each production holds a store lock
named by the recipe key, so concurrent processes (or machines on one NFS
store) do every step once: the others wait, then find the output. At the end
the dataset's manifest (non-transient resources only) is published as an
immutable view and the readable path is swung onto it in one rename.

With pins (a ``datamaestro.lock`` in scope), a resource whose pinned output
is in the store is COMPLETE whatever the action cache says (so two projects
pinning different versions of one download each find their own); what must
be produced is checked against its pins: downloaded bytes before they enter
the store, outputs before they are recorded, the manifest before it is
published.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import DatamaestroError, IntegrityError, LockTimeoutError, OfflineError, StoreError, UntrustedInputError
from .store import ActionRecord, Output, recipe_key
from .store.leases import hold_while_working
from .store.layout import TMP_CREATION, disk_error, stop_new_tmp_files
from .store.digests import format_digest, hasher
from .store.views import VIEW_LINK, current_view, manifest_digest, point_readable_path
from .store.actions import Kind
from .store.testpoints import pause

if TYPE_CHECKING:
    from .definition import DatasetDefinition, Location, Request
    from .resource import Resource
    from .fetch import Fetcher, FetchResult
    from .settings import Settings
    from .store import Store
    from .lock.model import LockedDataset

logger = logging.getLogger(__name__)

NONE, PARTIAL, COMPLETE, REMOTE = "none", "partial", "complete", "remote"


class Job:
    """What :meth:`Resource.produce` is given: the store, its inputs, the transport (implements :class:`datamaestro.resource.Job`).

    :ivar store: the :class:`~datamaestro.store.Store`
    :ivar expected: the pinned output (from a lock) or None
    """

    def __init__(self, pipeline: "Pipeline", definition: "DatasetDefinition", resource: "Resource", expected: Output | None):
        self.pipeline = pipeline
        #: the session's context, for plugin code only (a 1.x resource, a custom download); the job's own calls go through the pipeline
        self.context = pipeline.plugin_context
        self.store = pipeline.store
        self.settings = pipeline.settings
        self.definition = definition
        self.resource = resource
        self.expected = expected

    @property
    def description(self) -> str:
        """``<dataset id>/<resource name>``, for messages and progress bars."""
        return f"{self.definition.id}/{self.resource.name}"

    def input(self, resource: "Resource") -> Output:
        """The output of an input resource (present in the store)."""
        return self.pipeline._present_output(resource)

    def input_path(self, resource: "Resource") -> Path:
        """The store path of an input: a file object or a tree folder."""
        output = self.input(resource)
        return self.store.materialize(output.kind, output.digest)

    def download(self, url: str, sink, *, checkers=(), description: str | None = None) -> "FetchResult":
        """Streams ``url`` into ``sink`` through the context's fetcher (mirrors, retries, resume).

        When a lock pins the source digest of a one-URL resource, the raw
        bytes are checked against it before the download returns, hence
        before anything is committed to the store; a mismatch raises the
        lock's :class:`IntegrityError` even when other sources (mirrors, the
        original) failed differently.
        """
        pin = None
        if self.expected is not None and self.expected.source_digest and len(self.resource.urls()) == 1:
            pin = _PinCheck(self)
            checkers = [*checkers, pin]
        try:
            return self.pipeline.fetcher().fetch(
                url, sink, checkers=checkers, description=description or self.description, partial_dir=self.store.partial_folder()
            )
        except DatamaestroError:
            if pin is not None and pin.mismatch is not None:
                raise pin.mismatch from None
            raise

    def tmp_path(self, hint: str = "") -> Path:
        """A unique path in the store's tmp folder (same file system as objects)."""
        return self.store.tmp_path(hint)

    def prepare_dataset(self, definition: "DatasetDefinition") -> "PipelineResult":
        """Prepares another dataset (a reference) with a pipeline of its own, on the same context.

        It is shown (view, readable folder) as soon as it is complete, also
        inside :func:`publications_held`: it is a whole dataset, and the
        resources that reference it may read it through its folder.
        """
        token = _HELD.set(None)
        try:
            pipeline = self.pipeline
            return pipeline.again().run(pipeline.requests(definition))
        finally:
            _HELD.reset(token)


class _PinCheck:
    """A fetch checker comparing the raw bytes with the source digest a lock pins."""

    kind = "pinned digest"

    def __init__(self, job: Job):
        self.job = job
        #: the error of the last mismatch (the fetcher may go on to another source)
        self.mismatch: IntegrityError | None = None

    def start(self) -> "_PinState":
        """A fresh hasher for one transfer."""
        return _PinState(self)


class _PinState:
    def __init__(self, check: _PinCheck):
        self.check = check
        self.hasher = hasher()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.hasher.update(data)
        self.size += len(data)

    def verify(self, label: str) -> None:
        job = self.check.job
        actual = format_digest(self.hasher.hexdigest())
        wrong_size = job.expected.size is not None and self.size != job.expected.size
        if wrong_size or actual != job.expected.source_digest:
            # the label names the URL that served these bytes (a mirror says so)
            sizes = (self.size, job.expected.size) if wrong_size else None
            self.check.mismatch = pin_error(job.definition.id, job.resource.name, label, "downloaded bytes", actual, job.expected.source_digest, sizes=sizes)
            raise self.check.mismatch


@dataclass
class PipelineResult:
    """What a run did: the manifest published, where the dataset lives, and what was produced.

    :ivar location: the readable folder and the pinned view (what configs point at)
    """

    dataset_id: str
    manifest: str
    view: Path
    location: "Location"
    produced: list[str] = field(default_factory=list)
    outputs: dict[str, Output] = field(default_factory=dict)
    #: the resources taken from a remote cache (a subset of ``produced``)
    pulled: list[str] = field(default_factory=list)

    @property
    def datapath(self) -> Path:
        """The dataset's readable folder."""
        return self.location.readable


@dataclass
class Lookup:
    """What the pipeline knows of a resource: its recipe, the recipe's key, the cached output.

    ``recipe`` and ``key`` are None while an input's digest is unknown (that
    input must be produced first); ``output`` is None when nothing is cached.
    """

    recipe: dict | None
    key: str | None
    output: Output | None
    #: an output a remote cache offers (its action record, or the lock's pin): digest known, objects not here
    remote: Output | None = None

    @property
    def known(self) -> Output | None:
        """The output whose digest is known, here or in a remote cache."""
        return self.output or self.remote


class Pipeline:
    """Prepares datasets on a context's store (see the module documentation)."""

    def __init__(
        self,
        store: "Store",
        *,
        settings: "Settings",
        fetcher: "Callable[[], Fetcher]",
        remotes: list,
        requests: "Callable[[DatasetDefinition], Request]",
        plugin_context: Any,
    ):
        """Built by :meth:`Context.pipeline`, which hands it the session's services.

        :param store: where outputs, action records and views are kept
        :param settings: the session's settings (offline, ``parallel_downloads``, ``lock_timeout``, the data dir)
        :param fetcher: gives the session's transport, made on first use (a run
            with nothing to download makes none)
        :param remotes: the remote caches asked before the original sources
        :param requests: the :class:`Request` of a referenced dataset (:meth:`Context.request_of`)
        :param plugin_context: handed to plugin code only (``job.context``, a
            definition's production checks); the pipeline and its jobs call
            none of its methods (docs/architecture.md, "Who calls whom")
        """
        self.store = store
        self.settings = settings
        self.fetcher = fetcher
        self.requests = requests
        self.plugin_context = plugin_context
        #: remote caches asked before the original sources (the settings' ``[remotes]``)
        self.remotes = remotes
        self._dead_remotes: set[str] = set()
        #: recipe key -> label of the remote whose action record is offered
        self._offered_by: dict[str, str] = {}
        #: names of the resources taken from a remote cache during the run
        self.pulled: list[str] = []
        self._known: dict[int, Lookup] = {}
        #: expected outputs by resource name during a run (from a lock)
        self.pins: dict[str, Output] = {}
        #: download again what has URLs, whatever the cache says (``lock --upgrade``)
        self.refresh = False
        self._working = contextlib.ExitStack()
        self._working_lease = None

    def again(self, *, use_remotes: bool = True) -> "Pipeline":
        """A new pipeline on the same services (another dataset's run: a reference's).

        :param use_remotes: keep the remote caches (False: what this store knows, nothing else)
        """
        remotes = self.remotes if use_remotes else []
        return Pipeline(self.store, settings=self.settings, fetcher=self.fetcher, remotes=remotes, requests=self.requests, plugin_context=self.plugin_context)

    def referenced_manifest(self, definition: "DatasetDefinition") -> str | None:
        """The manifest of another dataset (a reference's) when it is prepared, else None: :meth:`prepared_manifest` of its request, read-only, no remote asked."""
        return self.again(use_remotes=False).prepared_manifest(self.requests(definition))

    # -- keys and lookups
    def _inputs(self, resource: "Resource") -> dict[str, Output] | None:
        """The known outputs (here or in a remote cache) of a resource's inputs by name; None while one is unknown."""
        inputs = {}
        for dependency in resource.dependencies():
            output = self._lookup(dependency).known
            if output is None:
                return None
            inputs[dependency.name] = output
        return inputs

    def recipe_of(self, resource: "Resource") -> dict | None:
        """The full recipe of a resource, or None while an input's digest is unknown."""
        inputs = self._inputs(resource)
        return None if inputs is None else full_recipe(resource.recipe(), inputs)

    def lookup(self, resource: "Resource") -> tuple[str | None, Output | None]:
        """(recipe key, cached output) of a resource; None where unknown."""
        found = self._lookup(resource)
        return found.key, found.output

    def _lookup(self, resource: "Resource") -> Lookup:
        known = self._known.get(id(resource))
        if known is not None:
            return known
        recipe = self.recipe_of(resource)
        pin = self.pins.get(resource.name)
        # volatile resources (references to other datasets) are never
        # trusted from the cache: they run every time, cheaply when warm
        cached = not getattr(resource, "volatile", False) and not self._refreshed(resource)
        key, output = output_now(self.store, recipe, pin, cached=cached)
        remote = None
        if self.remotes and key is not None and not getattr(resource, "volatile", False) and not self._refreshed(resource):
            if output is not None and output.kind.stored and not self.store.output_present(output):
                remote = output  # known here, its objects collected: a remote may have them
            elif output is None and pin is not None and pin.kind.stored and pin.digest:
                remote = pin  # the lock names the bytes: any remote holding them will do
            elif output is None:
                remote = self._remote_record(key, resource)
        found = self._known[id(resource)] = Lookup(recipe, key, output, remote)
        return found

    def _remote_record(self, key: str, resource: "Resource | None" = None, *, after: str | None = None) -> Output | None:
        """The output the first remote cache that knows a recipe key records for it (digest only).

        A record is validated before use (:func:`~datamaestro.store.actions.parse_record`),
        and refused when its output kind is not one the resource produces: the
        next remote is asked then, as for a record no remote has.

        :param after: ask only the remotes after the one of this label (the one before served something refused)
        """
        from .remotes.base import RemoteUnavailable, is_left_out, leave_out
        from .store.actions import parse_record

        remotes = self.remotes
        if after is not None:
            labels = [remote.label for remote in remotes]
            remotes = remotes[labels.index(after) + 1 :] if after in labels else []
        for remote in remotes:
            if remote.label in self._dead_remotes or is_left_out(remote):
                continue
            try:
                data = remote.get_action(key)
            except RemoteUnavailable as error:
                self._dead_remotes.add(remote.label)
                line = leave_out(remote, error)
                if line is not None:  # once per run, not once per resource or dataset
                    logger.warning("%s", line)
                continue
            if data is None:
                continue
            if remote.record_trust is not None and not remote.record_trust.admits(key, data):
                continue  # not signed by a key the settings trust: the next remote, or the sources
            try:
                output = parse_record(data, key, source=remote.label).output
                if resource is not None and output.kind not in produced_kinds(resource):
                    raise UntrustedInputError(
                        f"refused action record {key} from {remote.label}: its output is a {output.kind}, "
                        f"{resource.name} gives a {' or a '.join(produced_kinds(resource))}",
                        source=remote.label,
                    )
            except UntrustedInputError as error:
                logger.warning("%s", error.message)
                continue
            self._offered_by[key] = remote.label
            return output
        return None

    def _recipe_for_production(self, resource: "Resource") -> tuple[dict, str]:
        """The recipe and key to produce a resource with, its inputs now present.

        The lookup's, unless an input was unknown then or came out with other
        bytes when produced again (a derivation that is not reproducible).
        """
        found = self._lookup(resource)
        recipe = self.recipe_of(resource)
        if found.recipe is not None and found.recipe == recipe:
            return found.recipe, found.key
        return recipe, recipe_key(recipe)

    def _refreshed(self, resource: "Resource") -> bool:
        """True when the cache must be ignored for this resource (a refresh of what has URLs)."""
        return self.refresh and bool(resource.urls())

    def state(self, resource: "Resource") -> str:
        """NONE, PARTIAL or COMPLETE (see the module documentation)."""
        found = self._lookup(resource)
        if found.output is not None and self.store.output_present(found.output):
            return COMPLETE
        if found.remote is not None:
            return REMOTE
        return NONE if found.output is None else PARTIAL

    def needed(self, targets: list["Resource"]) -> list["Resource"]:
        """The resources to produce so that every target is present, inputs first."""
        order: list[Resource] = []
        seen: set[int] = set()

        def visit(resource: "Resource") -> None:
            if id(resource) in seen:
                return
            seen.add(id(resource))
            state = self.state(resource)
            if state == COMPLETE:
                return
            if state != REMOTE:
                # taken from a remote cache, a resource needs none of its inputs
                for dependency in resource.dependencies():
                    visit(dependency)
            order.append(resource)

        for target in targets:
            visit(target)
        return order

    # -- what is there already (read-only)
    def prepared_manifest(self, request: "Request") -> str | None:
        """The manifest a dataset has when it is fully present and published; None otherwise.

        Read-only and cheap: action records and ``stat`` calls, no rehash, no
        lock taken, nothing written, no remote asked (build the pipeline with
        ``use_remotes=False``). A volatile resource (a reference, a generated
        dataset's download) answers through its ``present_output(manifest_of)``
        hook (given :meth:`referenced_manifest`); without one, it is taken as not prepared. The dataset's folder
        (pinned view, or readable folder) must show that manifest, since
        configs point there.
        """
        definition, locked, location = request.definition, request.locked, request.location
        self.pins = request.pins
        entries = {}
        for resource in definition.ordered_resources():
            if getattr(resource, "volatile", False) and id(resource) not in self._known:
                hook = getattr(resource, "present_output", None)
                output = hook(self.referenced_manifest) if hook is not None else None
                if output is None:
                    return None
                self._known[id(resource)] = Lookup(None, None, output)
        for resource in definition.ordered_resources():
            if resource.transient:
                continue
            if self.state(resource) != COMPLETE:
                return None
            output = self._lookup(resource).output
            if output.kind in ("file", "tree"):
                entries[resource.name] = (output.kind, output.digest)
        manifest = manifest_digest(entries)
        if locked is not None and manifest != locked.manifest:
            return None
        if not entries:
            return manifest  # values only: no folder is read
        view = self.store.views.path_of(manifest)
        if location.pinned_view is not None:
            return manifest if location.pinned_view == view and view.is_dir() else None
        try:
            shown = (location.readable / VIEW_LINK).resolve(strict=True)
        except OSError:
            return None
        return manifest if shown == view.resolve() else None

    # -- running
    def run(self, request: "Request", *, refresh: bool = False) -> PipelineResult:
        """Makes a dataset present in the store and its readable path point at it.

        :param request: the dataset, its lock entry (pins, and the manifest the
            result must have) and its location (see :meth:`Context.request`)
        :param refresh: download again every resource with URLs (the action
            cache is not trusted for them: ``lock --upgrade``)
        :raises OfflineError: offline and something must be downloaded
        :raises IntegrityError: an output differs from its pin
        """
        self.pins = request.pins
        self.refresh = refresh
        # holds the working lease of the run, once it has something to produce (a
        # dataset prepared within another's run keeps the outer lease if it has one)
        outer = self._working, self._working_lease
        try:
            with contextlib.ExitStack() as self._working:
                return self._run(request.definition, request.locked, request.location, retry=True)
        finally:
            self._working, self._working_lease = outer

    def _run(self, definition: "DatasetDefinition", locked: "LockedDataset | None", location: "Location", *, retry: bool) -> PipelineResult:
        resources = definition.ordered_resources()
        targets = [r for r in resources if not r.transient]
        legacy = self._legacy_folder(location.readable)
        self._compare_stamps(targets)
        to_produce = self.needed(targets)
        if to_produce and self.settings.offline:
            missing = [r for r in to_produce if not (legacy and (legacy / r.name).exists()) and self.state(r) != REMOTE]
            fetcher = self.fetcher()
            # a URL with a file:// mirror is read from this machine: no network
            urls = [url for r in missing for url in r.urls() if not fetcher.local_candidates(url)]
            if urls:
                raise OfflineError(urls)
        if to_produce and not self._working_lease:
            # until the publication, what this run produces is referenced by nothing: gc
            # (of any machine) keeps what is younger than a live lease (store/leases.py)
            held = _HELD.get()
            if held is None:
                self._working_lease = self._working.enter_context(hold_while_working(self.store.layout, ttl=self.store.lease_ttl, what=f"preparing {definition.id}"))
            else:  # publications held: the block's lease, kept until they are made
                if held.lease is None:
                    held.lease = held.working.enter_context(hold_while_working(self.store.layout, ttl=self.store.lease_ttl, what="preparing a sync's datasets"))
                self._working_lease = held.lease
        if to_produce:
            # a data dir the dataset cannot be linked into is said before any download
            check_data_dir(self.settings.data_dir, location.readable)
            # what must hold before anything of the dataset is fetched (a licence to accept)
            for check in definition.production_checks:
                check(definition, self.plugin_context)
        # leftovers of killed writers (downloads, views): one scandir of tmp/
        self.store.reap_tmp()
        done = self._download_concurrently(definition, to_produce, legacy)
        for resource in to_produce:
            if id(resource) not in done and self._produce(definition, resource, self.pins.get(resource.name), legacy):
                done[id(resource)] = True
        produced = [resource.name for resource in to_produce if done.get(id(resource))]
        entries = {}
        outputs = {}
        for resource in targets:
            _, output = self.lookup(resource)
            outputs[resource.name] = output
            if resource.name in self.pins:
                check_pin(definition, resource, output, self.pins[resource.name])
            if output.kind in ("file", "tree"):
                entries[resource.name] = (output.kind, output.digest)
        if locked is not None and manifest_digest(entries) != locked.manifest:
            raise IntegrityError(
                f"{definition.id}: the dataset's manifest is {manifest_digest(entries)}, the lock pins {locked.manifest}",
                hint=f"the definition changed what the dataset holds; run `datamaestro lock --upgrade {definition.id}` if the change is wanted",
            )
        pause("before-publish")
        try:
            manifest, view = publish_dataset(self.store, self.settings, location.readable, entries)
            missing = not all(self.store.output_present(o) for o in outputs.values())
        except StoreError:
            if all(self.store.output_present(o) for o in outputs.values()):
                raise
            missing = True
        if missing:
            # `store gc` removed an unreachable output we reused between our
            # check and our publish: produce it again (the view, once
            # published, keeps it alive)
            if retry:
                self._known.clear()
                return self._run(definition, locked, location, retry=False)
            raise StoreError(f"{definition.id}: outputs keep disappearing from the store", hint="is `store gc` running in a loop?")
        return PipelineResult(definition.id, manifest, view, location, produced, outputs, list(self.pulled))

    def _download_concurrently(self, definition, to_produce: list, legacy: Path | None) -> dict[int, bool]:
        """Produces at once (``parallel_downloads`` at a time) the resources that are plain downloads.

        Only resources that say they are ``concurrent`` (a file download: no
        input, nothing but its job touched) and are produced from their URLs
        run so; the others, in order, after them. Each holds its own store
        lock, as when run alone. On a failure, what runs is let finish (each
        download is bounded by its timeouts) and nothing new starts; the
        error of the first such resource in the dataset's order is raised.
        Ctrl-C and SIGTERM stop at once: a download cut short keeps its
        bytes for the next run.

        :returns: ``id(resource)`` -> whether it did the work, for those it ran
        """
        import contextvars

        width = self.settings.parallel_downloads
        batch = [
            r
            for r in to_produce
            if getattr(r, "concurrent", False) and not r.dependencies() and r.urls() and self.state(r) in (NONE, PARTIAL)
        ]
        if width < 2 or len(batch) < 2:
            return {}
        fetcher = self.fetcher()  # one transport for every thread, made before them
        results: dict[int, bool] = {}
        errors: dict[int, BaseException] = {}
        pending = list(batch)
        guard = threading.Lock()
        stop = threading.Event()

        def work() -> None:
            while True:
                with guard:
                    if errors or not pending or stop.is_set():
                        return
                    resource = pending.pop(0)
                try:
                    with fetcher.cancellable(stop, TMP_CREATION), stop_new_tmp_files(stop):
                        did = self._produce(definition, resource, self.pins.get(resource.name), legacy)
                except BaseException as exc:  # handed to the main thread
                    with guard:
                        errors[id(resource)] = exc
                    return
                with guard:
                    results[id(resource)] = did

        # daemon threads, each in a copy of the caller's context (the session in scope)
        workers = [threading.Thread(target=contextvars.copy_context().run, args=(work,), name=f"download {n}", daemon=True) for n in range(min(width, len(batch)))]
        try:
            # started within the `try`: a signal that comes while a thread starts (slow on a
            # loaded machine) must stop the threads already running and clean up after them
            for worker in workers:
                worker.start()
                pause("download-thread-started")
            for worker in workers:
                while worker.is_alive():
                    worker.join(0.1)  # wakes up for Ctrl-C and SIGTERM
        except BaseException:
            # Ctrl-C or SIGTERM: the downloads stop at their next chunk, keeping what they received;
            # one still waiting for a server leaves its tmp files, and one that stopped keeps its partial
            # download even when it holds nothing yet: this process's tmp entries and empty partial
            # downloads are removed here, whether or not a thread is still alive (seen in a busy run:
            # every thread had stopped, and an empty partial download and a .part stayed in tmp/)
            stop.set()
            deadline = time.monotonic() + 2
            for worker in workers:
                if worker.is_alive():  # not those the signal kept from starting
                    worker.join(max(0.0, deadline - time.monotonic()))
            self.store.drop_own_tmp()
            raise
        if errors:
            first = next(r for r in batch if id(r) in errors)
            raise errors[id(first)]
        return results

    def _compare_stamps(self, targets: list["Resource"]) -> None:
        """Compares the objects of the present outputs with their stamps (``Store.compare_stamps``).

        A changed object is moved to quarantine: its resource is then
        missing, and produced again like any other.
        """
        present = []
        for resource in targets:
            _, output = self.lookup(resource)
            if output is not None and output.kind.stored and self.store.output_present(output):
                present.append(output)
        if self.store.compare_stamps(present):
            self._known.clear()

    def _produce(self, definition, resource, expected, legacy: Path | None) -> bool:
        """Produces one resource under its store lock; False when another process had done it."""
        recipe, key = self._recipe_for_production(resource)
        with self.store.lock(key, timeout=self.settings.lock_timeout, what=_doing(definition, resource)):
            volatile = getattr(resource, "volatile", False)
            record = None if volatile or self._refreshed(resource) else self.store.actions.get(key)
            did_work = record is None or not self.store.output_present(record.output)
            if not did_work:
                output = record.output
            else:
                output = self._pull(definition, resource)
                if output is None:
                    output, recipe, key = self._make(definition, resource, expected, legacy)
                if expected is not None:
                    output = as_pinned_tree(self.store, output, expected)
                    check_pin(definition, resource, output, expected)
                if not volatile:
                    self.store.actions.put(ActionRecord(key=key, recipe=recipe, output=output))
        self._known[id(resource)] = Lookup(recipe, key, output)
        return did_work

    def _pull(self, definition, resource) -> Output | None:
        """The output a remote cache offers, taken into the store (every object checked); None when no remote serves it whole."""
        found = self._known.get(id(resource))
        offer = found.remote if found is not None else None
        if offer is None:
            return None
        if not offer.kind.stored:
            return offer
        from .remotes.base import is_left_out
        from .remotes.pull import pull_outputs

        key = found.key
        while True:
            report = pull_outputs(
                self.store, [offer], [r for r in self.remotes if r.label not in self._dead_remotes and not is_left_out(r)]
            )
            for line in report.refused:
                logger.warning("%s/%s: %s", definition.id, resource.name, line)
            for line in report.unavailable:  # of the remote, not of this resource
                logger.warning("%s", line)
            if self.store.output_present(offer):
                break
            # a record whose tree was refused: the next remote's record may name another one
            served_by = self._offered_by.pop(key, None) if report.rejected else None
            offer = self._remote_record(key, resource, after=served_by) if served_by else None
            if offer is None or not offer.kind.stored:
                logger.info("%s/%s: no remote cache has it whole; producing it from its sources", definition.id, resource.name)
                return None
        logger.info("%s/%s: taken from %s", definition.id, resource.name, ", ".join(report.taken) or "a remote cache")
        self.pulled.append(resource.name)
        return offer

    def _make(self, definition, resource, expected, legacy: Path | None) -> tuple[Output, dict, str]:
        """Produces a resource from its inputs (produced first when missing); returns its output, recipe and key."""
        # inputs already in the store are checked as outputs are (another member's
        # object, altered with its mtime set back, must not feed a derivation)
        present = [o for o in (self.lookup(d)[1] for d in resource.dependencies()) if o is not None and o.kind.stored and self.store.output_present(o)]
        # whole: a derivation reads every file of its inputs anyway
        if present and self.store.compare_stamps(present, whole=True):
            self._known.clear()  # one was moved aside: it is produced again below
        for dependency in self.needed(resource.dependencies()):
            # inputs a remote cache was to spare us, which it could not serve after all
            self._produce(definition, dependency, self.pins.get(dependency.name), legacy)
        for dependency in resource.dependencies():
            self._present_output(dependency)  # inputs first: a broken order fails here, not in produce()
        recipe, key = self._recipe_for_production(resource)
        adopted = self._adopt(legacy, resource)
        if adopted is not None:
            return adopted, recipe, key
        logger.info("producing %s/%s", definition.id, resource.name)
        job = Job(self, definition, resource, expected)
        try:
            output = resource.produce(job)
        except DatamaestroError as error:
            raise error.located(job.description)
        except OSError as exc:
            # a full disk, or a store deleted or made read-only, met by
            # a resource's own file operations (an archive's extraction
            # folder, a derivation's output): the store's trouble, not a bug
            if not store_trouble(exc, self.store.root):
                raise
            raise disk_error(exc, f"preparing {job.description}") from None
        return output, recipe, key

    def _present_output(self, resource) -> Output:
        _, output = self.lookup(resource)
        if output is None or not self.store.output_present(output):
            raise RuntimeError(f"input {resource.name} should have been produced first")
        return output

    # -- data of the original datamaestro
    @staticmethod
    def _legacy_folder(path: Path) -> Path | None:
        """The dataset's readable folder when it holds data laid out by the original datamaestro."""
        if path.is_dir() and not (path / VIEW_LINK).is_symlink():
            return path
        return None

    def _adopt(self, legacy: Path | None, resource) -> Output | None:
        """Takes a resource's file or folder from a legacy folder into the store (no download).

        The file is moved, not copied; the readable entry that replaces it
        is made when the view is published.
        """
        if legacy is None or resource.kind not in ("file", "tree"):
            return None
        path = legacy / resource.name
        if path.is_symlink():
            return None
        if resource.kind == Kind.FILE and path.is_file():
            logger.info("adopting %s into the store", path)
            return Output(Kind.FILE, self.store.ingest_file(path, move=True))
        if resource.kind == Kind.TREE and path.is_dir():
            logger.info("adopting %s into the store", path)
            digest = self.store.ingest_tree(path, move=True)
            shutil.rmtree(path, ignore_errors=True)
            return Output(Kind.TREE, digest)
        return None


def full_recipe(own: dict, inputs: "dict[str, Output]") -> dict:
    """A resource's full recipe: its own description (``resource.recipe()``) plus its inputs' digests (or values) by name."""
    recipe = dict(own)
    if inputs:
        recipe["inputs"] = {name: output.digest if output.kind.stored else output.value for name, output in inputs.items()}
    return recipe


def output_now(store, recipe: dict | None, pin: Output | None, *, cached: bool = True) -> tuple[str | None, Output | None]:
    """What output a resource has now: (its recipe key, the output); the one lookup of the pipeline and the warm path.

    A pin (a lock's) whose objects the store has wins, whatever the action
    cache says (it may hold another version); else the action cache's
    record for the recipe key (:func:`full_recipe`), unless ``cached`` is
    False. The key and the output are None where unknown (``recipe`` None:
    an input's digest is not known yet).
    """
    key = None if recipe is None else recipe_key(recipe)
    if pin is not None and pin.kind.stored and pin.digest and store.output_present(pin):
        return key, pin
    if key is None or not cached:
        return key, None
    record = store.actions.get(key)
    return key, record.output if record else None


def produced_kinds(resource) -> tuple[Kind, ...]:
    """The output kinds a resource may produce: its declared kind.

    A class that declares no kind of its own (the original API's generic
    ``Resource``: its ``download()`` writes a file or a folder) may give a
    file or a tree, never a value.
    """
    from .resource import Resource

    declared = "kind" in vars(resource) or any("kind" in vars(cls) for cls in type(resource).__mro__ if cls is not Resource and issubclass(cls, Resource))
    if declared:
        return (Kind(resource.kind),)
    return (Kind.FILE, Kind.TREE)


def _doing(definition, resource) -> str:
    """What producing a resource does, as a process waiting for it is told (``downloading train.gz for <id>/<name>``)."""
    from urllib.parse import unquote, urlsplit

    names = [unquote(urlsplit(url).path).rstrip("/").rpartition("/")[2] or url for url in resource.urls()]
    if not names:
        return f"preparing {definition.id}/{resource.name}"
    shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
    return f"downloading {shown} for {definition.id}/{resource.name}"


#: the publications held back by the innermost :func:`publications_held` block (None: publish at once)
@dataclass
class _HeldPublications:
    """The publications a :func:`publications_held` block holds back, and the working lease that covers them."""

    entries: list = field(default_factory=list)
    #: released once the held publications are made (or the block failed)
    working: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    lease: object = None


_HELD: "contextvars.ContextVar[_HeldPublications | None]" = contextvars.ContextVar("datamaestro_held_publications", default=None)


@contextmanager
def publications_held(*, jobs: int = 1) -> Iterator[None]:
    """Holds back the views and readable links of the datasets prepared in a block until the whole block succeeds.

    A command that fails (a pin or manifest mismatch, a 404 on its last
    file, SIGTERM) thus publishes nothing: no new view, no readable folder
    changed; the objects it stored stay (content-addressed, they are used
    by the next run), and so does each held dataset's manifest object.
    Inside an outer block, the outer one publishes. A dataset prepared
    because another references it is shown at once (see
    :meth:`Job.prepare_dataset`). Each held publication is made with the
    store and settings it was asked with.

    :param jobs: datasets published at once when the block succeeds
    """
    if _HELD.get() is not None:
        yield
        return
    held = _HeldPublications()
    # the working lease a pipeline takes in the block lives until the held publications are
    # made: what it produced is referenced by nothing before, and gc keeps it only under a lease
    with held.working:
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
        # reached only when the block succeeded
        unique = list({(str(readable), manifest_digest(entries)): (store, settings, readable, entries) for store, settings, readable, entries in held.entries}.values())
        if jobs > 1 and len(unique) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(jobs, len(unique))) as pool:
                list(pool.map(lambda item: publish_dataset(*item), unique))
        else:
            for item in unique:
                publish_dataset(*item)


def publish_dataset(store: "Store", settings: "Settings", readable: Path, entries: dict[str, tuple[str, str]]) -> tuple[str, Path]:
    """Publishes a manifest's view and swings a readable folder onto it; returns (manifest, view).

    The data dir (``settings.data_dir``) is registered as a gc root first, so that a concurrent
    ``store gc`` sees the link made here; the rest (every output checked to
    be in the store, the view, the root's marker, the link) holds the gc
    lock (:func:`_gc_held_off`, waiting at most ``settings.lock_timeout``). Inside a :func:`publications_held` block,
    only the manifest object is stored: the view and the link are made when
    the block succeeds.

    :raises StoreError: an output left the store before its publication
    """
    data_dir = settings.data_dir
    held = _HELD.get()
    if held is not None:
        manifest = store.views.store_manifest(entries)
        held.entries.append((store, settings, readable, dict(entries)))
        return manifest, store.views.path_of(manifest)
    try:
        root = store.register_root("data", data_dir)
    except StoreError as error:
        _unregistered(error, data_dir)
        root = None
    with _gc_held_off(store, settings.lock_timeout, readable, entries, root):
        # under the gc lock, what is checked here stays until the link below is made
        # (a gc that marked before this publication deletes nothing before it is done)
        missing = [digest for kind, digest in entries.values() if not (store.trees.has(digest) if kind == Kind.TREE else store.objects.has(digest))]
        if missing:
            raise StoreError(
                f"{readable}: {len(missing)} of its files left the store before they were published ({missing[0]})",
                hint="run the command again; is `datamaestro store gc --grace 0` running in a loop?",
            )
        manifest, view = store.views.publish(entries)
        if root is not None:
            try:
                # gc on another machine cannot read this data dir: the marker tells it what to keep
                store.mark_published(root, manifest)
            except StoreError as error:
                _unregistered(error, data_dir)
        try:
            point_readable_path(readable, view, data_dir, list(entries))
        except StoreError:
            check_data_dir(data_dir, readable)  # the data dir, not the store, refused it: say so
            raise
    return manifest, view


def check_data_dir(data_dir: Path, readable: Path, *, doing: str = "") -> None:
    """Raises when the readable folder of a dataset cannot be made or changed in the data dir (a read-only one).

    :param doing: what cannot be done, for the message (default: the folder cannot be made)

    :raises DatamaestroError: the data dir is on a read-only file system, or
        this user may not write the folder that would hold the readable folder
    """
    folder = Path(readable)
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return  # nothing to tell: what fails later says why
    effective = os.access in os.supports_effective_ids
    if not read_only and os.access(folder, os.W_OK | os.X_OK, effective_ids=effective):
        return
    why = "is on a read-only file system" if read_only else f"is read-only for this user ({folder} may not be written)"
    doing = doing or f"the dataset's folder {readable} cannot be made there"
    raise DatamaestroError(
        f"the data dir {data_dir} {why}: {doing}",
        hint="choose a data dir you may write with --data or DATAMAESTRO_DIR (the store may stay where it is: --store, DATAMAESTRO_STORE)",
    )


def _gc_held_off(store: "Store", lock_timeout: float, readable: Path, entries: dict[str, tuple[str, str]], root) -> contextlib.AbstractContextManager:
    """The store's ``gc`` lock, held while a publication makes its outputs reachable (nothing when it changes nothing).

    ``store gc`` (of any machine) marks what the roots reach, then deletes the
    rest: an output that was unreachable when it marked and that a process
    publishes before it deletes would be lost. Under the lock, a publication
    is all before the mark or all after the deletion (then its check finds
    the output gone, and the pipeline produces it again). A readable folder
    that shows this manifest already, with its marker, needs no lock (a warm
    prepare). A store this process may not write to has no gc of its own
    to hold off.
    """
    from .store.gc import GC_LOCK
    from .store.digests import hex_of

    manifest = manifest_digest(entries)
    shown = current_view(readable) == manifest
    if shown and (root is None or (root.markers / hex_of(manifest)).exists()):
        return contextlib.nullcontext()
    held = contextlib.ExitStack()
    try:
        held.enter_context(store.lock(GC_LOCK, timeout=lock_timeout, what=f"publishing {readable.name}"))
    except LockTimeoutError:
        raise
    except StoreError:
        pass  # a store one may only read: publish what it holds, as before
    return held


def _unregistered(error: StoreError, data_dir: Path) -> None:
    # a store one may only read (another user's, a read-only mount): its
    # data is usable all the same, only its owner's gc cannot see this data dir
    logger.warning("%s; `datamaestro store gc` on this store will not know that %s uses its data", error.message, data_dir)


def store_trouble(exc: OSError, store_root: Path) -> bool:
    """True when an OSError comes from the disk or from the store, not from a bug in a resource."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        return True
    return bool(exc.filename) and Path(os.path.abspath(exc.filename)).is_relative_to(store_root.absolute())


def pin_error(dataset_id: str, resource_name: str, url: str | None, label: str, got: str, want: str, *, sizes: tuple[int, int] | None = None) -> IntegrityError:
    """The error of data that differs from what a lock pins (names everything and what to do).

    :param sizes: (bytes downloaded, size the lock records) when they differ
    """
    size_note = f" ({sizes[0]} bytes downloaded, the lock records size {sizes[1]})" if sizes else ""
    return IntegrityError(
        # begins as the pipeline's location of an error does, so that the id is not repeated in front of it
        f"{dataset_id}/{resource_name} from {url or '(derived)'}: {label} digest is {got}, the lock pins {want}{size_note}",
        hint=f"the data changed since the lock was written; run `datamaestro lock --upgrade {dataset_id}` if the change is wanted",
    )


def size_error(dataset_id: str, resource_name: str, url: str | None, got: int, want: int) -> IntegrityError:
    """The error of downloaded bytes whose size differs from the size a lock records."""
    return IntegrityError(
        # worded as pin_error: the id once, and the URL that served the bytes
        f"{dataset_id}/{resource_name} from {url or '(derived)'}: {got} bytes downloaded, the lock records size {want}",
        hint=f"the data changed since the lock was written (or the lock was edited): run `datamaestro lock --upgrade {dataset_id}` if the change is wanted",
    )


def as_pinned_tree(store, output: Output, expected: Output) -> Output:
    """A tree produced anew, under the digest its pin names when that is the same tree in the format of an earlier release.

    Trees are written in format 2 (``datamaestro-tree/2``); a lock written
    by an earlier release pins the digest of the format-1 document of the
    same entries (see :meth:`~datamaestro.store.trees.TreeStore.as_pinned`).
    Any other output is returned as it is (and :func:`check_pin` judges it).
    """
    if output.kind != Kind.TREE or expected.kind != Kind.TREE or not expected.digest or output.digest == expected.digest:
        return output
    pinned = store.trees.as_pinned(output.digest, expected.digest)
    return output if pinned is None else dataclasses.replace(output, digest=pinned)


def check_pin(definition, resource, output: Output, expected: Output) -> None:
    """Raises :class:`IntegrityError` when an output differs from its pin (its size, its digests)."""
    if expected.size is not None and output.size is not None and output.size != expected.size:
        raise size_error(definition.id, resource.name, output.url or expected.url, output.size, expected.size)
    for attribute, label in (("source_digest", "downloaded bytes"), ("digest", "output")):
        want = getattr(expected, attribute)
        got = getattr(output, attribute)
        if want and got and want != got:
            raise pin_error(definition.id, resource.name, output.url or expected.url, label, got, want)


def rehash_outputs(store, dataset_id: str, outputs: dict[str, Output]) -> None:
    """Rehashes every object of a dataset's outputs (``verify="full"``).

    :raises IntegrityError: naming the first object whose bytes no longer match its name
    """
    from .store.digests import digest_of_file

    for name, output in sorted(outputs.items()):
        if output.kind == Kind.FILE:
            digests = [output.digest]
        elif output.kind == Kind.TREE:
            digests = [output.digest, *store.trees.iter_object_digests(output.digest)]
        else:
            continue
        for digest in digests:
            actual = digest_of_file(store.objects.path_of(digest))
            if actual != digest:
                raise IntegrityError(
                    f"{dataset_id}: resource {name}: object {digest} of the store now hashes to {actual}",
                    hint="the disk damaged it: run `datamaestro store verify` (it quarantines damaged objects), then prepare again",
                )
