"""The lock: add/remove, lock, lock --check/--upgrade, sync, prepare under a lock, malformed files.

Commands run as real processes in a project folder, against the local
HTTP server; a second data dir (with its own store) stands for another
machine. Set-ups run in this process (faster); what is tested runs as a user would.
"""

import gzip
import os
import re
from pathlib import Path

import pytest

from datamaestro import api
from datamaestro.api import prepare_dataset, prepare_definition
from datamaestro.errors import DatasetNotFoundError, IntegrityError, LockFileError, UsageError
from support.lockproject import PINNED_FILES, dm, in_project, lock_project, make_project, readable_files, served  # noqa: F401
from support.mnistdata import MNIST_FILES

MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"
LABELS = MNIST_FILES["train_labels.idx"]


@pytest.fixture
def locked(served, tmp_path):
    """A project using MNIST and the pinned bundle, locked on data dir ``tmp_path/a``."""
    return lock_project(make_project(tmp_path / "project"), tmp_path / "a", "mnist", BUNDLE)


def store_files(store: Path) -> dict[str, bytes]:
    """Objects, actions and views of a store (what must not change on a failure)."""
    found = {}
    for folder in ("objects", "actions", "views", "trees"):
        for path in sorted((store / folder).rglob("*")) if (store / folder).is_dir() else []:
            if path.is_file() or path.is_symlink():
                found[str(path.relative_to(store))] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


# -- the project's dataset list


def test_add_and_remove_keep_the_file_as_it_was(served, tmp_path):
    project = make_project(tmp_path / "project")
    before = (project / "pyproject.toml").read_text()
    assert dm(project, "add", "mnist", BUNDLE).stdout.split() == ["added", MNIST, "added", BUNDLE]
    text = (project / "pyproject.toml").read_text()
    assert "# the data this project uses" in text and "# filled by `datamaestro add`" in text
    assert text.startswith(before.split("[tool.datamaestro]")[0])
    with in_project(project, tmp_path / "a") as context:
        assert api.add_datasets([MNIST], context=context) == []
        assert api.remove_datasets(["mnist"], context=context) == [MNIST]
        text = (project / "pyproject.toml").read_text()
        assert f'"{BUNDLE}"' in text and MNIST not in text
        with pytest.raises(DatasetNotFoundError, match="did you mean com.lecun.mnist"):
            api.add_datasets(["com.lecun.mnst"], context=context)
        with pytest.raises(UsageError, match="not in the project's datasets"):
            api.remove_datasets([MNIST], context=context)
        # a pyproject without any [tool] table gets one
        (project / "pyproject.toml").write_text('[project]\nname = "bare"\n')
        api.add_datasets(["org.example.digits"], context=context)
    assert (project / "pyproject.toml").read_text() == '[project]\nname = "bare"\n\n[tool.datamaestro]\ndatasets = ["org.example.digits"]\n'

    unknown = dm(project, "add", "com.lecun.mnst", check=False)
    assert unknown.returncode == 2 and "unknown dataset id 'com.lecun.mnst'" in unknown.stderr and MNIST in unknown.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = dm(outside, "lock", check=False)
    assert result.returncode == 2 and "no pyproject.toml" in result.stderr and "hint:" in result.stderr, result.stderr


# -- lock


def test_lock_is_stable_and_sync_reproduces_the_bytes_elsewhere(locked, tmp_path):
    lock_file = locked / "datamaestro.lock"
    first = lock_file.read_bytes()
    text = first.decode()
    assert 'requested = [\n    "com.lecun.mnist",\n    "org.pinned.bundle",\n]' in text
    # mirrors are a local setting: the lock has the original URLs
    assert 'url = "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz"' in text
    assert text.count("[[dataset]]") == 2 and 'name = "files"\nkind = "tree"' in text
    assert 'name = "text.txt"\nkind = "file"\ntransient = true' in text
    assert dm(locked, "lock", data=locked.data).stdout.startswith("unchanged")
    assert lock_file.read_bytes() == first

    other = tmp_path / "b"  # another machine: its own data dir and store
    assert "synced 2 datasets (2 produced)" in dm(locked, "sync", data=other).stdout
    for dataset_id in (MNIST, BUNDLE):
        here = readable_files(locked.data, "image", dataset_id)
        assert here and readable_files(other, "image", dataset_id) == here
    bundle = readable_files(other, "image", BUNDLE)
    assert bundle["count.txt"] == b"3\n" and bundle["upper.txt"] == b"SOME TEXT\n"
    assert {f"files/{name}": data for name, data in PINNED_FILES.items()}.items() <= bundle.items()
    assert "2 present" in dm(locked, "sync", data=other).stdout
    assert lock_file.read_bytes() == first


