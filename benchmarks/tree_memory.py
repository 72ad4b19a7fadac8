"""Peak memory of the commands that read a tree of a million files (issue 27: < 300 MB).

A store holding one tree of 1,000,000 distinct small files (1,000 folders of
1,000; ``--quick``: 1,000 files) is made by hand (objects written directly,
the tree document through :func:`datamaestro.store.trees.document_chunks`),
then each command runs in a process of its own (``python -m
benchmarks.tree_memory MODE ...``) whose peak RSS is read with
``getrusage(RUSAGE_CHILDREN)`` (:func:`benchmarks._common.peak_rss`):

- ``read``: ``TreeStore.check`` (every entry read and checked, links resolved);
- ``materialize``: ``Store.materialize("tree", digest)`` (a hard link per file);
- ``verify``: ``store.verify.verify`` (every object rehashed, the tree's document checked);
- ``pull``: ``remotes.pull_outputs`` of the tree from the store as a folder remote into an empty store;
- ``push``: what ``store push`` does with the tree (``push._objects_of`` then ``push._upload``) to an empty folder remote;
- reference: ``json.load`` of the same tree's format-1 document (what every
  one of these commands did before format 2).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from benchmarks._common import MB, REPO_ROOT, Row, fresh_dir, peak_rss

NAME = "tree_memory"
LIMIT = 300 * MB
FILES = 1_000_000
QUICK_FILES = 1_000


def build(root: Path, files: int) -> tuple[str, str]:
    """A store at ``root`` holding a tree of ``files`` distinct small files; returns (format-2 digest, format-1 digest)."""
    from blake3 import blake3

    from datamaestro.store import Store
    from datamaestro.store.trees import document_chunks, legacy_document_chunks

    store = Store(root)
    objects = root / "objects"
    made = set()

    def entries():
        for number in range(files):
            data = f"file {number}\n".encode()
            hexdigest = blake3(data).hexdigest()
            fan = objects / hexdigest[:2]
            if hexdigest[:2] not in made:
                fan.mkdir(parents=True, exist_ok=True)
                made.add(hexdigest[:2])
            path = fan / hexdigest[2:]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
            os.write(fd, data)
            os.close(fd)
            yield {"path": f"d{number // 1000:04d}/f{number % 1000:04d}", "kind": "file", "digest": "blake3:" + hexdigest, "size": len(data)}

    with store.objects.writer() as out:
        for chunk in document_chunks(entries()):
            out.write(chunk)
        digest = out.commit()
    with store.objects.writer() as out:
        for chunk in legacy_document_chunks(store.trees.iter_tree_entries(digest)):
            out.write(chunk)
        legacy = out.commit()
    return digest, legacy


def child(mode: str, args: list[str]) -> dict:
    """One measured command (see the module documentation)."""
    from datamaestro.store import Output, Store

    start = time.perf_counter()
    if mode == "imports":
        import datamaestro.remotes.push  # noqa: F401
        import datamaestro.remotes  # noqa: F401
        import datamaestro.store.verify  # noqa: F401

        return {}
    store = Store(Path(args[0]))
    if mode == "read":
        count = store.trees.check(args[1])
    elif mode == "json":
        with store.objects.open(args[1]) as fp:
            count = len(json.load(fp)["entries"])
    elif mode == "materialize":
        store.materialize("tree", args[1])
        count = 0
    elif mode == "verify":
        from datamaestro.store.verify import verify

        report = verify(store)
        count = report.checked if hasattr(report, "checked") else 0
    elif mode == "pull":
        from datamaestro.remotes.folder import FolderRemote
        from datamaestro.remotes.pull import pull_outputs

        report = pull_outputs(store, [Output("tree", args[2])], [FolderRemote(Path(args[1]))])
        assert store.trees.has(args[2]), report
        count = sum(report.taken.values())
    elif mode == "push":
        from datamaestro.remotes.folder import FolderRemote
        from datamaestro.remotes.push import PushReport, objects_of, upload_objects

        remote = FolderRemote(Path(args[1]))
        digests = objects_of(store, [Output("tree", args[2])])
        report = PushReport(remote.label)
        upload_objects(store, remote, digests, report, 8)
        count = report.objects_sent
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"count": count, "seconds": time.perf_counter() - start}


def _measure(mode: str, *args: str) -> tuple[int, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    peak, out = peak_rss([sys.executable, "-m", "benchmarks.tree_memory", mode, *args], env=env, cwd=REPO_ROOT)
    return peak, json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def run(work: Path, quick: bool) -> list[Row]:
    """Builds the tree once, then measures each command in a process of its own."""
    files = QUICK_FILES if quick else FILES
    base = fresh_dir(work / "tree-memory")
    source = base / "source"
    digest, legacy = build(source, files)
    baseline, _ = _measure("imports")
    label = f"{files:,} files"
    rows = []
    reference, _ = _measure("json", str(source), legacy)
    measures = [
        ("read", f"read and check the tree document, {label}", [str(source), digest]),
        ("materialize", f"materialize the tree, {label}", [str(source), digest]),
        ("verify", f"`store verify` of a store holding the tree, {label}", [str(source)]),
        ("pull", f"pull the tree from a folder remote into an empty store, {label}", [str(fresh_dir(base / "pulled")), str(source), digest]),
        ("push", f"push the tree to an empty folder remote, {label}", [str(source), str(fresh_dir(base / "pushed")), digest]),
    ]
    for mode, measure, args in measures:
        if mode == "push":
            from datamaestro.store import Store

            Store(base / "pushed")
        peak, result = _measure(mode, *args)
        rows.append(
            Row(
                NAME,
                f"{measure}: peak RSS",
                peak / MB,
                reference / MB,
                peak / reference,
                "< 300 MB",
                "MB",
                f"whole process; reference: `json.load` of the same tree's format-1 document in a process of its own; "
                f"imports alone {baseline / MB:.0f} MB; {result.get('seconds', 0):.1f} s",
                met=peak < LIMIT,
            )
        )
    fresh_dir(base)
    return rows


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2:])))
