"""A lock whose resources do not fit the definition is refused; a failed sync or prepare publishes nothing.

Every command is a real ``datamaestro`` process in a project folder, against
the test HTTP server. The lock is damaged as a user's file is: cut after a
complete ``[[dataset.resource]]`` table, a table deleted in the middle, one
added, one renamed. A failure after the first download (a pin or manifest
mismatch, a 404 on the last file, SIGTERM) must leave the data dir's views
and readable links as they were.
"""

import gzip
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.lockproject import dm, lock_project, make_project, served  # noqa: F401
from support.mnistdata import MNIST_FILES

MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"
TEXT = "pinned/text.txt.gz"  # the bundle's transient download, fetched last by a sync


def resource_table(text: str, name: str) -> str:
    """The ``[[dataset.resource]]`` table of a resource in a lock file's text (up to the next table)."""
    match = re.search(rf'\[\[dataset\.resource\]\]\nname = "{re.escape(name)}"\n(?:[^\[\n].*\n)*\n?', text)
    assert match, name
    return match.group(0)


def cut_after_last_table(text: str) -> str:
    """The file cut after a complete table: the last resource's table is lost."""
    return text[: text.rindex("[[dataset.resource]]")]


def remove_middle_table(text: str) -> str:
    return text.replace(resource_table(text, "train_images.idx"), "")


def add_table(text: str) -> str:
    table = resource_table(text, "train_labels.idx").replace('name = "train_labels.idx"', 'name = "extra.idx"')
    return text.rstrip("\n") + "\n\n" + table


def rename_table(text: str) -> str:
    return text.replace('name = "test_labels.idx"', 'name = "test-labels.idx"')


#: damage -> the entry the message must name
DAMAGES = {
    "cut": (cut_after_last_table, "train_labels.idx"),
    "middle-removed": (remove_middle_table, "train_images.idx"),
    "extra": (add_table, "extra.idx"),
    "renamed": (rename_table, "test-labels.idx"),
}
#: the damage checked through every command (the others through `sync` and `prepare`)
WITH_EVERY_COMMAND = "middle-removed"


def published(data: Path) -> dict[str, str]:
    """What a data dir shows: its store's views and every link under its readable folders (with their targets)."""
    shown = {}
    views = data / "store" / "views"
    for view in sorted(views.iterdir()) if views.is_dir() else []:
        if not view.name.startswith("."):
            shown[f"views/{view.name}"] = ""
    readable = data / "data"
    for path in sorted(readable.rglob("*")) if readable.is_dir() else []:
        if path.is_symlink():
            shown[str(path.relative_to(data))] = os.readlink(path)
    return shown


def downloads(server) -> int:
    """Requests the server received for the project's files."""
    return sum(server.count(path) for path in [*MNIST_FILES.values(), TEXT, "pinned/files.tar.gz"])


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_lock_whose_resources_do_not_fit_is_refused_before_anything_is_downloaded(served, tmp_path, damage):
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", MNIST)
    lock_file = project / "datamaestro.lock"
    original = lock_file.read_text()
    change, entry = DAMAGES[damage]
    lock_file.write_text(change(original))
    requests = downloads(served)

    check = dm(project, "lock", "--check", data=project.data, check=False)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "datamaestro.lock is out of date" in check.stderr and f"{MNIST}: " in check.stderr and repr(entry) in check.stderr
    assert "hint: run `datamaestro lock`" in check.stderr

    commands = {
        "sync": ["sync"],
        "sync --frozen": ["sync", "--frozen"],
        # the peer holds every object: before the check, the pinned ones were shown at once (3 of 4 files)
        "sync --frozen --from": ["sync", "--frozen", "--from", str(project.data / "store")],
        "sync --locked": ["sync", "--locked"],
        "prepare": ["prepare", MNIST],
    }
    if damage != WITH_EVERY_COMMAND:
        # every command meets the same check: one damage goes through all of them, the others through two
        commands = {label: commands[label] for label in ("sync", "prepare")}
    for label, command in commands.items():
        fresh = tmp_path / label.replace(" ", "_").replace("-", "")
        result = dm(project, *command, data=fresh, check=False)
        assert result.returncode == 2, f"{label}: {result.stdout}{result.stderr}"
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: {lock_file}: {MNIST}: ") and repr(entry) in first, f"{label}: {result.stderr}"
        assert "run `datamaestro lock`" in result.stderr, f"{label}: {result.stderr}"
        assert published(fresh) == {}, label
        assert downloads(served) == requests, f"{label} downloaded"
    if damage == WITH_EVERY_COMMAND:
        # a lock given to prepare outside the project is checked the same way
        elsewhere = make_project(tmp_path / "elsewhere")
        result = dm(elsewhere, "prepare", "--lock", str(lock_file), MNIST, data=tmp_path / "explicit", check=False)
        assert result.returncode == 2 and repr(entry) in result.stderr, result.stderr
        assert published(tmp_path / "explicit") == {} and downloads(served) == requests

    # the hint repairs it: `lock` resolves the dataset again from the store (nothing downloaded)
    assert dm(project, "lock", data=project.data).stdout.startswith("wrote")
    assert lock_file.read_text() == original
    assert downloads(served) == requests
    dm(project, "lock", "--check", data=project.data)