def test_lock_check_and_sync_locked_see_every_change(locked):
    data = locked.data
    before = (locked / "datamaestro.lock").read_text()
    with in_project(locked, data) as context:
        assert api.check_lock(context=context) == []
        api.add_datasets(["org.example.digits"], context=context)
    check = dm(locked, "lock", "--check", data=data, check=False)
    assert check.returncode == 2 and "out of date" in check.stderr and "added to the project: org.example.digits" in check.stderr
    strict = dm(locked, "sync", "--locked", data=data, check=False)
    assert strict.returncode == 2 and "out of date" in strict.stderr
    # plain sync locks again what changed, keeping the other pins
    assert "locked again" in dm(locked, "sync", data=data).stdout
    after = (locked / "datamaestro.lock").read_text()
    assert "org.example.digits" in after and before.split("[[dataset]]")[1] in after
    with in_project(locked, data) as context:
        api.remove_datasets(["org.example.digits"], context=context)
        assert api.check_lock(context=context) == ["dataset(s) removed from the project: org.example.digits"]
        with pytest.raises(UsageError, match="not one of the project's datasets"):
            api.lock_project(upgrade=["org.example.digits"], context=context)
        api.lock_project(context=context)
    assert (locked / "datamaestro.lock").read_text() == before
    result = dm(locked, "lock", MNIST, data=data, check=False)
    assert result.returncode == 2 and "only given with --upgrade" in result.stderr


# -- the data changes on the server


