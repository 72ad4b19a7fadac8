"""Plugin discovery from the code cache: the same entry points as a scan, no ``importlib.metadata`` on a warm start, and a new or edited plugin seen at once.

Each check runs in a new process, as a command does, on a folder of
``sys.path`` holding a small distribution made here (its ``dist-info`` and
its package).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GROUP = "datamaestro.repositories"

LIST = (
    "import json, sys\n"
    "from datamaestro.context import Context\n"
    "with Context(progress=False) as context:\n"
    "    found = [[ep.name, ep.value, ep.dist.metadata['Name'] if ep.dist else None, ep.dist.version if ep.dist else None] for ep in context.registry.entry_points()]\n"
    "print(json.dumps({'found': found, 'scanned': 'importlib.metadata' in sys.modules}))\n"
)


def add_distribution(folder: Path, name: str, version: str, entry_points: str) -> Path:
    """A distribution as pip installs it: ``NAME-VERSION.dist-info`` with METADATA and entry_points.txt."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry_points}\n")
    return info


def listed(folder: Path) -> dict:
    """The entry points a new process finds, and whether it had to scan the installed distributions."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    output = subprocess.run([sys.executable, "-c", LIST], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def test_a_warm_start_reads_the_entry_points_from_the_cache(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    first = listed(folder)
    second = listed(folder)
    assert first["scanned"] and not second["scanned"]
    assert second["found"] == first["found"]
    # the same as importlib.metadata says, name, value, distribution and version
    from importlib.metadata import entry_points

    env_path = [str(folder), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    sys.path[:0] = env_path
    try:
        expected = [[ep.name, ep.value, ep.dist.metadata["Name"], ep.dist.version] for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name)]
    finally:
        del sys.path[: len(env_path)]
    assert [entry[:2] for entry in second["found"]] == [entry[:2] for entry in expected] and second["found"] == expected


def test_an_installed_removed_or_edited_plugin_is_seen_at_once(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    assert "extra" not in [name for name, *_ in listed(folder)["found"]]
    listed(folder)  # cached
    # installed: a new dist-info folder changes the folder's mtime
    info = add_distribution(folder, "datamaestro_extra", "1.0", "extra = datamaestro_extra:Repository")
    now = listed(folder)
    assert now["scanned"] and ["extra", "datamaestro_extra:Repository", "datamaestro_extra", "1.0"] in now["found"]
    assert not listed(folder)["scanned"]
    # edited in place (its entry_points.txt rewritten, the folder untouched)
    entry_points = info / "entry_points.txt"
    entry_points.write_text(f"[{GROUP}]\nextra = datamaestro_extra.other:Repository\n")
    os.utime(entry_points, ns=(entry_points.stat().st_atime_ns, entry_points.stat().st_mtime_ns + 1_000_000))
    edited = listed(folder)
    assert edited["scanned"] and ["extra", "datamaestro_extra.other:Repository", "datamaestro_extra", "1.0"] in edited["found"]
    # removed
    for path in info.iterdir():
        path.unlink()
    info.rmdir()
    gone = listed(folder)
    assert gone["scanned"] and "extra" not in [name for name, *_ in gone["found"]]