def test_a_lost_transient_table_is_accepted(served, tmp_path):
    """A transient input may have no table (its dependents' pins cover it, as `lock` writes when it was never fetched)."""
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", BUNDLE)
    lock_file = project / "datamaestro.lock"
    text = lock_file.read_text()
    lock_file.write_text(text.replace(resource_table(text, "text.txt"), ""))
    dm(project, "lock", "--check", data=project.data)
    assert "1 produced" in dm(project, "sync", "--frozen", data=tmp_path / "b").stdout


def test_an_extra_transient_table_is_refused_before_anything_is_downloaded(served, tmp_path):
    """A transient table is not in the manifest: sync --frozen finds it against the definition it imports, before producing anything."""
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", MNIST, BUNDLE)
    lock_file = project / "datamaestro.lock"
    text = lock_file.read_text()
    extra = resource_table(text, "text.txt").replace('name = "text.txt"', 'name = "other.txt"')
    lock_file.write_text(text.replace(resource_table(text, "text.txt"), resource_table(text, "text.txt") + extra))
    requests = downloads(served)
    check = dm(project, "lock", "--check", data=project.data, check=False)
    assert check.returncode == 2 and f"{BUNDLE}: [[dataset.resource]] entry 'other.txt' is not a resource of the definition" in check.stderr
    fresh = tmp_path / "b"
    result = dm(project, "sync", "--frozen", data=fresh, check=False)
    assert result.returncode == 2 and "'other.txt' is not a resource of the definition" in result.stderr, result.stderr
    assert downloads(served) == requests and published(fresh) == {}


# -- a failed sync or prepare publishes nothing


@pytest.fixture
def two_datasets(served, tmp_path):
    """A project using MNIST and the bundle, locked on ``tmp_path/a``; a sync produces MNIST first, the bundle last."""
    return lock_project(make_project(tmp_path / "project"), tmp_path / "a", MNIST, BUNDLE)


def edit_bundle_manifest(project: Path) -> None:
    lock_file = project / "datamaestro.lock"
    text = lock_file.read_text()
    manifest = re.search(rf'id = "{BUNDLE}"\n(?:.*\n)*?manifest = "blake3:([0-9a-f]+)"', text).group(1)
    lock_file.write_text(text.replace(manifest, "0" * 64))


