"""Warm ``prepare_dataset``: a dataset already in the store costs the same whatever its size.

Two class-style datasets of ``benchmarks/plugin`` (``bench.big``: one plain
file of 2 GiB, ``bench.small``: 2 MiB) are prepared once from the local HTTP
server, which is then stopped: a warm prepare that touched the network
would fail. Then ``prepare_dataset`` is called 20 times for each, in this
process (imports done), alternating the two: with a new ``Context`` for
every call (settings read, plugins fingerprinted, index read: what a new
process pays beyond its imports) and with one ``Context`` for all calls.
For context: the time of ``python -c "import datamaestro.api"`` and of a
whole warm prepare in a new process.

A script's start: a warm ``prepare_dataset("com.lecun.mnist")`` of the test
plugin (``tests/plugins/datamaestro_testimage``, small MNIST files served
once, then the server stopped) in a new process, against ``python -c
"import experimaestro"``, the two run in turns and the ratio taken pair by
pair (the machine's speed drifts; a pair shares it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks._common import (
    REPO_ROOT, GiB, MiB, Row, bench_env, child_command, compare, fresh_dir, http_server, in_environment, isolated_env, median, random_file,
    run_checked, serving, size_label, slug, time_call, time_command, write_mirrors,
)

NAME = "prepare_warm"
CALLS = 20
#: ``--quick`` (a smoke test: each row is computed, nothing it says counts): calls in this process, runs of each
#: command in a new process, pairs of the script's prepare, size of the large dataset
QUICK_CALLS, QUICK_RUNS, QUICK_PAIRS, QUICK_BIG_SIZE = 3, 1, 1, 8 * MiB
#: "the same time": the large dataset may take this much longer than the small one
SAME = 1.2
LIMIT_MS = 50
#: a warm prepare in a new process, against the import of experimaestro alone
EXPERIMAESTRO = 1.3
#: a script's warm prepare of the test plugin's MNIST, against the import of experimaestro alone (issue 29)
SCRIPT = 1.2
TEST_PLUGIN = REPO_ROOT / "tests" / "plugins" / "datamaestro_testimage"
MNIST = "com.lecun.mnist"
#: what a script runs: the prepare alone, as a user writes it
MNIST_SCRIPT = f"from datamaestro.api import prepare_dataset; prepare_dataset({MNIST!r})"


def mnist_pairs(work: Path, runs: int) -> list[tuple[float, float]]:
    """(warm MNIST prepare in a new process, ``import experimaestro``) wall seconds, run in turns ``runs`` times."""
    env = isolated_env(work / "home-prepare-warm-mnist", python_path=[REPO_ROOT, TEST_PLUGIN])
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    prepare = [sys.executable, "-c", MNIST_SCRIPT]
    served = fresh_dir(work / "serve" / "prepare_warm_mnist")
    with http_server(served) as server:
        from support.mnistdata import PLUGIN_PREFIX, write_mnist  # the tests' folder is on sys.path now (http_server puts it there)

        write_mnist(served)
        write_mirrors(env, {PLUGIN_PREFIX: server.base_url + "/"})
        run_checked(prepare, env=env)
    # the server is stopped: a warm prepare that touched the network would fail
    pairs = []
    for _ in range(runs):
        pairs.append((time_command(prepare, env=env), time_command([sys.executable, "-c", "import experimaestro"], env=env)))
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    return pairs


def run(work: Path, quick: bool) -> list[Row]:
    """Times warm prepares of both datasets, in this process and in new ones."""
    big_size, small_size = (QUICK_BIG_SIZE if quick else 2 * GiB), 2 * MiB
    calls = QUICK_CALLS if quick else CALLS
    files = {
        "big.bin": random_file(work / "data" / f"random-{slug(big_size)}.bin", big_size),
        "small.bin": random_file(work / "data" / f"random-{slug(small_size)}.bin", small_size, seed=1),
    }
    env = bench_env(work / "home-prepare-warm", work)
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    big, small = "bench.big", "bench.small"
    fresh, shared = {big: [], small: []}, {big: [], small: []}
    with in_environment(env):
        from datamaestro.api import prepare_dataset
        from datamaestro.context import Context

        with serving(work, NAME, files, env):
            for dataset in (big, small):
                prepare_dataset(dataset, context=Context(progress=False))
        context = Context(progress=False)
        for _ in range(calls):
            for dataset in (big, small):
                fresh[dataset].append(time_call(lambda: prepare_dataset(dataset, context=Context(progress=False))))
                shared[dataset].append(time_call(lambda: prepare_dataset(dataset, context=context)))

    runs = QUICK_RUNS if quick else 10
    imports = median([time_command([sys.executable, "-c", "import datamaestro.api"], env=env) for _ in range(runs)])
    bare = median([time_command([sys.executable, "-c", "pass"], env=env) for _ in range(runs)])
    process, experimaestro = [], []
    for _ in range(runs):  # in turns
        process.append(time_command(child_command("prepare", big), env=env))
        experimaestro.append(time_command([sys.executable, "-c", "import experimaestro"], env=env))
    # the ratio pair by pair: a pair shares the machine's speed of the moment (other processes load it)
    process_ratio = median([p / x for p, x in zip(process, experimaestro)])
    process, experimaestro = median(process), median(experimaestro)
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))

    pairs = mnist_pairs(work, QUICK_PAIRS if quick else 15)
    script_ratio = median([prepare / xpm for prepare, xpm in pairs])

    ms = {key: {d: median(v) * 1000 for d, v in values.items()} for key, values in (("fresh", fresh), ("shared", shared))}
    label = f"{size_label(big_size)} dataset"
    how = f"median of {calls} calls in this process (imports done), after one cold prepare"
    small_label = size_label(small_size)
    return [
        compare(NAME, f"warm `prepare_dataset`, {label} vs {small_label}, new `Context` per call", ms["fresh"][big], ms["fresh"][small], "ms",
                how + "; the server is stopped: no request is possible", target=f"≤ {SAME}", met=lambda ratio: ratio <= SAME),
        Row(NAME, f"warm `prepare_dataset`, {label}, new `Context` per call", ms["fresh"][big], None, None, f"< {LIMIT_MS} ms", "ms", how, met=ms["fresh"][big] < LIMIT_MS),
        compare(NAME, f"warm `prepare_dataset`, {label}, one `Context` for all calls", ms["shared"][big], ms["shared"][small], "ms",
                how + f"; reference: the {small_label} dataset", target=f"< {LIMIT_MS} ms", met=lambda _: ms["shared"][big] < LIMIT_MS),
        compare(NAME, '`python -c "import datamaestro.api"`', imports * 1000, bare * 1000, "ms", f"context; median of {runs} runs; reference: `python -c pass`"),
        compare(NAME, f"warm `prepare_dataset` in a new process, {label}", process * 1000, imports * 1000, "ms",
                f"context; median of {runs} runs of `python -m benchmarks._child prepare {big}`; reference: the import of datamaestro.api"),
        Row(NAME, f'warm `prepare_dataset` in a new process vs `python -c "import experimaestro"`, {label}', process * 1000, experimaestro * 1000,
            process_ratio, f"≤ {EXPERIMAESTRO:g}", "ms",
            f"{runs} pairs run in turns, ratio = median of the pairs' ratios (values: medians of each side); a config must be built, so experimaestro "
            "is imported: the target is what datamaestro adds on top (numpy only when `.data()` is called)", met=process_ratio <= EXPERIMAESTRO),
        Row(NAME, f'a script\'s warm `prepare_dataset("{MNIST}")` (test plugin) in a new process vs `python -c "import experimaestro"`',
            median([p for p, _ in pairs]) * 1000, median([x for _, x in pairs]) * 1000, script_ratio, f"≤ {SCRIPT:g}", "ms",
            f"{len(pairs)} pairs run in turns, ratio = median of the pairs' ratios (values: medians of each side); "
            "`python -c` of the prepare alone, the server stopped after one cold prepare", met=script_ratio <= SCRIPT),
    ]
