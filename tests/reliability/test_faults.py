"""Fault injection: real prepares against a misbehaving server, signalled at random points.

Each round draws, from the test's seed, a dataset, faults on some of its
files (5xx, 404, truncated or reset bodies, a stalled server, wrong bytes,
redirects and redirect loops), a signal (SIGKILL, SIGTERM, SIGINT or none)
and the moment to send it; sometimes other processes prepare the same
dataset on the same store at the same time. Whatever happens, the process
ends cleanly (finished, one error message, or the signal), the store keeps
its promises, readable folders lead only to complete data, and the next
run, on a well-behaved server, succeeds and leaves ``tmp/`` empty.
"""

from __future__ import annotations

import json
import os
import signal
import time

from .harness import Datamaestro, finish, readable_problems, signal_problems, store_problems, tmp_entries
from .samples import DATASETS, SERVED, VALIDATED

# a new seed every run: the rounds of many runs add up (DATAMAESTRO_FAULT_ROUNDS=100 for a long hunt)
ROUNDS = int(os.environ.get("DATAMAESTRO_FAULT_ROUNDS", "6"))
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, None]
#: slow enough that a kill lands in the middle of bodies, fast enough for CI
THROTTLE = {"chunk": 32 * 1024, "pause": 0.01}


def faults_for(path: str) -> list[tuple[str, dict]]:
    """The faults that may be put on a served path (``wrong-bytes`` only where it is detectable)."""
    faults = [
        ("500", {"times": 1}),
        ("503", {}),
        ("404", {"times": 1}),
        ("truncate", {"times": 1}),
        ("truncate", {}),
        ("reset", {"after": 40_000, "times": 1}),
        ("reset", {}),
        ("slow", {"delay": 1.5, "times": 1}),
        ("redirect", {"to": "moved/" + path}),
        ("redirect-loop", {}),
    ]
    if path in VALIDATED:
        faults.append(("wrong-bytes", {"times": 1}))
    return faults


def test_signals_and_faults_at_random_points(served, tmp_path, rng):
    server = served.server
    durations: dict[str, float] = {}

    def reference(dataset: str) -> float:
        """How long a clean prepare of ``dataset`` takes on a throttled server (the window for kills)."""
        if dataset not in durations:
            for path in SERVED[dataset]:
                server.set_fault(path, "throttle", **THROTTLE)
            scratch = Datamaestro(tmp_path / f"ref-{dataset}" / "data", tmp_path / f"ref-{dataset}" / "store")
            outcome = scratch.run("prepare", dataset)
            assert outcome.returncode == 0, outcome.describe()
            durations[dataset] = outcome.elapsed
            server.clear_faults()
        return durations[dataset]

    dm = None
    for round_ in range(ROUNDS):
        dataset = rng.choice(DATASETS)
        window = reference(dataset)
        if dm is None or rng.random() < 0.5:
            # a fresh store, or the previous round's (with whatever it holds)
            dm = Datamaestro(tmp_path / f"r{round_}" / "data", tmp_path / f"r{round_}" / "store")
        paths = SERVED[dataset]
        chosen = {}
        for path in rng.sample(paths, rng.randint(1, len(paths))):
            kind, params = rng.choice(faults_for(path))
            chosen[path] = (kind, params)
            server.set_fault(path, kind, **params)
        for path in paths:
            server.set_fault(path, "throttle", **THROTTLE)
        signum = rng.choice(SIGNALS)
        delay = rng.uniform(0.0, window * 1.3)
        crowd = rng.random() < 0.3
        where = f"round {round_}: prepare {dataset}, faults {chosen}, signal {signum and signal.Signals(signum).name} after {delay:.2f}s"

        started = time.monotonic()
        others = []
        if crowd:
            # other data dirs on the same store, at the same time: they must not hang on the victim's locks
            others = [Datamaestro(dm.data_dir.with_name(f"other{i}"), dm.store_dir).start("prepare", dataset) for i in range(2)]
        victim = dm.run_and_signal(["prepare", dataset], signum, delay)
        print(f"{where}: exit {victim.returncode} after {victim.elapsed:.2f}s")
        assert not signal_problems(victim), f"{where}: {signal_problems(victim)}\n{victim.describe()}"
        for process in others:
            other = finish(process, None, 0.0, started)
            assert not signal_problems(other), f"{where}: a concurrent process: {other.describe()}"
        if victim.returncode == 0:
            assert json.loads(victim.stdout)["id"], where
        assert not store_problems(dm.store_dir), f"{where}: {store_problems(dm.store_dir)}"
        assert not readable_problems(dm.data_dir, served.expected), f"{where}: {readable_problems(dm.data_dir, served.expected)}"

        # the server behaves again: the next run succeeds and leaves nothing behind
        server.clear_faults()
        recovery = dm.run("prepare", dataset)
        assert recovery.returncode == 0, f"{where}: the next run failed: {recovery.describe()}"
        assert not store_problems(dm.store_dir), f"{where}: {store_problems(dm.store_dir)}"
        assert tmp_entries(dm.store_dir) == [], f"{where}: tmp/ not reaped"
        problems = readable_problems(dm.data_dir, served.expected, complete=[dataset])
        assert not problems, f"{where}: {problems}"