def test_changed_data_is_refused_then_upgrade(locked, served, tmp_path):
    served_labels = served.root / LABELS
    served_labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x07", mtime=0))
    fresh = tmp_path / "fresh"
    result = dm(locked, "sync", data=fresh, check=False)
    assert result.returncode == 1
    message = result.stderr
    lock_text = (locked / "datamaestro.lock").read_text()
    pinned = re.search(r'name = "train_labels.idx"\n(?:.*\n)*?source_digest = "(blake3:[0-9a-f]+)"', lock_text).group(1)
    # the URL that served the bytes (the mirror), and the dataset named once
    assert f"{MNIST}/train_labels.idx from {served.url(LABELS)} (mirror of http://127.0.0.1:9/{LABELS})" in message
    error_line = next(line for line in message.splitlines() if line.startswith("error:"))
    assert error_line.count(MNIST) == 1, error_line
    assert f"the lock pins {pinned}" in message and "downloaded bytes digest is blake3:" in message
    assert f"datamaestro lock --upgrade {MNIST}" in message
    # nothing of the new bytes entered the store, no readable folder shows them
    new_digest = re.search(r"downloaded bytes digest is (blake3:[0-9a-f]+)", message).group(1)
    store = fresh / "store"
    assert not any(new_digest[7:] in "".join(p.parts[-2:]) for p in (store / "objects").rglob("*"))
    assert not (fresh / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").exists()
    before = store_files(store)

    # prepare_dataset under the lock fails the same way, changing nothing
    with in_project(locked, fresh) as context:
        with pytest.raises(IntegrityError, match=f"the lock pins {pinned}"):
            prepare_dataset(MNIST, context=context)
    assert store_files(store) == before
    # the first data dir still has the pinned bytes: there, everything is fine
    with in_project(locked, locked.data) as context:
        prepare_dataset(MNIST, context=context)

    assert dm(locked, "lock", "--upgrade", MNIST, data=fresh).stdout.startswith("wrote")
    assert pinned not in (locked / "datamaestro.lock").read_text()
    dm(locked, "sync", data=fresh)
    labels = fresh / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx"
    assert labels.read_bytes() == gzip.decompress(served_labels.read_bytes())


# -- prepare under a lock


def test_prepare_under_the_lock_points_at_the_pinned_view_and_never_rehashes(locked, monkeypatch):
    with in_project(locked, locked.data) as context:
        config = prepare_dataset(MNIST, context=context)
        manifest = context.lockfile().datasets[MNIST].manifest
    path = config.train.images.path
    assert path == locked.data / "store" / "views" / manifest[7:] / "train_images.idx"

    def forbidden(*args, **kwargs):
        raise AssertionError("a warm prepare must not hash or write data")

    import datamaestro.store.digests as digests
    import datamaestro.store.objects as objects

    monkeypatch.setattr(digests, "digest_of_file", forbidden)
    monkeypatch.setattr(objects, "digest_of_file", forbidden)
    monkeypatch.setattr(objects.ObjectWriter, "__init__", forbidden)
    with in_project(locked, locked.data) as context:
        assert prepare_definition(MNIST, context=context).produced == []
        assert prepare_definition(BUNDLE, context=context).produced == []


def test_a_warm_prepare_reads_the_lock_file_once(locked, monkeypatch):
    """Where the dataset lives is answered once per prepare, not once per path of its config."""
    lock_file = str(locked / "datamaestro.lock")
    with in_project(locked, locked.data) as context:
        prepare_dataset(MNIST, context=context)  # warm: every object is there
        calls = []
        real_stat = os.stat

        def counting_stat(path, *args, **kwargs):
            if os.fspath(path) == lock_file:
                calls.append(path)
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", counting_stat)
        config = prepare_dataset(MNIST, context=context)
        monkeypatch.undo()
    assert config.train.images.path.is_file()
    assert len(calls) == 1


def test_verify_full_rehashes(locked):
    with in_project(locked, locked.data) as context:
        config = prepare_dataset(BUNDLE, context=context, verify="full")
        damaged = (config.path / "sub" / "b.txt").resolve()
        os.chmod(damaged, 0o644)
        before = damaged.stat()
        # bit rot keeps size and mtime: the stat check on use cannot see it, only a rehash can
        damaged.write_bytes(bytes(b ^ 1 for b in damaged.read_bytes()))
        os.utime(damaged, ns=(before.st_atime_ns, before.st_mtime_ns))
        prepare_dataset(BUNDLE, context=context)  # trusted: no rehash
        with pytest.raises(IntegrityError, match=r"org.pinned.bundle: resource files: object blake3:\w+ of the store now hashes to"):
            prepare_dataset(BUNDLE, context=context, verify="full")


def test_prepare_with_an_explicit_lock_and_a_stale_definition(locked, tmp_path):
    elsewhere = make_project(tmp_path / "other")
    with in_project(elsewhere, locked.data) as context:
        assert context.lock_path is None
        plain = prepare_dataset(MNIST, context=context)
        assert plain.train.images.path.parent == locked.data / "data" / "image" / "com" / "lecun" / "mnist"
        pinned = prepare_dataset(MNIST, context=context, lock=locked / "datamaestro.lock")
        assert "views" in pinned.train.images.path.parts
    # a lock written for another definition says so
    lock_file = locked / "datamaestro.lock"
    text = lock_file.read_text()
    fingerprint = re.search(r'id = "com.lecun.mnist"\n(?:.*\n)*?fingerprint = "blake3:([0-9a-f]+)"', text).group(1)
    lock_file.write_text(text.replace(fingerprint, "0" * 64))
    with in_project(locked, locked.data) as context:
        with pytest.raises(LockFileError, match="locked for another version of its definition"):
            prepare_dataset(MNIST, context=context)
    check = dm(locked, "lock", "--check", data=locked.data, check=False)
    assert check.returncode == 2 and f"the definition of {MNIST} changed" in check.stderr


def test_a_new_data_dir_reuses_the_check_of_an_unchanged_lock(locked, tmp_path, monkeypatch):
    """The verdict "lock up to date" depends on the code and the project only: another data dir does not import the definitions again."""
    from datamaestro.project import resolve

    checked = []
    real = resolve.out_of_date
    monkeypatch.setattr(resolve, "out_of_date", lambda *args: checked.append(args) or real(*args))
    with in_project(locked, tmp_path / "fresh") as context:
        assert resolve.stale_reasons(context) == []
        assert checked == []
        assert not (tmp_path / "fresh" / "cache").exists()
    # a lock file changed by hand is checked again
    lock_file = locked / "datamaestro.lock"
    lock_file.write_text(lock_file.read_text() + "\n")
    with in_project(locked, tmp_path / "fresh") as context:
        assert resolve.stale_reasons(context) == []
        assert len(checked) == 1


# -- malformed lock files

VALID_LOCK = """# This file is written by `datamaestro lock`: do not edit it by hand.

version = 1
datamaestro = "2.0.0"
requested = ["com.lecun.mnist"]

[[dataset]]
id = "com.lecun.mnist"
repository = "image"
plugin_version = "0.1.0"
fingerprint = "blake3:f3dd0063661c86d4aef2771ea2b855ce4ce4722923b60315597cadb3459e65e3"
manifest = "blake3:48137adb0b6071bd97d895ba8fd13309f2e457ee3f2184605c123d1fb631b227"

[[dataset.resource]]
name = "test_images.idx"
kind = "file"
url = "http://127.0.0.1:9/mnist/t10k-images-idx3-ubyte.gz"
size = 55254
source_digest = "blake3:049109a612d8466abbac7c7529caccf5023bef5992d1c8c397a88150f0ce8e05"
digest = "blake3:6da9e41b07f86dfac504c08d912fc3feaa079ebf6d1ee6b6434170cae40d28c7"
"""


def _replace_line(text: str, pattern: str, new: str | None) -> tuple[str, int]:
    lines = text.split("\n")
    index = next(i for i, line in enumerate(lines) if re.match(pattern, line))
    if new is None:
        del lines[index]
    else:
        lines[index] = new
    return "\n".join(lines), index + 1


@pytest.mark.parametrize(
    "pattern, new, line, words",
    [
        (r'^id = "com', 'id = "com.lecun.mnist', 8, "not valid TOML"),
        (r"^version = ", "version = 99", 3, "lock format version 99 was written by a newer datamaestro"),
        (r"^manifest = ", None, 7, "dataset com.lecun.mnist: missing field 'manifest'"),
        (r"^source_digest = ", 'source_digest = "blake3:not-hex"', 19, "source_digest 'blake3:not-hex' is not a digest"),
    ],
    ids=["bad-toml", "unknown-version", "missing-field", "digest-not-hex"],
)
def test_malformed_lock_files(tmp_path, pattern, new, line, words):
    project = make_project(tmp_path / "project")
    (project / "pyproject.toml").write_text(f'[tool.datamaestro]\ndatasets = ["{MNIST}"]\n')
    lock_file = project / "datamaestro.lock"
    lock_file.write_text(_replace_line(VALID_LOCK, pattern, new)[0])
    result = dm(project, "sync", data=tmp_path / "a", check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 2 and lines[1].startswith("  hint:"), result.stderr
    assert lines[0].startswith(f"error: {lock_file}, line {line}") and words in lines[0], lines[0]
    # the same message wherever the lock is read
    with in_project(project, tmp_path / "a") as context:
        for action in (lambda: prepare_dataset(MNIST, context=context), lambda: api.check_lock(context=context)):
            with pytest.raises(LockFileError) as info:
                action()
            assert str(info.value).split("\n")[0] == lines[0][len("error: ") :]


def test_malformed_lock_repaired_by_upgrade(locked):
    (locked / "datamaestro.lock").write_text("version = 1\ndatamaestro = 2\n")
    with in_project(locked, locked.data) as context:
        with pytest.raises(LockFileError, match=r"line 2: lock file: datamaestro must be a string, got 2"):
            prepare_dataset(MNIST, context=context)
        with pytest.raises(LockFileError):
            api.lock_project(context=context)
        # `lock --upgrade` writes it again from the definitions
        api.lock_project(upgrade=True, context=context)
        assert api.check_lock(context=context) == []
