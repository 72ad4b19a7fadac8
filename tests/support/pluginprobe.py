"""Run by tests/test_plugins.py with the Python of the plugin virtualenv (not imported by pytest).

``python pluginprobe.py survey``: with every network connection refused,
lists every dataset of every installed repository, describes each (what
``info`` shows) and builds each config (``get_dataset``; a family's first
variant); prints a JSON report.

``python pluginprobe.py identifiers ID...``: prints the experimaestro
identifier and data id of each dataset's config.

``python pluginprobe.py mnist``: prepares ``com.lecun.mnist`` (the settings
file of the environment points its URLs at a local server) and prints the
shape of the training images.

``python pluginprobe.py environment DIST...``: which datamaestro this Python
imports (file and version) and the installed version of each distribution
(``null`` where it is missing), and the requirements of those distributions
and of theirs, all the way down, that what this Python imports does not meet;
imports nothing else of datamaestro, so that it also answers in a virtualenv
that holds a wrong datamaestro.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def refuse_network() -> None:
    """Every connection attempt fails, as on a machine without network."""

    def refused(*args, **kwargs):
        raise OSError("network access refused by the test")

    socket.socket.connect = refused
    socket.create_connection = refused


def survey() -> dict:
    """Counts and failures per repository."""
    refuse_network()
    from datamaestro.api import describe_dataset
    from datamaestro.commands.audit import first_variant
    from datamaestro.context import Context

    context = Context(progress=False)
    Context.set_instance(context)
    start = time.monotonic()
    entries = context.registry.index()
    report = {"index_seconds": time.monotonic() - start, "repositories": {}}
    for repository in context.registry.repository_entries():
        report["repositories"].setdefault(repository.id, {"entry_point": repository.entry_point, "error": repository.error})
    for entry in entries:
        stats = report["repositories"][entry.repository]
        stats.setdefault("datasets", 0)
        stats.setdefault("info", 0)
        stats.setdefault("configs", 0)
        stats.setdefault("failures", [])
        stats["datasets"] += 1
        dataset_id = f"{entry.id}@{entry.repository}"
        try:
            described = describe_dataset(dataset_id, context=context)
            assert described["id"] == entry.id
            stats["info"] += 1
            definition = context.dataset(dataset_id)
            variant = first_variant(definition)
            config = definition.config(**variant)
            config.__xpm__.validate()
            # (a config reusing another dataset's config keeps that one's id, as in the original)
            assert config.id, entry.id
            stats["configs"] += 1
        except Exception as exc:
            stats["failures"].append({"id": dataset_id, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
    return report


def identifiers(ids: list[str]) -> dict:
    """Identifier and data id of each config."""
    refuse_network()
    from datamaestro.api import get_dataset

    result = {}
    for dataset_id in ids:
        config = get_dataset(dataset_id)
        result[dataset_id] = {"identifier": config.__xpm__.identifier.all.hex(), "id": config.id}
    return result


def mnist() -> dict:
    """Prepares MNIST of the published datamaestro-image."""
    from datamaestro.api import prepare_dataset
    from datamaestro.context import Context

    Context.set_instance(Context(progress=False))
    ds = prepare_dataset("com.lecun.mnist")
    return {
        "shape": list(ds.train.images.data().shape),
        "test_shape": list(ds.test.images.data().shape),
        "path": str(ds.train.images.path),
        "resolved": str(ds.train.images.path.resolve()),
        "module": type(ds).__module__,
    }


def environment(distributions: list[str]) -> dict:
    """The datamaestro this Python imports, and the versions of the given distributions."""
    import importlib.metadata

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        import datamaestro

        imported = {"file": datamaestro.__file__, "error": None}
    except Exception as exc:
        imported = {"file": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "datamaestro": {**imported, "version": version("datamaestro")},
        "distributions": {name: version(name) for name in distributions},
        "unmet": unmet_requirements(distributions),
        "prefix": sys.prefix,
    }


def unmet_requirements(roots: list[str]) -> list[str]:
    """The requirements of ``roots`` and of what they require, recursively, that the distributions this Python sees do not meet.

    The plugin virtualenv is built without the distributions the test
    interpreter already has (it sees them through its ``.pth``): this says
    when one of them is not a version a plugin accepts.
    """
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    unmet, seen = [], set()
    pending = [(name, frozenset()) for name in roots]
    while pending:
        name, extras = pending.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a missing root is reported by its version; a missing requirement by the one that needs it
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                continue
            try:
                found = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                unmet.append(f"{name} requires {requirement}, which is missing")
                continue
            if not requirement.specifier.contains(found, prereleases=True):
                unmet.append(f"{name} requires {requirement}, not {found}")
            pending.append((requirement.name, frozenset(requirement.extras)))
    return sorted(set(unmet))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    output = {
        "survey": lambda: survey(),
        "identifiers": lambda: identifiers(arguments),
        "mnist": lambda: mnist(),
        "environment": lambda: environment(arguments),
    }[command]()
    print(json.dumps(output))
