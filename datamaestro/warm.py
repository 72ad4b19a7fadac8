"""A warm ``datamaestro prepare`` without the definitions: the last prepare's record, checked.

A warm ``prepare`` in a new process used to import the dataset's
definition module, and with it experimaestro and numpy (most of its
time), to learn what the last prepare already knew. After a prepare, a
*warm record* keeps what it needs to answer again:

- each resource's recipe (without its inputs), dependencies and flags;
- the outputs, the manifest and the readable folder it published;
- the JSON of the config it printed (valid for that manifest only);
- the stamps that record is valid for: the installed plugins' fingerprint
  (every module file's size and mtime, as the dataset index) and
  datamaestro's own, the store, and the lock file in scope (size, mtime).

The next ``prepare`` of the same id checks the stamps (a changed
definition changes a module file, so the plugins' fingerprint), recomputes
every recipe key from the recorded recipes and the action cache (so an
output produced again meanwhile is seen), checks that every output is in
the store, and hands the dataset out through :func:`hand_out`, the same
:meth:`Store.output_present` and :func:`publish_dataset` the pipeline uses.
Anything that differs — a stamp, a key, a missing object, another
manifest — and the caller runs the full prepare, which writes a new record.
Records live in ``<data dir>/cache/warm/``; deleting them only costs time.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Context
    from .definition import Request
    from .pipeline import PipelineResult

logger = logging.getLogger(__name__)

FORMAT = 3


def record_path(context: "Context", dataset_id: str) -> Path:
    """Where the warm record of a requested id (as the user typed it) lives.

    The name is a key, not a content address: the standard library's
    blake2b names it, so that the requested id goes down to the store's
    digests once, when the lock entry's fingerprint is checked.
    """
    import hashlib

    return context.data_dir / "cache" / "warm" / (hashlib.blake2b(dataset_id.encode(), digest_size=16).hexdigest() + ".json")


def _own_fingerprint() -> list:
    """datamaestro's version and its own module files' sizes and dates (recipes and configs are made by them too)."""
    from .version import __version__

    folder = os.path.dirname(os.path.abspath(__file__))
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for filename in filenames:
            if filename.endswith(".py"):
                st = os.stat(os.path.join(dirpath, filename))
                files.append((os.path.relpath(os.path.join(dirpath, filename), folder), st.st_size, st.st_mtime_ns))
    files.sort()
    return [__version__, files]


def stamps(context: "Context") -> dict:
    """What a warm record is valid for: plugins, datamaestro, the store, the lock file in scope."""
    from .store.digests import canonical_json, digest_bytes

    lock_path, _ = context._lock_candidate()
    lock = None
    if lock_path is not None:
        try:
            st = os.stat(lock_path)
            lock = [str(lock_path.absolute()), st.st_size, st.st_mtime_ns]
        except OSError:
            lock = [str(lock_path.absolute()), None, None]
    return {
        "plugins": context.registry.fingerprint(),
        "datamaestro": digest_bytes(canonical_json(_own_fingerprint())),
        "store": str(context.store.root.absolute()),
        "lock": lock,
    }


@dataclass
class WarmRecord:
    """What a full prepare of a requested id learnt, for the next warm one (one reader: :meth:`read`, one writer: :meth:`write`).

    :ivar id: the id as the user typed it (an alias, a variant's selector)
    :ivar lock_entry: the lock entry its :class:`~datamaestro.context.Request`
        found (a variant's own, or the family's): its pins on the next call
    :ivar stamps: what the record is valid for (see :func:`stamps`)
    :ivar resources: each resource's name, own recipe, dependencies' names and transient flag, in order
    :ivar outputs: the outputs it published, by resource name
    :ivar manifest: the manifest it published
    :ivar readable: the dataset's readable folder
    :ivar config: the JSON of the config it printed (valid for that manifest only)
    :ivar description: what ``info`` shows but the resources' states; None for a variant
    """

    id: str
    lock_entry: str | None
    stamps: dict
    resources: list
    outputs: dict
    manifest: str
    readable: Path
    config: dict
    description: dict | None = None

    @classmethod
    def of(
        cls, dataset_id: str, request: "Request", result: "PipelineResult", config_json: dict, valid_for: dict, description: dict | None = None
    ) -> "WarmRecord | None":
        """The record of a full prepare of ``dataset_id`` (resolved as ``request``); None when it can have none (a volatile resource).

        :param valid_for: the :func:`stamps` taken before the prepare (a plugin
            changed during the prepare then makes the record stale at once)
        """
        resources = []
        for resource in request.definition.ordered_resources():
            if getattr(resource, "volatile", False):
                return None  # runs every time (a reference to another dataset): no warm answer
            resources.append(
                {
                    "name": resource.name,
                    "recipe": resource.recipe(),
                    "depends": [dependency.name for dependency in resource.dependencies()],
                    "transient": bool(resource.transient),
                }
            )
        return cls(
            id=dataset_id,
            lock_entry=request.locked.id if request.locked is not None else None,
            stamps=valid_for,
            resources=resources,
            outputs=dict(result.outputs),
            manifest=result.manifest,
            readable=result.location.readable,
            config=config_json,
            description=description,
        )

    def write(self, context: "Context") -> None:
        """Writes the record (best effort: a cache) in one rename."""
        document = {
            "format": FORMAT,
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "outputs": {name: output.to_json() for name, output in self.outputs.items()},
            "readable": str(self.readable),
        }
        path = record_path(context, self.id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(document))
            os.replace(tmp, path)
        except (OSError, TypeError, ValueError) as exc:
            # a read-only data dir, or a recipe that is not JSON: prepare stays correct, only slower
            logger.debug("no warm record for %s: %s", self.id, exc)

    @classmethod
    def read(cls, context: "Context", dataset_id: str, valid_for: dict | None = None) -> "WarmRecord | None":
        """The warm record of ``dataset_id`` if it is still valid for this context (``valid_for``: its :func:`stamps`, when known), else None."""
        from .store import Output

        try:
            document = json.loads(record_path(context, dataset_id).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or document.pop("format", None) != FORMAT or document.get("id") != dataset_id:
            return None
        if document.get("stamps") != (stamps(context) if valid_for is None else valid_for):
            return None
        try:
            record = cls(**document)
            record.outputs = {name: Output.from_json(data) for name, data in record.outputs.items()}
            record.readable = Path(record.readable)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        return record

    def outputs_now(self, context: "Context") -> dict | None:
        """Every resource's output as the pipeline finds it now (:func:`~datamaestro.pipeline.output_now`); None when one differs from the record's."""
        from .pipeline import full_recipe, output_now

        store = context.store
        pins = _pins(context, self.lock_entry)
        outputs: dict = {}
        for resource in self.resources:
            name = resource["name"]
            recipe = full_recipe(resource["recipe"], {dependency: outputs[dependency] for dependency in resource["depends"]})
            _, output = output_now(store, recipe, pins.get(name))
            if output is None:
                return None
            outputs[name] = output
        if any(outputs.get(name) != output for name, output in self.outputs.items()):
            return None
        return outputs


@dataclass
class WarmAnswer:
    """What the warm path answers for a requested id: the config JSON, or None; and the stamps a new record would be valid for."""

    config: dict | None
    stamps: dict


def answer(context: "Context", dataset_id: str) -> WarmAnswer:
    """The config JSON of a prepared dataset from its warm record (None when the full prepare must run), with the stamps taken first.

    None whenever anything differs from the record: a plugin or datamaestro
    changed, the lock file changed, an action record now names another
    output, an output is gone from the store, or the manifest differs. The
    stamps are those a record written after a full prepare is valid for
    (taken before it: a plugin edited meanwhile leaves a stale record).
    """
    valid_for = stamps(context)
    found = _record_and_outputs(context, dataset_id, valid_for)
    if found is None:
        return WarmAnswer(None, valid_for)
    record, outputs = found
    targets = {r["name"]: outputs[r["name"]] for r in record.resources if not r["transient"]}
    if hand_out(context, record.readable, targets) != record.manifest:
        return WarmAnswer(None, valid_for)
    return WarmAnswer(record.config, valid_for)


def warm_config(context: "Context", dataset_id: str) -> dict | None:
    """The config JSON of a prepared dataset, from its warm record; None when the full prepare must run (see :func:`answer`)."""
    return answer(context, dataset_id).config


def _record_and_outputs(context: "Context", dataset_id: str, valid_for: dict | None = None) -> "tuple[WarmRecord, dict] | None":
    """A dataset's warm record and its outputs (keys recomputed), or None when there is none or it is stale."""
    record = WarmRecord.read(context, dataset_id, valid_for)
    if record is None:
        return None
    try:
        outputs = record.outputs_now(context)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None if outputs is None else (record, outputs)


def warm_description(context: "Context", dataset_id: str) -> dict | None:
    """What ``info`` shows of a dataset, from its warm record, states read from the store; None when it cannot tell.

    A resource is ``complete`` when its output is in the store, ``partial``
    when its output is known but was collected (a transient input); with
    remote caches configured, such a resource may be offered by one: the
    full ``info`` asks them.
    """
    found = _record_and_outputs(context, dataset_id)
    if found is None or not isinstance(found[0].description, dict):
        return None
    record, outputs = found
    description = dict(record.description)
    resources = []
    for resource in description["resources"]:
        present = context.store.output_present(outputs[resource["name"]])
        if not present and (not resource["transient"] or context.remotes()):
            return None
        resources.append({**resource, "state": "complete" if present else "partial"})
    description["resources"] = resources
    return description


def _pins(context: "Context", entry_id: str | None) -> dict:
    """The pins of the lock entry the recorded request found (the lock file's stamp is checked already), by resource name."""
    lock = context.lockfile() if entry_id is not None else None
    entry = lock.datasets.get(entry_id) if lock is not None else None
    return entry.pins() if entry is not None else {}


def hand_out(context: "Context", readable: Path, outputs: dict) -> str | None:
    """Hands a dataset's outputs out: checks each is in the store, publishes their view; the manifest, or None.

    The one place where a warm prepare without definitions gives objects
    and views to the user: each output through :meth:`Store.output_present`
    and :meth:`Store.compare_stamps` (a ``stat`` against the object's stamp),
    and the view through :func:`~datamaestro.pipeline.publish_dataset`, as
    the pipeline does.
    """
    from .pipeline import publish_dataset
    from .errors import StoreError

    store = context.store
    if not all(store.output_present(output) for output in outputs.values()):
        return None
    # an object changed since it was stored goes to quarantine: the full prepare fetches it again
    if store.compare_stamps([output for output in outputs.values() if output.kind.stored]):
        return None
    entries = {name: (output.kind, output.digest) for name, output in outputs.items() if output.kind in ("file", "tree")}
    try:
        manifest, _ = publish_dataset(store, context.settings, readable, entries)
    except StoreError:
        return None
    return manifest
