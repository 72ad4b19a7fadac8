"""The fingerprint of a dataset definition: what a lock entry is valid for.

Kept apart from :mod:`datamaestro.lock.resolve` so that the session (which
checks a lock entry against the definition on every prepare) needs nothing
of the resolver. It reads a definition through its public attributes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..store.digests import canonical_json, digest_bytes

if TYPE_CHECKING:
    from ..definition import DatasetDefinition

#: bump when the fingerprint's description changes (every lock becomes out of date)
FINGERPRINT_FORMAT = 1


def fingerprint(definition: "DatasetDefinition") -> str:
    """A digest of what a definition does to its data.

    It covers the dataset's id and defining class or function, and for every
    resource its name, kind, whether it is transient, its inputs and its
    recipe (URL, transforms, checks, a derivation's class, version and
    parameters): anything that changes the bytes changes the fingerprint.
    Docstrings, metadata and the code of ``config()`` do not.
    """
    resources = [
        {
            "name": resource.name,
            "kind": resource.kind,
            "transient": resource.transient,
            "inputs": [dependency.name for dependency in resource.dependencies()],
            "recipe": resource.recipe(),
        }
        for resource in definition.ordered_resources()
    ]
    description = {
        "format": FINGERPRINT_FORMAT,
        "id": definition.id,
        "target": f"{definition.module}.{definition.qualname}",
        "resources": resources,
    }
    return digest_bytes(canonical_json(description))
