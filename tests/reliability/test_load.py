"""Load: 32 processes prepare a mix of five datasets on one store at once.

Every file is downloaded once for all of them (the server counts), none
fails, and the store and every data dir end up complete and sound. The
wall time is printed next to that of one process preparing the five
datasets in turn: a report, not an assertion (CI machines vary too much).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .harness import PROCESS_TIMEOUT, Datamaestro, finish, readable_problems, store_problems, tmp_entries
from .samples import DATASETS

PROCESSES = 32
DATA_DIRS = 4


def test_32_processes_prepare_five_datasets_on_one_store(served, tmp_path, rng, report):
    store = tmp_path / "store"
    # each process prepares one dataset into one of a few data dirs: data
    # dirs are shared too, and every dataset is asked for by several processes
    plan = [(DATASETS[i % len(DATASETS)], i % DATA_DIRS) for i in range(PROCESSES)]
    rng.shuffle(plan)
    started = time.monotonic()
    processes = [Datamaestro(tmp_path / f"data{d}", store).start("prepare", dataset) for dataset, d in plan]
    outcomes = [finish(p, None, 0.0, started) for p in processes]
    crowd = time.monotonic() - started

    for (dataset, d), outcome in zip(plan, outcomes):
        assert outcome.returncode == 0, f"{dataset} in data{d}: {outcome.describe()}"
        assert json.loads(outcome.stdout)["id"].startswith(dataset)
    counts = served.count()
    assert counts == {path: 1 for path in counts}, f"GETs per file: {counts}"
    assert store_problems(store) == []
    assert tmp_entries(store) == []
    for d in range(DATA_DIRS):
        wanted = sorted({dataset for dataset, dd in plan if dd == d})
        assert readable_problems(tmp_path / f"data{d}", served.expected, complete=wanted) == []

    # the reference: one process, the five datasets in turn, on a new store
    code = "import sys\nfrom datamaestro import prepare_dataset\nfor dataset in sys.argv[1:]:\n    prepare_dataset(dataset)\n"
    started = time.monotonic()
    single = subprocess.run(
        [sys.executable, "-c", code, *DATASETS],
        env={**os.environ, "DATAMAESTRO_DIR": str(tmp_path / "single")},
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    alone = time.monotonic() - started
    assert single.returncode == 0, single.stderr
    report(
        f"{PROCESSES} processes preparing {len(DATASETS)} datasets on one store took {crowd:.2f}s; "
        f"one process preparing the {len(DATASETS)} took {alone:.2f}s (ratio {crowd / alone:.1f})"
    )
