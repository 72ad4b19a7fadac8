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
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatamaestroError, IntegrityError, OfflineError, StoreError
from .store import ActionRecord, Output, recipe_key
from .store.views import VIEW_LINK, point_readable_path

if TYPE_CHECKING:
    from .context import Context
    from .definitions import DatasetDefinition
    from .download import Resource
    from .fetch import FetchResult

logger = logging.getLogger(__name__)

NONE, PARTIAL, COMPLETE = "none", "partial", "complete"


class Job:
    """What :meth:`Resource.produce` is given: the store, its inputs, the transport.

    :ivar store: the :class:`~datamaestro.store.Store`
    :ivar expected: the pinned output (from a lock) or None
    """

    def __init__(self, pipeline: "Pipeline", definition: "DatasetDefinition", resource: "Resource", expected: Output | None):
        self.pipeline = pipeline
        self.context = pipeline.context
        self.store = pipeline.context.store
        self.definition = definition
        self.resource = resource
        self.expected = expected

    @property
    def description(self) -> str:
        """``<dataset id>/<resource name>``, for messages and progress bars."""
        return f"{self.definition.id}/{self.resource.name}"

    def input(self, resource: "Resource") -> Output:
        """The output of an input resource (present in the store)."""
        return self.pipeline.outputs[id(resource)]

    def input_path(self, resource: "Resource") -> Path:
        """The store path of an input: a file object or a tree folder."""
        output = self.input(resource)
        return self.store.materialize(output.kind, output.digest)

    def download(self, url: str, sink, *, checkers=(), description: str | None = None) -> "FetchResult":
        """Streams ``url`` into ``sink`` through the context's fetcher (mirrors, retries, resume)."""
        return self.context.fetcher().fetch(url, sink, checkers=checkers, description=description or self.description)

    def tmp_path(self, hint: str = "") -> Path:
        """A unique path in the store's tmp folder (same file system as objects)."""
        return self.store.tmp_path(hint)


@dataclass
class PipelineResult:
    """What a run did: the manifest published, where, and what was produced."""

    dataset_id: str
    manifest: str
    view: Path
    datapath: Path
    produced: list[str] = field(default_factory=list)
    outputs: dict[str, Output] = field(default_factory=dict)


