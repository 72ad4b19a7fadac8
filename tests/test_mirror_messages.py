"""Mirrors and peers, as a user meets them: what a failure says, which sources are used, and where.

Each user-visible case runs the real console script against the local test
server (the test plugin's URLs, ``http://127.0.0.1:9/…``, refuse every
connection; the ``[mirrors]`` setting points them at the server or at a
folder) and checks the message and the exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from datamaestro.errors import DownloadError, OfflineError, SettingsError
from datamaestro.fetch import BytesSink, Fetcher
from datamaestro.settings import load_settings
from support.lockproject import dm, lock_project, make_project
from support.mnistdata import PLUGIN_PREFIX, write_examples

README = "example/readme.txt"
ORIGINAL = PLUGIN_PREFIX + README


def settings(text: str) -> Path:
    """Writes the user settings file: no retries, short timeouts, and ``text``."""
    path = Path(os.environ["DATAMAESTRO_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("retries = 0\nconnect_timeout = 1\nread_timeout = 1\n" + text)
    return path


def run(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``datamaestro --quiet ARGS`` in ``cwd``, whatever its exit status."""
    return dm(cwd, "--quiet", *args, check=False, env=env)


def error_of(result: subprocess.CompletedProcess) -> str:
    """The error message and its hint, without log lines; never a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr[result.stderr.index("error:") :]


@pytest.fixture
def examples(http_server):
    """The test server with the example files (``org.example`` is its ``readme.txt``)."""
    write_examples(http_server.root)
    return http_server


@pytest.fixture
def project(examples, tmp_path):
    """A project using ``org.example``, locked (hence prepared) on the data dir ``tmp_path/a``."""
    settings(f'[mirrors]\n"{PLUGIN_PREFIX}" = ["{examples.base_url}/"]\n')
    return lock_project(make_project(tmp_path / "project"), tmp_path / "a", "org.example")


# -- a failed mirror: which sources were tried, what each answered


def test_a_failed_mirror_says_which_sources_were_tried_and_what_each_answered(examples, tmp_path):
    settings(f'[mirrors]\n"{PLUGIN_PREFIX}" = ["{examples.base_url}/nothing/", "http://127.0.0.1:1/"]\n')
    result = run(tmp_path, "prepare", "org.example")
    assert result.returncode == 1
    message = error_of(result)
    assert f"cannot download {ORIGINAL} from any of its 3 sources" in message
    assert f"- mirror {examples.base_url}/nothing/{README}: HTTP 404 Not Found" in message
    assert f"- mirror http://127.0.0.1:1/{README}: connection failed" in message
    assert f"- original {ORIGINAL}: connection failed" in message
    hint = message[message.index("hint:") :]
    assert f"the mirror 127.0.0.1:{examples.port} answered HTTP 404 Not Found" in hint
    assert "the mirror 127.0.0.1:1 refused the connection, and the original URL refused the connection" in hint
    # the mirror was tried: the hint says what to do about it, not "set a mirror"
    assert "copy the file to the mirror" in hint and "set a mirror" not in hint


def test_a_hung_mirror_and_a_mirror_with_other_bytes_are_named_as_such(examples, tmp_path):
    (examples.root / "slow").mkdir()
    (examples.root / "slow" / "a.bin").write_bytes(b"a")
    # a folder, as the hung host is left out for the rest of the session
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "a.bin").write_bytes(b"b")
    examples.set_fault("slow/a.bin", "slow", delay=3)
    from datamaestro.download.checks import SizeCheck

    mirrors = {"http://127.0.0.1:9/": [examples.url("slow/"), (tmp_path / "wrong").as_uri() + "/"]}
    with Fetcher(mirrors=mirrors, retries=0, read_timeout=0.3, progress=False) as fetcher, pytest.raises(DownloadError) as info:
        fetcher.fetch("http://127.0.0.1:9/a.bin", BytesSink(), checkers=[SizeCheck(5)])
    assert f"the mirror 127.0.0.1:{examples.port} timed out, the mirror {tmp_path / 'wrong'}" in info.value.hint
    assert "served other bytes" in info.value.hint
    assert "- original http://127.0.0.1:9/a.bin: connection failed" in info.value.message


def test_offline_fetch_reads_file_urls_only(examples, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"local")
    mirrors = {examples.url("orig/"): [(tmp_path / "m").as_uri() + "/"]}
    with Fetcher(mirrors=mirrors, offline=True, progress=False) as fetcher:
        sink = BytesSink()
        assert fetcher.fetch(examples.url("orig/a.bin"), sink).served_by == (tmp_path / "m" / "a.bin").as_uri()
        assert sink.getvalue() == b"local"
        # a file:// URL is itself no network: its own error, not "offline mode"
        with pytest.raises(DownloadError, match="no such file") as info:
            fetcher.fetch((tmp_path / "none.bin").as_uri(), BytesSink())
        assert not isinstance(info.value, OfflineError)
    assert examples.requests == []
    # every source lacking the file is "missing" as a whole: a peer takes it as "not here", not as "down"
    with Fetcher(mirrors={examples.url("orig/"): [examples.url("nothing/")]}, retries=0, progress=False) as fetcher:
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(examples.url("orig/a.bin"), BytesSink())
    assert info.value.missing


# -- --from: schemes, offline


def test_sync_from_an_unsupported_scheme_is_a_usage_error_before_anything_is_fetched(examples, tmp_path):
    settings(f'[mirrors]\n"{PLUGIN_PREFIX}" = ["{examples.base_url}/"]\n')
    project = make_project(tmp_path / "project")
    (project / "pyproject.toml").write_text((project / "pyproject.toml").read_text().replace("datasets = []", 'datasets = ["org.example"]'))
    result = run(project, "sync", "--from", "ftp://mirror.example/store")
    assert result.returncode == 2
    message = error_of(result)
    assert "--from ftp://mirror.example/store: the scheme ftp:// is not supported" in message
    assert "http(s)://" in message and "file://" in message
    assert examples.requests == []  # the lock was not resolved (downloaded) first


def test_sync_offline_says_why_a_web_peer_is_skipped(project, tmp_path):
    result = run(project, "--data", str(tmp_path / "b"), "sync", "--frozen", "--offline", "--from", "http://127.0.0.1:1/store")
    assert result.returncode == 1
    message = error_of(result)
    assert "offline mode: 1 download(s) needed" in message
    assert "--from http://127.0.0.1:1/store was skipped: --offline never touches the network" in message


# -- mirrors written as users write them; offline reads file:// mirrors


def test_offline_reads_a_plain_folder_mirror_given_in_the_environment(examples, tmp_path):
    settings("")
    folder = examples.root  # no trailing '/', the prefix has one: they name folders alike
    env = {"DATAMAESTRO_MIRRORS": f'"{PLUGIN_PREFIX}" = "{folder}"'}
    result = run(tmp_path, "--offline", "prepare", "org.example", env=env)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert Path(config["path"]).read_bytes() == (examples.root / README).read_bytes()
    assert examples.requests == []


def test_offline_with_a_folder_mirror_lacking_the_file(examples, tmp_path):
    settings(f'[mirrors]\n"{PLUGIN_PREFIX}" = "{tmp_path / "empty"}/"\n')
    result = run(tmp_path, "--offline", "prepare", "org.example")
    assert result.returncode == 1
    message = error_of(result)
    assert f"offline mode: 1 download(s) needed\n  - {ORIGINAL}" in message
    assert f"its file:// mirror could not serve it ({(tmp_path / 'empty' / README).as_uri()}: no such file" in message


def test_info_shows_the_mirror_of_each_url(examples, tmp_path):
    settings(f'[mirrors]\n"{PLUGIN_PREFIX}" = ["{examples.base_url}/"]\n')
    result = run(tmp_path, "info", "org.example")
    assert result.returncode == 0, result.stderr
    assert f"      {ORIGINAL}\n        mirror: {examples.base_url}/{README}\n        then the URL itself" in result.stdout
    # --json gives the same, from the API (in this process: cheaper than another run)
    from datamaestro import api
    from datamaestro.context import Context

    with Context(overrides={"data_dir": tmp_path / "data"}, progress=False, project_dir=tmp_path) as context:
        described = api.describe_dataset("org.example", context=context)
    assert described["resources"][0]["mirrors"] == {ORIGINAL: [f"{examples.base_url}/{README}"]}


def test_mirrors_agree_on_trailing_slashes_and_paths_become_file_urls(monkeypatch, tmp_path):
    user = settings('[mirrors]\n"http://a.example/data" = "/srv/mirror/"\n"http://b.example/x/" = ["relative/copy", "http://c.example/x"]\n')
    monkeypatch.chdir(tmp_path)
    mirrors = load_settings(project_dir=tmp_path)[0].mirrors
    assert mirrors == {
        "http://a.example/data/": ["file:///srv/mirror/"],
        "http://b.example/x/": [(tmp_path / "relative" / "copy").as_uri() + "/", "http://c.example/x/"],
    }
    assert Fetcher(mirrors={"http://a.example/": ["/srv/m"]}).candidates("http://a.example/f.gz") == ["file:///srv/m/f.gz", "http://a.example/f.gz"]
    user.write_text('[mirrors]\n"/srv/data/" = "/srv/mirror/"\n')
    with pytest.raises(SettingsError, match="mirror prefix '/srv/data/' is not a URL"):
        load_settings(project_dir=tmp_path)


def test_mirrors_environment_variable(monkeypatch, tmp_path):
    settings('[mirrors]\n"http://a.example/" = "http://user.example/"\n')
    monkeypatch.setenv("DATAMAESTRO_MIRRORS", '"http://a.example/" = ["http://env.example/"]\n"http://b.example/" = "/m/b/"')
    mirrors = load_settings(project_dir=tmp_path)[0].mirrors
    # the environment beats the settings file: its mirrors are tried first
    assert mirrors == {"http://a.example/": ["http://env.example/", "http://user.example/"], "http://b.example/": ["file:///m/b/"]}
    monkeypatch.setenv("DATAMAESTRO_MIRRORS", '"http://a.example/" =')
    with pytest.raises(SettingsError, match="DATAMAESTRO_MIRRORS: invalid TOML") as info:
        load_settings(project_dir=tmp_path)
    assert "DATAMAESTRO_MIRRORS='" in info.value.hint


# -- sync --from DIR: hard links by default, --copy for a backup


def objects_of(store: Path) -> dict[str, int]:
    """Inode of each object file of a store, by its path below ``objects/``."""
    return {str(path.relative_to(store)): path.stat().st_ino for path in (store / "objects").rglob("*") if path.is_file()}


def test_sync_from_a_folder_links_objects_and_copy_does_not(project, tmp_path):
    peer = objects_of(project.data / "store")
    linked = run(project, "--data", str(tmp_path / "linked"), "sync", "--frozen", "--offline", "--from", str(project.data / "store"))
    assert linked.returncode == 0, linked.stderr
    shared = {name for name, inode in objects_of(tmp_path / "linked" / "store").items() if peer.get(name) == inode}
    assert shared, "the default links the peer's objects"

    copied = run(project, "--data", str(tmp_path / "copied"), "sync", "--frozen", "--offline", "--copy", "--from", str(project.data / "store"))
    assert copied.returncode == 0, copied.stderr
    mine = objects_of(tmp_path / "copied" / "store")
    assert shared <= set(mine), "the same objects were taken"
    assert not {name for name, inode in mine.items() if peer.get(name) == inode}, "--copy shares no inode with the peer"
    from typer.testing import CliRunner

    from datamaestro.cli import app

    usage = CliRunner().invoke(app, ["sync", "--help"]).output
    assert "--copy" in usage and "hard-linked" in usage
