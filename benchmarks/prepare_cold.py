"""Cold prepare of a 1 GiB gzipped file, against ``curl -s -o f URL && gunzip f``.

Both sides fetch the same file from the tests' :class:`ControlledServer` on
127.0.0.1. datamaestro runs ``prepare_dataset("bench.gzipped")`` in a process of
its own (a class-style dataset of ``benchmarks/plugin``, whose URL a mirror
setting sends to the server), on an empty data dir and store each time: it
downloads, hashes the download, gunzips, hashes the output, writes it into
the store and fsyncs it, in one pass. The reference downloads to a file,
then gunzips it. Runs alternate between the two sides; dirty pages are
flushed before each run so that one run's writeback does not slow the next.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks._common import GiB, MiB, Row, compare, bench_env, child_command, drop_dirty_pages, fresh_dir, median, run_timed, serving, size_label, slug, text_gzip_file, time_command

NAME = "prepare_cold"
DATASET = "bench.gzipped"


def run(work: Path, quick: bool) -> list[Row]:
    """Times both sides on the same gzipped file; ratio = datamaestro / reference."""
    size = 32 * MiB if quick else GiB
    runs = 1 if quick else 3  # quick: does it work, not how fast
    for tool in ("curl", "gunzip"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: the reference needs it")
    source = text_gzip_file(work / "data" / f"text-{slug(size)}.gz", size)
    home = work / "home-prepare-cold"
    env = bench_env(home, work)
    data_dir = Path(env["DATAMAESTRO_DIR"])
    target = work / "curl-gunzip"

    with serving(work, NAME, {"gzipped.bin.gz": source}, env) as server:
        url = server.url("gzipped.bin.gz")
        reference_command = f"curl -s -o {target / 'f.gz'} {url} && gunzip {target / 'f.gz'}"

        def reset_reference():
            fresh_dir(target)
            drop_dirty_pages()

        def reset_datamaestro():
            fresh_dir(data_dir)
            drop_dirty_pages()

        # warm-up: the served file in the page cache, bytecode compiled
        time_command(reference_command, shell=True, before=reset_reference)
        ours, reference, output_size = [], [], None
        for _ in range(runs):
            seconds, done = run_timed(child_command("prepare", DATASET), env=env, before=reset_datamaestro)
            ours.append(seconds)
            path = Path(json.loads(done.stdout.splitlines()[-1])["config"]["path"])
            output_size = path.stat().st_size
            reference.append(time_command(reference_command, shell=True, before=reset_reference))
        if (target / "f").stat().st_size != output_size:
            raise RuntimeError("datamaestro and gunzip disagree on the decompressed size")
    fresh_dir(target)
    fresh_dir(data_dir)

    note = (
        f"median of {runs} runs each; datamaestro: `prepare_dataset` in a fresh process (imports included), "
        "download + blake3 of download and output + gunzip + fsync; reference: `curl -s -o f URL && gunzip f` (no fsync)"
    )
    if quick:
        note += "; quick size: start-up dominates, the ratio means little"
    measure = f"cold prepare of a {size_label(size)} .gz ({output_size / GiB:.2f} GiB gunzipped)"
    return [compare(NAME, measure, median(ours), median(reference), "s", note, target="≤ 1.2", met=lambda ratio: ratio <= 1.2)]
