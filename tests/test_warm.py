"""A warm ``datamaestro prepare`` answers from its warm record, without the definitions, and only while it is valid."""

import json
import os
import subprocess
import sys
from pathlib import Path

from datamaestro import api, warm

MNIST = "com.lecun.mnist"

#: runs the console script in this interpreter, then says which heavy modules it imported
_RUN = (
    "import sys, runpy\n"
    "sys.argv = ['datamaestro', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('datamaestro', run_name='__main__')\n"
    "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
    "heavy = [m for m in ('experimaestro', 'numpy', 'requests', 'pydantic', 'datamaestro_testimage.config.com.lecun') if m in sys.modules]\n"
    "print('HEAVY', heavy, file=sys.stderr)\n"
)


def prepare(data: Path, dataset_id: str = MNIST, *command: str) -> tuple[dict, list[str]]:
    """``datamaestro --data DATA prepare ID`` (or another command) in a new process: the JSON printed, and the heavy modules imported."""
    command = command or ("prepare", dataset_id)
    result = subprocess.run([sys.executable, "-c", _RUN, "--data", str(data), *command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    heavy = [line for line in result.stderr.splitlines() if line.startswith("HEAVY ")][-1]
    return json.loads(result.stdout), eval(heavy[len("HEAVY ") :])


def test_warm_prepare_imports_no_definition_and_sees_a_missing_object(mnist_server, tmp_path):
    data = tmp_path / "dm"
    first, heavy = prepare(data)
    assert "experimaestro" in heavy  # cold: the full prepare
    second, heavy = prepare(data)
    assert second == first
    assert heavy == []  # warm: neither the definition, experimaestro, numpy, requests nor typer's pydantic

    # info: from the record too, states read from the store
    described, heavy = prepare(data, MNIST, "--json", "info", MNIST)
    assert [m for m in heavy if m != "pydantic"] == []
    assert {r["state"] for r in described["resources"]} == {"complete"}
    assert described["id"] == MNIST and described["name"] == "The MNIST database" and "digits" in described["tags"]

    # an object of the dataset disappears: the warm record is not trusted, the full prepare brings it back
    images = Path(first["train"]["images"]["path"])
    content = images.read_bytes()
    images.resolve().unlink()
    third, heavy = prepare(data)
    assert third == first and "experimaestro" in heavy
    assert images.read_bytes() == content
    assert prepare(data)[1] == []
    full, _ = prepare(tmp_path / "other", MNIST, "--json", "info", MNIST)  # never prepared there: from the definition
    assert {**full, "resources": None, "datapath": None} == {**described, "resources": None, "datapath": None}
    assert [{**r, "state": None} for r in full["resources"]] == [{**r, "state": None} for r in described["resources"]]


#: the console script's main() with the full command line (typer's app) replaced by a failure: only the warm fast path can answer
_FAST_ONLY = (
    "import sys\n"
    "import datamaestro.cli as cli\n"
    "def full(*args, **kwargs):\n    print('the full command line ran', file=sys.stderr)\n    sys.exit(99)\n"
    "cli.app = full\n"
    "sys.argv = ['datamaestro', *sys.argv[1:]]\n"
    "cli.main()\n"
)


def test_the_warm_path_reads_options_placed_after_the_command(mnist_server, tmp_path):
    data = tmp_path / "dm"
    first, _ = prepare(data)
    for command in (["--data", str(data), "prepare", MNIST], ["prepare", MNIST, "--data", str(data), "--offline"], ["prepare", "--quiet", "--data", str(data), MNIST]):
        result = subprocess.run([sys.executable, "-c", _FAST_ONLY, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
        assert json.loads(result.stdout) == first


def test_the_warm_path_parses_the_global_options_as_the_full_command_does(mnist_server, tmp_path):
    """One parser: every global option the full command accepts, in any of its forms, and nothing it refuses."""
    data = tmp_path / "dm"
    first, _ = prepare(data)
    accepted = (
        [f"--data={data}", "prepare", MNIST, "--timeout", "30"],
        ["prepare", MNIST, "--keep-downloads", "--json", "-q", "--data", str(data), f"--store={data / 'store'}"],
    )
    for command in accepted:
        result = subprocess.run([sys.executable, "-c", _FAST_ONLY, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
        assert json.loads(result.stdout) == first
    # refused by the full command's parser (a bound), or more than a Context's settings: the full command line runs
    for command in (["--timeout", "0", "prepare", MNIST], ["--debug", "prepare", MNIST], ["--version", "prepare", MNIST], ["prepare", MNIST, "--data"]):
        result = subprocess.run([sys.executable, "-c", _FAST_ONLY, "--data", str(data), *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 99 and "the full command line ran" in result.stderr, (command, result.stdout, result.stderr)
        assert result.stdout == ""  # `--version` acted on once, by the full command only


def test_a_changed_plugin_lock_or_action_makes_the_record_stale(mnist_server, dm_context, monkeypatch, tmp_path):
    config = api.prepare_dataset_json(MNIST, context=dm_context)
    assert warm.warm_config(dm_context, MNIST) == config

    # a changed definition changes a plugin module's size or date, so the plugins' fingerprint
    fingerprint = type(dm_context.registry).fingerprint
    monkeypatch.setattr(type(dm_context.registry), "fingerprint", lambda self: "another")
    assert warm.warm_config(dm_context, MNIST) is None
    monkeypatch.setattr(type(dm_context.registry), "fingerprint", fingerprint)
    assert warm.warm_config(dm_context, MNIST) == config

    # a lock file appears in the project
    lock = tmp_path / "datamaestro.lock"
    with dm_context.using_lock(lock):
        lock.write_text("")
        assert warm.warm_config(dm_context, MNIST) is None
    lock.unlink()

    # an action record now names other bytes (produced again meanwhile): the pipeline must decide
    from datamaestro.store import recipe_key

    first = warm.WarmRecord.read(dm_context, MNIST).resources[0]
    assert not first["depends"]
    action = dm_context.store.actions.path_of(recipe_key(first["recipe"]))
    os.chmod(action, 0o644)
    document = json.loads(action.read_text())
    document["output"]["digest"] = dm_context.store.ingest_stream([b"other bytes"])
    action.write_text(json.dumps(document))
    assert warm.warm_config(dm_context, MNIST) is None


#: the console script in this interpreter, counting the Contexts built and the reads of warm records and of their stamps
_COUNTED = (
    "import sys, runpy\n"
    "from datamaestro import context, warm\n"
    "counts = {'contexts': 0, 'reads': 0, 'stamps': 0}\n"
    "init, read, stamps = context.Context.__init__, warm.WarmRecord.read.__func__, warm.stamps\n"
    "def counted_init(self, *a, **k):\n    counts['contexts'] += 1; init(self, *a, **k)\n"
    "def counted_read(cls, *a, **k):\n    counts['reads'] += 1; return read(cls, *a, **k)\n"
    "def counted_stamps(*a, **k):\n    counts['stamps'] += 1; return stamps(*a, **k)\n"
    "context.Context.__init__, warm.WarmRecord.read, warm.stamps = counted_init, classmethod(counted_read), counted_stamps\n"
    "sys.argv = ['datamaestro', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('datamaestro', run_name='__main__')\n"
    "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
    "print('COUNTS', counts, file=sys.stderr)\n"
)


def test_a_cold_cli_prepare_builds_one_context_and_reads_the_warm_record_once(mnist_server, tmp_path):
    """The full command takes over the warm path's Context and answer: nothing is built or read twice."""

    def counts(*options: str) -> dict:
        result = subprocess.run([sys.executable, "-c", _COUNTED, *options, "prepare", MNIST], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return eval([line for line in result.stderr.splitlines() if line.startswith("COUNTS ")][-1][len("COUNTS ") :])

    data = ["--data", str(tmp_path / "dm")]
    assert counts(*data) == {"contexts": 1, "reads": 1, "stamps": 1}  # cold: no record yet
    assert counts(*data, "-q") == {"contexts": 1, "reads": 1, "stamps": 1}  # warm
    # a stale record (the store moved): the full prepare runs, with the same single Context
    assert counts(*data, "--store", str(tmp_path / "other-store")) == {"contexts": 1, "reads": 1, "stamps": 1}
