"""``datamaestro lock`` and ``sync`` killed at random points: the lock file is the old one or the new one.

The project's lock pins one dataset; its ``pyproject.toml`` then asks for
three, so that ``lock`` (or ``sync``, which locks again when the project
changed) downloads them and writes a new lock. A signal at a moment drawn
from the seed must leave ``datamaestro.lock`` byte for byte the old file or
the new one, never a mixture; the store keeps its promises; the next run
writes the new lock.
"""

from __future__ import annotations

import os
import signal

from .harness import PROCESS_TIMEOUT, Datamaestro, signal_problems, store_problems, tmp_entries
from .samples import SERVED

ROUNDS = int(os.environ.get("DATAMAESTRO_FAULT_ROUNDS", "3"))
OLD = ["org.example"]
NEW = ["org.example", "org.samples.corpus", "com.lecun.mnist"]


def pyproject(datasets: list[str]) -> str:
    """A project asking for ``datasets``."""
    listed = ", ".join(f'"{d}"' for d in datasets)
    return f'[project]\nname = "p"\n[tool.datamaestro]\ndatasets = [{listed}]\n'


class Project(Datamaestro):
    """A :class:`Datamaestro` runner whose commands run in a project folder."""

    def __init__(self, folder, data_dir, store_dir):
        super().__init__(data_dir, store_dir, cwd=folder)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def lock(self):
        """The project's lock file."""
        return self.folder / "datamaestro.lock"

    def locked(self, datasets: list[str]) -> tuple[bytes, float]:
        """Writes the pyproject of ``datasets``, locks it; returns the lock file's bytes and how long it took."""
        (self.folder / "pyproject.toml").write_text(pyproject(datasets))
        outcome = self.run("lock")
        assert outcome.returncode == 0, outcome.describe()
        return self.lock.read_bytes(), outcome.elapsed


def test_lock_file_is_old_or_new_after_a_kill(served, tmp_path, rng):
    for path in sorted({p for d in NEW for p in SERVED[d]}):
        served.server.set_fault(path, "throttle", chunk=32 * 1024, pause=0.01)
    reference = Project(tmp_path / "ref", tmp_path / "ref" / "data", tmp_path / "ref" / "store")
    old, _ = reference.locked(OLD)
    new, window = reference.locked(NEW)  # the time a lock takes: the window of the kills
    assert old != new

    for round_ in range(ROUNDS):
        project = Project(tmp_path / f"p{round_}", tmp_path / f"p{round_}" / "data", tmp_path / f"p{round_}" / "store")
        assert project.locked(OLD)[0] == old
        (project.folder / "pyproject.toml").write_text(pyproject(NEW))
        command = rng.choice(["lock", "sync"])
        signum = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
        delay = rng.uniform(0.0, window)
        where = f"round {round_}: {command} sent {signal.Signals(signum).name} after {delay:.2f}s"
        outcome = project.run_and_signal([command], signum, delay, timeout=PROCESS_TIMEOUT)
        print(f"{where}: exit {outcome.returncode}")
        assert not signal_problems(outcome), f"{where}: {outcome.describe()}"
        assert project.lock.read_bytes() in (old, new), f"{where}: the lock file is neither the old nor the new one"
        assert store_problems(project.store_dir) == [], where

        assert project.run(command).returncode == 0, where
        assert project.lock.read_bytes() == new, where
        assert tmp_entries(project.store_dir) == [], where
        leftovers = [p.name for p in project.folder.iterdir() if p.name not in ("pyproject.toml", "datamaestro.lock", "data", "store")]
        assert leftovers == [], f"{where}: left in the project folder: {leftovers}"
