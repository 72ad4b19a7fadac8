"""The command line as people type it: option order, search, empty listings, wording, and the
commands users expect (``rm``, ``store roots``, ``store why``, ``sync --verify full``).

What the issue asks to see from outside runs the real console script (its
message and exit status); the rest goes through an in-process runner, to
keep the suite fast. The bad inputs of these commands are rows of the
catalogue (``tests/reliability/test_bad_inputs.py``, ``docs/errors.md``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datamaestro import __version__
from datamaestro.cli import app
from support.lockproject import dm, lock_project, make_project, served  # noqa: F401

TEST_PLUGIN = Path(__file__).parent / "plugins" / "datamaestro_testimage"


def run(*args: str, cwd: Path | None = None, env: dict | None = None, status: int = 0) -> subprocess.CompletedProcess:
    """Runs the ``datamaestro`` console script; checks the exit status and that no traceback is shown."""
    result = subprocess.run(["datamaestro", *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)
    assert result.returncode == status, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def invoke(*args: str, status: int = 0):
    """Runs the CLI in this process (same parsing and printing, no interpreter start-up)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == status, f"{args}: {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"
    return result


def first_words(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def test_global_options_move_before_the_command():
    import typer.main

    from datamaestro.cli import hoist_global_options

    group = typer.main.get_command(app)
    context = group.make_context("datamaestro", ["version"])

    def hoist(*args: str) -> list[str]:
        return hoist_global_options(group, context, list(args))

    assert hoist("prepare", "ID", "--offline", "-q") == ["--offline", "-q", "prepare", "ID"]
    assert hoist("prepare", "ID", "--lock", "x.lock", "--data", "d") == ["--data", "d", "prepare", "ID", "--lock", "x.lock"]
    assert hoist("--json", "store", "du", "--data=d") == ["--json", "--data=d", "store", "du"]
    # an option of the command itself stays (sync has its own --offline), as does anything after --
    assert hoist("sync", "--offline", "--json") == ["--json", "sync", "--offline"]
    assert hoist("search", "--", "--json") == ["search", "--", "--json"]
    # the value of a command's option is never taken for an option
    assert hoist("prepare", "--encoder", "--json", "ID") == ["prepare", "--encoder", "--json", "ID"]
    # what cannot be understood is left to click, which reports it
    assert hoist("--frobnicate", "search", "--json") == ["--frobnicate", "search", "--json"]
    assert hoist("nonsense", "--json") == ["nonsense", "--json"]


def test_version_global_options_after_the_command_and_search(tmp_path):
    assert run("--version").stdout.strip() == __version__
    listed = json.loads(run("search", "tag:digits", "--json", "-q").stdout)
    assert [entry["id"] for entry in listed] == ["com.lecun.mnist", "org.example.digits"]
    missed = run("search", "tag:imagez", status=1)
    assert missed.stdout == "" and "no dataset matches" in missed.stderr and "did you mean tag:images?" in missed.stderr

    assert first_words(invoke("search", "mnist", "--data", str(tmp_path / "dm")).stdout) == ["com.lecun.mnist"]
    invoke("store", "du", "--data", str(tmp_path / "dm"))
    assert (tmp_path / "dm" / "store").is_dir()  # --data after the command was used
    # free text matches tasks and tags; a tag matches in the singular or the plural
    assert first_words(invoke("search", "classification").stdout) == ["com.lecun.mnist", "org.example.digits"]
    assert first_words(invoke("search", "tag:image").stdout) == ["com.lecun.mnist"]
    # the example of docs/getting-started.md
    assert "datamaestro search repo:image type:ImageClassification" in (Path(__file__).parents[1] / "docs" / "getting-started.md").read_text()
    assert first_words(invoke("search", "repo:image", "type:ImageClassification").stdout) == ["com.lecun.mnist"]
    assert invoke("search", "--json", "nothing-like-this", status=1).stdout.strip() == "[]"
    assert "did you mean repo:image?" in invoke("search", "repo:imag", status=1).stderr


def test_empty_listings_say_so(tmp_path):
    assert "no orphan folder under" in run("--data", str(tmp_path / "dm"), "orphans").stderr
    assert "no data folder is set, and no installed dataset asks for one" in invoke("datafolders", "list").stderr
    assert "no dataset folder uses the store" in invoke("store", "du").stderr
    assert "no root: nothing keeps data in this store" in invoke("store", "roots").stderr


def test_repository_choice_is_silent_and_checked(tmp_path, monkeypatch, caplog):
    from datamaestro.context import Context
    from datamaestro.errors import SettingsError

    # a second distribution declaring the namespace `image`
    other = tmp_path / "other"
    (other / "datamaestro_otherimage-1.0.dist-info").mkdir(parents=True)
    (other / "datamaestro_otherimage-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: datamaestro-otherimage\nVersion: 1.0\n")
    (other / "datamaestro_otherimage-1.0.dist-info" / "entry_points.txt").write_text("[datamaestro.repositories]\nimage = otherimage:Repository\n")
    (other / "otherimage.py").write_text("from datamaestro_testimage import Repository as Base\n\n\nclass Repository(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(other))

    def load(choice: str) -> dict:
        monkeypatch.setenv("DATAMAESTRO_REPOSITORIES", choice)
        caplog.clear()
        with caplog.at_level(logging.DEBUG), Context(overrides={"data_dir": tmp_path / "dm"}, progress=False) as context:
            return context.registry.repositories()

    assert load("image=datamaestro-testimage")["image"].entry_point.value == "datamaestro_testimage:Repository"
    # (the published datamaestro-image, once the README's first line installed it, declares `image` too: its own record)
    assert [r.levelno for r in caplog.records if "declared by two" in r.message and "otherimage" in r.message] == [logging.DEBUG]
    assert load("image=datamaestro-otherimage")["image"].entry_point.value == "otherimage:Repository"
    load("")
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING and "otherimage" in r.message]
    assert len(warned) == 1 and "DATAMAESTRO_REPOSITORIES=image=<distribution>" in warned[0]
    with pytest.raises(SettingsError, match="which it does not provide"):
        load("text=datamaestro-otherimage")


def test_the_test_plugin_is_taken_from_the_checkout_never_installed():
    code = "import datamaestro_testimage, importlib.metadata as m; print(datamaestro_testimage.__file__); print(m.distribution('datamaestro-testimage')._path)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(path).resolve().is_relative_to(TEST_PLUGIN.resolve()) for path in shown), shown


def test_rm_roots_and_why(mnist_server, tmp_path, monkeypatch):
    from datamaestro import api
    from datamaestro.context import Context

    data = tmp_path / "dm"
    monkeypatch.setenv("DATAMAESTRO_DIR", str(data))
    with Context(progress=False) as context:
        api.prepare_definition("org.example", context=context)
        api.prepare_definition("org.example.digits", context=context)  # nested in org.example's folder
    folder = data / "data" / "image" / "org" / "example"
    roots = invoke("store", "roots").stdout
    assert re.search(rf"data  {re.escape(str(data))}  \[live\]  2 published manifests", roots), roots
    why = invoke("store", "why", "org.example").stdout
    assert "is kept by:" in why and f"data dir {data} (image/org/example)" in why
    readme = os.path.realpath(folder / "readme.txt")

    dry = invoke("rm", "org.example", "--dry-run").stdout
    assert f"would remove {folder}" in dry and "would free 2 objects" in dry  # the file and the manifest
    assert (folder / "readme.txt").is_file()
    gone = run("rm", "org.example").stdout
    assert f"removed {folder}" in gone and "freed 2 objects" in gone
    assert not os.path.exists(readme) and not (folder / ".view").exists() and not (folder / "readme.txt").exists()
    assert (folder / "digits" / "digits.csv").is_file()  # the nested dataset stays
    digest = "blake3:" + "".join(Path(readme).parts[-2:])
    assert "nothing keeps" in invoke("store", "why", digest).stdout
    assert "org.example is not prepared in this data dir" in run("rm", "org.example", status=2).stderr


def test_sync_wording_verify_full_and_lock_size(served, tmp_path, monkeypatch):  # noqa: F811
    from datamaestro import api
    from datamaestro.errors import IntegrityError
    from support.lockproject import in_project

    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", "org.example")
    data = project.data
    monkeypatch.chdir(project)
    assert "org.example is already listed; run `datamaestro lock` to lock it" in invoke("--data", str(data), "add", "org.example").stdout
    # a lock pins the data: rm frees nothing, and says what keeps it
    kept = invoke("--data", str(data), "rm", "org.example", "--dry-run").stdout
    assert f"its data stays in the store: lock file {project / 'datamaestro.lock'}" in kept

    # a damaged object: sync --verify full rehashes, quarantines it and takes it again
    readme = Path(os.path.realpath(data / "data" / "image" / "org" / "example" / "readme.txt"))
    readme.chmod(0o644)
    stamp = readme.stat()
    readme.write_bytes(b"damaged\n")
    # same size and mtime: the stat check on use cannot see it, only a rehash can
    os.utime(readme, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    verified = dm(project, "sync", "--verify", "full", data=data)
    assert re.search(r"synced 1 dataset \(1 (present|produced)\)", verified.stdout), verified.stdout
    assert "rehashed 2 objects: 1 damaged" in verified.stdout and "damaged object blake3:" in verified.stderr
    assert readme.read_bytes() == b"read me\n"
    assert "rehashed 2 objects: none damaged" in invoke("--data", str(data), "sync", "--verify=full").stdout

    # the lock's size is checked: against the object present, and against a download
    lock = project / "datamaestro.lock"
    lock.write_text(re.sub(r"\nsize = \d+", "\nsize = 3", lock.read_text()))
    wrong = dm(project, "sync", "--frozen", data=data, check=False)
    assert wrong.returncode == 1 and "resource readme.txt: the lock records size 3, but its pinned bytes" in wrong.stderr
    with in_project(project, tmp_path / "b") as context, pytest.raises(IntegrityError, match="8 bytes downloaded, the lock records size 3"):
        api.sync_project(frozen=True, context=context)

    # a lock file gone: gc drops its root, and a dry run says it would
    lock.unlink()
    dry = invoke("--data", str(data), "store", "gc", "--dry-run").stdout
    assert f"would drop root lock {lock} (gone)" in dry and "would delete" in dry


def test_agree_records_only_a_known_agreement(dm_context, monkeypatch):
    from datamaestro import api
    from datamaestro.errors import UsageError
    from datamaestro.registry import IndexEntry

    entry = IndexEntry(id="org.example.licensed", repository="image", module="m", qualname="q", agreements=["org.example.terms"])
    monkeypatch.setattr(dm_context.registry, "index", lambda: [entry])
    with pytest.raises(UsageError, match="did you mean org.example.terms"):
        api.accept_agreement("org.example.termz", context=dm_context)
    settings = api.accept_agreement("org.example.terms", context=dm_context)
    assert '"org.example.terms" = true' in settings.read_text() or "org.example.terms = true" in settings.read_text()
    assert dm_context.settings.agreements["org.example.terms"] is True


def test_reading_missing_data_names_the_dataset_and_what_to_run(mnist_server, dm_context):
    from datamaestro import get_dataset, prepare_dataset
    from datamaestro.errors import MissingDataError

    prepare_dataset("com.lecun.mnist", context=dm_context)
    images = Path(os.path.realpath(dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist" / "train_images.idx"))
    images.unlink()  # as store verify's quarantine, or gc, leaves it
    with pytest.raises(MissingDataError) as missing:
        get_dataset("com.lecun.mnist", context=dm_context).train.images.data()
    message = str(missing.value)
    assert message.startswith("the data of com.lecun.mnist is missing:") and "train_images.idx links to" in message
    assert "`datamaestro sync`" in message and "`datamaestro prepare com.lecun.mnist`" in message
    shutil.rmtree(dm_context.data_dir / "store")
    with pytest.raises(MissingDataError, match="the data of com.lecun.mnist is missing"), get_dataset("com.lecun.mnist", context=dm_context).test.labels.open("rb"):
        pass


def make_plugin(root: Path, namespace: str) -> Path:
    """A repository ``namespace`` in ``root`` (package ``datamaestro_<namespace>``, found on PYTHONPATH); returns its config folder."""
    info = root / f"datamaestro_{namespace}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: datamaestro-{namespace}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[datamaestro.repositories]\n{namespace} = datamaestro_{namespace}:Repository\n")
    package = root / f"datamaestro_{namespace}"
    (package / "config").mkdir(parents=True)
    (package / "__init__.py").write_text(f'import datamaestro\n\n\nclass Repository(datamaestro.Repository):\n    """A test repository."""\n\n    NAMESPACE = "{namespace}"\n')
    (package / "config" / "__init__.py").write_text("")
    return package / "config"


def test_create_dataset_under_a_module_refuses_and_says_where_to_add_it(tmp_path):
    config = make_plugin(tmp_path / "plugin", "nc")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), os.environ.get("PYTHONPATH", "")])}
    data = ["--data", str(tmp_path / "dm")]
    written = run(*data, "create-dataset", "nc", "org.words", env=env).stdout.strip()
    assert Path(written) == config / "org" / "words.py"
    refused = run(*data, "create-dataset", "nc", "org.words.newone", env=env, status=2)
    assert f"org.words is a module ({config / 'org' / 'words.py'})" in refused.stderr
    assert "add the definition to" in refused.stderr and "@dataset(id='newone')" in refused.stderr
    assert not (config / "org" / "words").exists()
    # nothing was written that Python cannot import: the repository checks clean
    checked = run(*data, "check", "nc", env=env)
    assert "is not a package" not in checked.stderr and "FAILED" not in checked.stdout


