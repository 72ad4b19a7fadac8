"""The measured side of the benchmarks that run datamaestro in a process of its own.

``python -m benchmarks._child MODE ARGS...``, in an environment from
:func:`benchmarks._common.bench_env`; prints one JSON object on stdout.

- ``ingest STORE FILE [--move]``: ``Store(STORE).ingest_file(FILE)``
- ``prepare ID``: ``prepare_dataset(ID)``, no progress bar
- ``ingest-imports`` / ``prepare-imports ID``: only what the mode above
  imports (and, for prepare, the dataset lookup), so that the difference
  of two peak memory figures is the cost of the work alone
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _ingest_imports() -> None:
    import blake3  # noqa: F401 (imported lazily by the store: loaded here on purpose)

    import datamaestro.store  # noqa: F401


def _prepare_imports(dataset_id: str) -> None:
    """Everything a prepare imports, including the modules it loads on first use."""
    import blake3  # noqa: F401
    import requests  # noqa: F401

    import datamaestro.api  # noqa: F401
    import datamaestro.download.checks  # noqa: F401
    import datamaestro.download.transforms  # noqa: F401
    import datamaestro.fetch  # noqa: F401
    import datamaestro.pipeline  # noqa: F401
    import datamaestro.store  # noqa: F401
    from datamaestro.context import Context

    context = Context(progress=False)
    context.dataset(dataset_id).config()


def main(argv: list[str]) -> dict:
    """Runs one mode (see the module documentation); returns what to print."""
    mode, *args = argv
    start = time.perf_counter()
    if mode == "ingest-imports":
        _ingest_imports()
        return {}
    if mode == "prepare-imports":
        _prepare_imports(args[0])
        return {}
    if mode == "ingest":
        _ingest_imports()
        from datamaestro.store import Store

        digest = Store(Path(args[0])).ingest_file(Path(args[1]), move="--move" in args)
        return {"digest": digest, "seconds": time.perf_counter() - start}
    if mode == "prepare":
        from datamaestro.api import config_to_json, prepare_dataset
        from datamaestro.context import Context

        config = prepare_dataset(args[0], context=Context(progress=False))
        return {"config": config_to_json(config), "seconds": time.perf_counter() - start}
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
