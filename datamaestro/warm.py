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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Context, Request
    from .pipeline import PipelineResult

logger = logging.getLogger(__name__)

FORMAT = 3


def record_path(context: "Context", dataset_id: str) -> Path:
    """Where the warm record of a requested id (as the user typed it) lives."""
    from .store.digests import digest_bytes

    return context.data_dir / "cache" / "warm" / (digest_bytes(dataset_id.encode())[7:39] + ".json")


def _own_fingerprint() -> list:
    """datamaestro's version and its own module files' sizes and dates (recipes and configs are made by them too)."""
    from . import __version__

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


def write_record(
    context: "Context", dataset_id: str, request: "Request", result: "PipelineResult", config_json: dict, valid_for: dict, description: dict | None = None
) -> None:
    """Records what a full prepare of ``dataset_id`` (resolved as ``request``) learnt (best effort: a cache).

    :param valid_for: the :func:`stamps` taken before the prepare (a plugin
        changed during the prepare then makes the record stale at once)
    """
    resources = []
    for resource in request.definition.ordered_resources():
        if getattr(resource, "volatile", False):
            return  # runs every time (a reference to another dataset): no warm answer
        resources.append(
            {
                "name": resource.name,
                "recipe": resource.recipe(),
                "depends": [dependency.name for dependency in resource.dependencies()],
                "transient": bool(resource.transient),
            }
        )
    record = {
        "format": FORMAT,
        "id": dataset_id,
        # the lock entry that pinned it (a variant's own, or the family's): its pins on the next call
        "lock_entry": request.locked.id if request.locked is not None else None,
        "stamps": valid_for,
        "resources": resources,
        "outputs": {name: output.to_json() for name, output in result.outputs.items()},
        "manifest": result.manifest,
        "readable": str(result.location.readable),
        "config": config_json,
        # what `info` shows, but the resources' states (read from the store on use)
        "description": description,
    }
    path = record_path(context, dataset_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        # a read-only data dir, or a recipe that is not JSON: prepare stays correct, only slower
        logger.debug("no warm record for %s: %s", dataset_id, exc)


def read_record(context: "Context", dataset_id: str) -> dict | None:
    """The warm record of ``dataset_id`` if it is still valid for this context, else None."""
    try:
        record = json.loads(record_path(context, dataset_id).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("id") != dataset_id:
        return None
    if record.get("stamps") != stamps(context):
        return None
    return record


def warm_config(context: "Context", dataset_id: str) -> dict | None:
    """The config JSON of a prepared dataset, from its warm record; None when the full prepare must run.

    None whenever anything differs from the record: a plugin or datamaestro
    changed, the lock file changed, an action record now names another
    output, an output is gone from the store, or the manifest differs.
    """
    found = _record_and_outputs(context, dataset_id)
    if found is None:
        return None
    record, outputs = found
    targets = {r["name"]: outputs[r["name"]] for r in record["resources"] if not r["transient"]}
    handed = hand_out(context, Path(record["readable"]), targets)
    if handed != record["manifest"]:
        return None
    return record["config"]


def _record_and_outputs(context: "Context", dataset_id: str) -> tuple[dict, dict] | None:
    """A dataset's warm record and its outputs (keys recomputed), or None when there is none or it is stale."""
    record = read_record(context, dataset_id)
    if record is None:
        return None
    try:
        outputs = _outputs(context, record)
    except (KeyError, TypeError, ValueError):
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
    if found is None or not isinstance(found[0].get("description"), dict):
        return None
    record, outputs = found
    description = dict(record["description"])
    resources = []
    for resource in description["resources"]:
        present = context.store.output_present(outputs[resource["name"]])
        if not present and (not resource["transient"] or context.remotes()):
            return None
        resources.append({**resource, "state": "complete" if present else "partial"})
    description["resources"] = resources
    return description


def _outputs(context: "Context", record: dict) -> dict | None:
    """Every resource's output, as the pipeline's lookup would find it (pins, else the action cache)."""
    from .store import Output, recipe_key

    store = context.store
    pins = _pins(context, record["lock_entry"])
    outputs: dict = {}
    for resource in record["resources"]:
        name = resource["name"]
        pin = pins.get(name)
        if pin is not None and pin.kind.stored and pin.digest and store.output_present(pin):
            outputs[name] = pin
            continue
        recipe = dict(resource["recipe"])
        inputs = {}
        for dependency in resource["depends"]:
            output = outputs[dependency]
            inputs[dependency] = output.digest if output.kind.stored else output.value
        if inputs:
            recipe["inputs"] = inputs
        action = store.actions.get(recipe_key(recipe))
        if action is None:
            return None
        outputs[name] = action.output
    recorded = {name: Output.from_json(data) for name, data in record["outputs"].items()}
    if any(outputs.get(name) != output for name, output in recorded.items()):
        return None
    return outputs


def _pins(context: "Context", entry_id: str | None) -> dict:
    """The pins of the lock entry the recorded request found (the lock file's stamp is checked already), by resource name."""
    lock = context.lockfile() if entry_id is not None else None
    entry = lock.datasets.get(entry_id) if lock is not None else None
    return entry.pins() if entry is not None else {}


def hand_out(context: "Context", readable: Path, outputs: dict) -> str | None:
    """Hands a dataset's outputs out: checks each is in the store, publishes their view; the manifest, or None.

    The one place where a warm prepare without definitions gives objects
    and views to the user: each output through :meth:`Store.output_present`
    and :meth:`Store.check_on_use` (a ``stat`` against the object's stamp),
    and the view through :func:`~datamaestro.pipeline.publish_dataset`, as
    the pipeline does.
    """
    from .pipeline import publish_dataset
    from .errors import StoreError

    store = context.store
    if not all(store.output_present(output) for output in outputs.values()):
        return None
    # an object changed since it was stored goes to quarantine: the full prepare fetches it again
    if store.check_on_use([output for output in outputs.values() if output.kind.stored]):
        return None
    entries = {name: (output.kind, output.digest) for name, output in outputs.items() if output.kind in ("file", "tree")}
    try:
        manifest, _ = publish_dataset(context, readable, entries)
    except StoreError:
        return None
    return manifest
