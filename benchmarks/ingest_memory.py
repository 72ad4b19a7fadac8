"""Peak memory of ingesting a large file into the store, whatever its size.

Each figure is the peak RSS of a process of its own (``benchmarks._child``)
minus the peak RSS of the same process doing only its imports (both are
reported): what the work itself holds in memory. Measured for

- ``Store.ingest_file(path)``: the file copied into the store, read in chunks;
- ``Store.ingest_file(path, move=True)``: the file renamed into the store
  and rehashed in place (memory-mapped);
- the cold prepare streaming path: ``prepare_dataset`` of a plain file
  served by the local HTTP server (download, hash, write);
- the same with a gzipped file of zeros, which decompresses to the size
  measured: a tiny download, the worst case for decompression buffers.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._common import GiB, MB, MiB, Row, bench_env, child_command, fresh_dir, peak_rss, random_file, serving, size_label, slug, zeros_gzip_file

NAME = "ingest_memory"
LIMIT = 100 * MB


class Measure:
    """One way of ingesting: the child's work and import-only commands, and what it needs served."""

    def __init__(self, label: str, work: list[str], imports: list[str], served: dict[str, Path] | None = None):
        self.label = label
        self.work = work
        self.imports = imports
        self.served = served or {}


def _row(measure: Measure, size: int, peak: int, baseline: int) -> Row:
    above = peak - baseline
    return Row(
        NAME,
        f"{measure.label}, {size_label(size)}: peak RSS above imports",
        above / MB,
        baseline / MB,
        None,
        "< 100 MB",
        "MB",
        f"reference: peak RSS of the same process doing only its imports; whole process peak {peak / MB:.0f} MB",
        met=above < LIMIT,
    )


def _reset(env: dict[str, str]) -> None:
    """An empty store and data folder (the dataset index cache stays: both runs read it)."""
    for name in ("store", "data"):
        fresh_dir(Path(env["DATAMAESTRO_DIR"]) / name)


def _measure(measure: Measure, env: dict[str, str], work: Path) -> tuple[int, int]:
    """(peak RSS of the work, peak RSS of the imports alone), in bytes."""
    with serving(work, NAME, measure.served, env):
        peak_rss(child_command(*measure.imports), env=env)  # writes the dataset index, if missing
        baseline, _ = peak_rss(child_command(*measure.imports), env=env)
        _reset(env)
        peak, _ = peak_rss(child_command(*measure.work), env=env)
    return peak, baseline


def run(work: Path, quick: bool) -> list[Row]:
    """Measures every way of ingesting at two sizes."""
    sizes = [16 * MiB] if quick else [256 * MiB, 2 * GiB]
    home = work / "home-ingest-memory"
    env = bench_env(home, work)
    store = Path(env["DATAMAESTRO_DIR"]) / "store"
    rows = []
    for size in sizes:
        plain = random_file(work / "data" / f"random-{slug(size)}.bin", size)
        zeros = zeros_gzip_file(work / "data" / f"zeros-{slug(size)}.gz", size)
        # a second name for the file: ingest --move takes (renames) that one into the store
        movable = work / "ingest-move.bin"
        measures = [
            Measure("`Store.ingest_file` (copy)", ["ingest", str(store), str(plain)], ["ingest-imports"]),
            Measure("`Store.ingest_file(move=True)`", ["ingest", str(store), str(movable), "--move"], ["ingest-imports"]),
            Measure("cold `prepare_dataset`, plain file", ["prepare", "bench.big"], ["prepare-imports", "bench.big"], {"big.bin": plain}),
            Measure("cold `prepare_dataset`, gzipped zeros", ["prepare", "bench.gzipped"], ["prepare-imports", "bench.gzipped"], {"gzipped.bin.gz": zeros}),
        ]
        for measure in measures:
            movable.unlink(missing_ok=True)
            os.link(plain, movable)
            peak, baseline = _measure(measure, env, work)
            rows.append(_row(measure, size, peak, baseline))
        movable.unlink(missing_ok=True)
    _reset(env)
    return rows