FAILURES = {
    # other text, well gzipped: the bytes differ from their pin
    "pin-mismatch": (lambda server, project: server.set_fault(TEXT, "wrong-bytes", content=gzip.compress(b"other text\n", mtime=0)), 1, "the lock pins blake3:"),
    "404-last-file": (lambda server, project: server.set_fault(TEXT, "404"), 1, "HTTP 404"),
    "manifest-mismatch": (lambda server, project: edit_bundle_manifest(project), 2, "entries make the manifest"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("command", ["sync", "sync --frozen"])
def test_a_failed_sync_publishes_nothing(two_datasets, served, tmp_path, failure, command):
    project = two_datasets
    cause, status, words = FAILURES[failure]
    cause(served, project)
    data = tmp_path / "b"
    result = dm(project, *command.split(), data=data, check=False)
    # MNIST was complete, but the sync failed: no view, no readable folder (its objects may stay)
    assert published(data) == {}, result.stderr
    assert result.returncode == status and words in result.stderr, result.stderr
    # the cause gone, the next run succeeds
    served.clear_faults()
    if failure == "manifest-mismatch":
        dm(project, "lock", data=project.data)
    dm(project, *command.split(), data=data)
    assert set(published(data)) >= {"data/image/com/lecun/mnist/.view", "data/image/org/pinned/bundle/.view"}


LABELS = MNIST_FILES["train_labels.idx"]


def edit_mnist_manifest(project: Path) -> None:
    lock_file = project / "datamaestro.lock"
    text = lock_file.read_text()
    manifest = re.search(rf'id = "{MNIST}"\n(?:.*\n)*?manifest = "blake3:([0-9a-f]+)"', text).group(1)
    lock_file.write_text(text.replace(manifest, "0" * 64))


PREPARE_FAILURES = {
    "pin-mismatch": (lambda server, project: server.set_fault(LABELS, "wrong-bytes", content=gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07", mtime=0)), 1, "the lock pins blake3:"),
    "404-last-file": (lambda server, project: server.set_fault(LABELS, "404"), 1, "HTTP 404"),
    "manifest-mismatch": (lambda server, project: edit_mnist_manifest(project), 2, "entries make the manifest"),
}


@pytest.mark.parametrize("failure", sorted(PREPARE_FAILURES))
def test_a_failed_prepare_publishes_nothing(two_datasets, served, tmp_path, failure):
    """A dataset that fails after its first download: nothing of it is shown, in a data dir that shows other data."""
    data = tmp_path / "b"
    dm(two_datasets, "prepare", BUNDLE, data=data)
    before = published(data)
    cause, status, words = PREPARE_FAILURES[failure]
    cause(served, two_datasets)
    result = dm(two_datasets, "prepare", MNIST, data=data, check=False)
    assert published(data) == before, result.stderr
    assert result.returncode == status and words in result.stderr, result.stderr


def run_until_asked(command: list[str], project: Path, server, path: str) -> subprocess.CompletedProcess:
    """Runs a command, and sends it SIGTERM once it has asked the server for ``path`` (served so slowly that it never ends)."""
    config = Path(os.environ["DATAMAESTRO_CONFIG"])
    # the client waits for the rest of the body as long as the test needs
    config.write_text("read_timeout = 600\n" + config.read_text())
    server.set_fault(path, "throttle", chunk=1, pause=600)
    asked = server.count(path)  # by the lock, in this process
    process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while server.count(path) == asked:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{' '.join(command)} never asked for {path}"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    server.clear_faults()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_sigterm_during_the_last_download_of_a_prepare_publishes_nothing(two_datasets, served, tmp_path):
    data = tmp_path / "b"
    dm(two_datasets, "prepare", BUNDLE, data=data)
    before = published(data)
    result = run_until_asked(["datamaestro", "--data", str(data), "prepare", MNIST], two_datasets, served, LABELS)
    assert result.returncode == 143 and "terminated" in result.stderr, result.stderr
    assert published(data) == before


def test_sigterm_during_the_last_download_of_a_sync_publishes_nothing(two_datasets, served, tmp_path):
    data = tmp_path / "b"
    # MNIST is done when the bundle's downloads begin
    result = run_until_asked(["datamaestro", "--data", str(data), "sync"], two_datasets, served, TEXT)
    assert result.returncode == 143 and "terminated" in result.stderr, result.stderr
    assert published(data) == {}
    # every MNIST object stayed in the store: the next sync downloads none of them again
    before = {path: served.count(path) for path in MNIST_FILES.values()}
    dm(two_datasets, "sync", data=data)
    assert {path: served.count(path) for path in MNIST_FILES.values()} == before