def test_small_edges_a_new_user_meets(tmp_path):
    data = ["--data", str(tmp_path / "dm")]
    # lock in a project that lists no dataset: says to add one first
    project = make_project(tmp_path / "project")
    locked = run(*data, "lock", cwd=project)
    assert "the project lists no dataset" in locked.stderr and "datamaestro add ID" in locked.stderr
    # a typo in free text: the close word is suggested, as for ids and tag:
    missed = run(*data, "search", "mnsit", status=1)
    assert "no dataset matches" in missed.stderr and "did you mean mnist?" in missed.stderr
    # a typo in a setting: the close key, not the whole list
    settings = tmp_path / "settings.toml"
    settings.write_text("read_timout = 3\n")
    wrong = run(*data, "search", "mnist", env={"DATAMAESTRO_CONFIG": str(settings)}, status=2)
    assert "unknown setting 'read_timout'" in wrong.stderr and "did you mean read_timeout?" in wrong.stderr
    assert "known settings" not in wrong.stderr


def _write_readme(context, root: Path, force: bool = False) -> None:
    """A custom_download function: writes one file, nothing fetched."""
    (root / "readme.txt").write_text("kept by hand\n")


def _dataset_in_no_repository():
    """A dataset defined outside every repository's package (its readable folder goes under ``__custom__``)."""
    from datamaestro.data import Base
    from datamaestro.definitions import Dataset, dataset
    from datamaestro.download import custom_download

    @dataset(id="test.usability.norepository")
    class NoRepository(Dataset):
        """A dataset in no repository"""

        DATA = custom_download("data", downloader=_write_readme)

        def config(self) -> Base:
            return Base.C()

    return NoRepository


NoRepository = _dataset_in_no_repository()


def test_rm_and_why_find_a_dataset_in_no_repository_where_prepare_put_it(dm_context, monkeypatch):
    """The readable folder of a definition in no repository is ``data/__custom__/...`` for prepare, ``rm`` and ``store why`` alike."""
    from datamaestro import api
    from datamaestro.registry import IndexEntry

    definition = NoRepository.__dataset__
    assert definition.repository_in(dm_context.registry) is None
    entry = IndexEntry(id=definition.id, repository="", module=__name__, qualname="NoRepository")
    monkeypatch.setattr(dm_context.registry, "index", lambda: [entry])
    api.prepare_dataset(definition.id, context=dm_context)
    folder = dm_context.data_dir / "data" / "__custom__" / "test" / "usability" / "norepository"
    assert (folder / "data" / "readme.txt").is_file()
    assert dm_context.readable_folder(definition) == folder

    digest, keepers = api.why_kept(definition.id, context=dm_context)
    assert keepers, "the prepared folder keeps the dataset's manifest"
    report = api.remove_dataset(definition.id, context=dm_context)
    assert report.folder == folder and not (folder / "data").exists()