class Pipeline:
    """Prepares datasets on a context's store (see the module documentation)."""

    def __init__(self, context: "Context"):
        self.context = context
        self.store = context.store
        self.outputs: dict[int, Output] = {}
        self._known: dict[int, tuple[str | None, Output | None]] = {}

    # -- keys and lookups
    def recipe_of(self, resource: "Resource") -> dict | None:
        """The full recipe of a resource, or None while an input's digest is unknown."""
        inputs = {}
        for dependency in resource.dependencies():
            _, output = self.lookup(dependency)
            if output is None:
                return None
            inputs[dependency.name] = output.digest if output.kind != "value" else output.value
        recipe = dict(resource.recipe())
        if inputs:
            recipe["inputs"] = inputs
        return recipe

    def lookup(self, resource: "Resource") -> tuple[str | None, Output | None]:
        """(recipe key, cached output) of a resource; None where unknown."""
        known = self._known.get(id(resource))
        if known is not None:
            return known
        recipe = self.recipe_of(resource)
        if recipe is None or getattr(resource, "volatile", False):
            # volatile resources (references to other datasets) are never
            # trusted from the cache: they run every time, cheaply when warm
            result = (None if recipe is None else recipe_key(recipe), None)
        else:
            key = recipe_key(recipe)
            record = self.store.actions.get(key)
            result = (key, record.output if record else None)
        self._known[id(resource)] = result
        return result

    def state(self, resource: "Resource") -> str:
        """NONE, PARTIAL or COMPLETE (see the module documentation)."""
        _, output = self.lookup(resource)
        if output is None:
            return NONE
        return COMPLETE if self.store.output_present(output) else PARTIAL

    def needed(self, targets: list["Resource"]) -> list["Resource"]:
        """The resources to produce so that every target is present, inputs first."""
        order: list[Resource] = []
        seen: set[int] = set()

        def visit(resource: "Resource") -> None:
            if id(resource) in seen:
                return
            seen.add(id(resource))
            if self.state(resource) == COMPLETE:
                return
            for dependency in resource.dependencies():
                visit(dependency)
            order.append(resource)

        for target in targets:
            visit(target)
        return order

    # -- running
    def run(self, definition: "DatasetDefinition", *, pins: dict[str, Output] | None = None, _retry: bool = True) -> PipelineResult:
        """Makes a dataset present in the store and its readable path point at it.

        :param pins: expected outputs by resource name (from a lock file)
        :raises OfflineError: offline and something must be downloaded
        :raises IntegrityError: an output differs from its pin
        """
        resources = definition.ordered_resources()
        targets = [r for r in resources if not r.transient]
        legacy = self._legacy_folder(definition)
        to_produce = self.needed(targets)
        if to_produce and self.context.settings.offline:
            missing = [r for r in to_produce if not (legacy and (legacy / r.name).exists())]
            urls = [url for r in missing for url in r.urls()]
            if urls:
                raise OfflineError(urls)
        # leftovers of killed writers (downloads, views): one scandir of tmp/
        self.store.reap_tmp()
        produced = []
        for resource in to_produce:
            expected = (pins or {}).get(resource.name)
            if self._produce(definition, resource, expected, legacy):
                produced.append(resource.name)
        entries = {}
        outputs = {}
        for resource in targets:
            _, output = self.lookup(resource)
            outputs[resource.name] = output
            if pins and resource.name in pins:
                check_pin(definition, resource, output, pins[resource.name])
            if output.kind in ("file", "tree"):
                entries[resource.name] = (output.kind, output.digest)
        # registered first, so that a concurrent `store gc` sees the link we make
        self.store.register_root("data", self.context.data_dir)
        try:
            manifest, view = self.store.views.publish(entries)
            point_readable_path(definition.datapath_in(self.context), view, self.context.data_dir, list(entries))
            missing = not all(self.store.output_present(o) for o in outputs.values())
        except StoreError:
            if all(self.store.output_present(o) for o in outputs.values()):
                raise
            missing = True
        if missing:
            # `store gc` removed an unreachable output we reused between our
            # check and our publish: produce it again (the view, once
            # published, keeps it alive)
            if _retry:
                self._known.clear()
                return self.run(definition, pins=pins, _retry=False)
            raise StoreError(f"{definition.id}: outputs keep disappearing from the store", hint="is `store gc` running in a loop?")
        return PipelineResult(definition.id, manifest, view, definition.datapath_in(self.context), produced, outputs)

    def _produce(self, definition, resource, expected, legacy: Path | None) -> bool:
        """Produces one resource under its store lock; False when another process had done it."""
        recipe = self.recipe_of(resource)
        key = recipe_key(recipe)
        settings = self.context.settings
        with self.store.lock(key, timeout=settings.lock_timeout, what=f"preparing {definition.id}/{resource.name}"):
            volatile = getattr(resource, "volatile", False)
            record = None if volatile else self.store.actions.get(key)
            did_work = record is None or not self.store.output_present(record.output)
            if not did_work:
                output = record.output
            else:
                for dependency in resource.dependencies():
                    self.outputs[id(dependency)] = self._present_output(dependency)
                adopted = self._adopt(legacy, resource)
                if adopted is not None:
                    output = adopted
                else:
                    logger.info("producing %s/%s", definition.id, resource.name)
                    job = Job(self, definition, resource, expected)
                    try:
                        output = resource.produce(job)
                    except DatamaestroError as error:
                        # say which dataset and resource failed, once
                        if not error.message.startswith(job.description):
                            error.message = f"{job.description}: {error.message}"
                            error.args = (error.message,)
                        raise
                if expected is not None:
                    check_pin(definition, resource, output, expected)
                if not volatile:
                    self.store.actions.put(ActionRecord(key=key, recipe=recipe, output=output))
        self._known[id(resource)] = (key, output)
        self.outputs[id(resource)] = output
        return did_work

    def _present_output(self, resource) -> Output:
        _, output = self.lookup(resource)
        if output is None or not self.store.output_present(output):
            raise RuntimeError(f"input {resource.name} should have been produced first")
        return output

    # -- data of the original datamaestro
    def _legacy_folder(self, definition) -> Path | None:
        """The dataset's folder when it holds data laid out by the original datamaestro."""
        path = definition.datapath_in(self.context)
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
        if resource.kind == "file" and path.is_file():
            logger.info("adopting %s into the store", path)
            return Output("file", self.store.ingest_file(path, move=True))
        if resource.kind == "tree" and path.is_dir():
            logger.info("adopting %s into the store", path)
            digest = self.store.ingest_tree(path, move=True)
            shutil.rmtree(path, ignore_errors=True)
            return Output("tree", digest)
        return None


def check_pin(definition, resource, output: Output, expected: Output) -> None:
    """Raises :class:`IntegrityError` when an output differs from its pin."""
    for attribute, label in (("source_digest", "downloaded bytes"), ("digest", "output")):
        want = getattr(expected, attribute)
        got = getattr(output, attribute)
        if want and got and want != got:
            url = output.url or expected.url or "(derived)"
            raise IntegrityError(
                f"{definition.id}: resource {resource.name} from {url}: {label} digest is {got}, the lock pins {want}",
                hint="the data changed since the lock was written; run `datamaestro lock --upgrade "
                f"{definition.id}` if the change is wanted",
            )
