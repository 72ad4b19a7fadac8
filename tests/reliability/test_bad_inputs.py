"""The bad input catalogue: every user-facing input, a bad value of it, and what the user gets.

Each case runs the real console script (or, for data files read from
Python, a real Python process) and checks the exit status and the words of
the one-line message; none may print a traceback. ``docs/errors.md`` shows
the same table: :func:`test_the_catalogue_documents_every_case` keeps the
two in step.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.idxwriter import idx_bytes

from .harness import PROCESS_TIMEOUT
from .samples import tar_gz

DOCS = Path(__file__).parents[2] / "docs" / "errors.md"


@dataclass
class Case:
    """One row of the catalogue.

    :param id: the test id, named in ``docs/errors.md``
    :param args: the command line after ``datamaestro`` (``{tmp}``: the
        test's folder); ``["python", CODE]`` runs Python code instead
    :param status: the exit status expected
    :param words: what the message must say
    :param settings: the user settings file's text (default: the test
        server's mirror and short retries)
    :param pyproject: the project's ``pyproject.toml`` (the command runs in its folder)
    :param lock: the project's ``datamaestro.lock``: text, or a function of
        the good lock file's text
    :param env: environment variables
    :param serve: files the server serves instead of the samples (path -> bytes)
    :param faults: server faults (path -> (kind, params))
    """

    id: str
    args: list[str]
    status: int
    words: list[str]
    settings: str | None = None
    pyproject: str | None = None
    lock: object = None
    env: dict[str, str] = field(default_factory=dict)
    serve: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, tuple[str, dict]] = field(default_factory=dict)


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    """A tar member that is a link or a device."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


PROJECT = '[project]\nname = "p"\n[tool.datamaestro]\ndatasets = ["org.example"]\n'


def other_output_pin(good: str) -> str:
    """The lock pinning another output digest, its manifest made again to match: a whole lock whose pin the data does not match."""
    from datamaestro.lock.fileformat import loads
    from datamaestro.store.views import manifest_digest

    text = re.sub(r'\ndigest = "blake3:[0-9a-f]{4}', '\ndigest = "blake3:0000', good)
    entry = loads(text).datasets["org.example"]
    return text.replace(entry.manifest, manifest_digest(entry.entries()))


CORPUS = "samples/corpus.tar.gz"
IMAGES = "mnist/train-images-idx3-ubyte.gz"
READ_IMAGES = "from datamaestro import prepare_dataset\nprepare_dataset('com.lecun.mnist').train.images.data()\n"

CASES = [
    # -- dataset ids
    Case("id-typo", ["info", "com.lecun.mnsit"], 2, ["unknown dataset id 'com.lecun.mnsit'", "did you mean com.lecun.mnist?"]),
    Case("id-unknown", ["prepare", "nothing.at.all"], 2, ["unknown dataset id 'nothing.at.all'", "datamaestro search"]),
    Case("id-empty", ["prepare", ""], 2, ["unknown dataset id ''"]),
    Case("id-path", ["download", "../../etc/passwd"], 2, ["unknown dataset id '../../etc/passwd'"]),
    Case("variant-on-flat", ["prepare", "com.lecun.mnist[size=x]"], 2, ["does not declare variants but selector 'size=x' was supplied", "use com.lecun.mnist"]),
    Case("variant-unclosed", ["prepare", "com.lecun.mnist[size=x"], 2, ["malformed selector", "a variant selector ends with ']'"]),
    Case("search-field", ["search", "colour:red"], 2, ["unknown search field 'colour'", "fields are tag:, task:, repo:, type:"]),
    Case("search-empty-value", ["search", "tag:"], 2, ["search term 'tag:' has no value", "write tag:VALUE"]),
    # -- the user settings file
    Case("settings-toml", ["search"], 2, ["settings.toml: invalid TOML", "fix the file's syntax"], settings="retries = [\n"),
    Case("settings-unknown-key", ["search"], 2, ["unknown setting 'colour'", "known settings:"], settings="colour = 1\n"),
    Case("settings-type", ["search"], 2, ["'retries' must be a whole number >= 0, got 'many'"], settings="retries = 'many'\n"),
    Case("settings-zero-timeout", ["search"], 2, ["'read_timeout' must be a positive number, got 0"], settings="read_timeout = 0\n"),
    Case("settings-bool", ["search"], 2, ["'offline' must be true or false, got 'yes'"], settings="offline = 'yes'\n"),
    Case("settings-mirrors-table", ["search"], 2, ["[mirrors] must be a table of URL prefix = [replacements]"], settings="mirrors = 'x'\n"),
    Case("settings-mirror-target", ["search"], 2, ["mirror 'http://a/' must be a URL prefix or a list of them, got 5"], settings='[mirrors]\n"http://a/" = 5\n'),
    Case("settings-empty-path", ["search"], 2, ["'data' must be a non-empty string (a path), got ''"], settings="data = ''\n"),
    Case("env-config-missing", ["search"], 2, ["DATAMAESTRO_CONFIG=", "nope.toml': no such file", "create the file"], env={"DATAMAESTRO_CONFIG": "{tmp}/nope.toml"}),
    Case("env-config-folder", ["search"], 2, ["is a folder, not a settings file"], env={"DATAMAESTRO_CONFIG": "{tmp}"}),
    Case("env-repositories-unknown", ["search"], 2, ["DATAMAESTRO_REPOSITORIES chooses 'datamaestro-imagez' for the namespace 'image', but no installed repository comes from 'datamaestro-imagez'", "installed repositories come from: ", "datamaestro-testimage"], env={"DATAMAESTRO_REPOSITORIES": "image=datamaestro-imagez"}),  # (others too, where the README installed datamaestro-image)
    Case("env-offline", ["search"], 2, ["DATAMAESTRO_OFFLINE='maybe': expected 1/0, true/false, yes/no or on/off"], env={"DATAMAESTRO_OFFLINE": "maybe"}),
    # -- the project's pyproject.toml
    Case("pyproject-toml", ["search"], 2, ["pyproject.toml: invalid TOML"], pyproject="[tool.datamaestro\n"),
    Case("pyproject-not-a-table", ["search"], 2, ["pyproject.toml: [tool.datamaestro] must be a table"], pyproject="[tool]\ndatamaestro = 3\n"),
    Case("pyproject-unknown-key", ["search"], 2, ["pyproject.toml [tool.datamaestro]: unknown setting 'colour'"], pyproject="[tool.datamaestro]\ncolour = 1\n"),
    Case("pyproject-datasets-type", ["search"], 2, ["'datasets' must be a list of dataset ids"], pyproject='[tool.datamaestro]\ndatasets = "org.example"\n'),
    Case("pyproject-unknown-dataset", ["lock"], 2, ["unknown dataset id 'no.such.thing'"], pyproject='[tool.datamaestro]\ndatasets = ["no.such.thing"]\n'),
    Case("pyproject-missing", ["lock"], 2, ["no pyproject.toml in", "not in a project"]),
    # -- the lock file
    Case("lock-toml", ["sync"], 2, ["datamaestro.lock: not valid TOML", "restore the file from version control"], pyproject=PROJECT, lock="version = [\n"),
    Case("lock-version", ["sync"], 2, ["datamaestro.lock, line 4: lock format version 99 was written by a newer datamaestro", "upgrade datamaestro"], pyproject=PROJECT, lock=lambda good: good.replace("version = 1", "version = 99")),
    Case("lock-digest", ["sync"], 2, ["resource readme.txt: digest 'md5:", "is not a digest (blake3:<64 hex digits>)"], pyproject=PROJECT, lock=lambda good: good.replace('\ndigest = "blake3:', '\ndigest = "md5:')),
    Case("lock-unknown-field", ["sync"], 2, ["unknown field 'colour'"], pyproject=PROJECT, lock=lambda good: good.replace('kind = "file"', 'kind = "file"\ncolour = "red"')),
    Case("lock-missing-field", ["sync"], 2, ["dataset org.example: missing field 'manifest'"], pyproject=PROJECT, lock=lambda good: re.sub(r"\nmanifest = .*", "", good)),
    Case("lock-check-upgrade", ["lock", "--check", "--upgrade"], 2, ["--check and --upgrade cannot go together"], pyproject=PROJECT),
    Case("lock-size", ["sync", "--frozen"], 1, ["org.example/readme.txt from http://", "bytes downloaded, the lock records size 3", "datamaestro lock --upgrade org.example"], pyproject=PROJECT, lock=lambda good: re.sub(r"\nsize = \d+", "\nsize = 3", good)),
    Case("lock-missing", ["sync", "--frozen"], 2, ["datamaestro.lock: no such lock file", "run `datamaestro lock`"], pyproject=PROJECT),
    Case("lock-out-of-date", ["sync", "--locked"], 2, ["is out of date: there is no lock file yet"], pyproject=PROJECT),
    Case("lock-pin-differs", ["sync", "--frozen"], 1, ["output digest is blake3:", "the lock pins blake3:0000", "datamaestro lock --upgrade org.example"], pyproject=PROJECT, lock=other_output_pin),
    Case("lock-entry-lost", ["sync"], 2, ["datamaestro.lock: org.example: resource 'readme.txt' of the definition has no [[dataset.resource]] entry", "run `datamaestro lock`"], pyproject=PROJECT, lock=lambda good: good[: good.rindex("[[dataset.resource]]")]),
    Case("lock-manifest-edited", ["sync", "--frozen"], 2, ["org.example: its [[dataset.resource]] entries make the manifest blake3:", "run `datamaestro lock`"], pyproject=PROJECT, lock=lambda good: re.sub(r'\nmanifest = "blake3:[0-9a-f]{4}', '\nmanifest = "blake3:0000', good)),
    # -- URLs (a definition's, through the mirror of the settings)
    Case("url-404", ["prepare", "org.example"], 1, ["cannot download http://127.0.0.1:9/example/readme.txt from any of its 2 sources", "example/readme.txt: HTTP 404 Not Found"], faults={"example/readme.txt": ("404", {})}),
    Case("url-5xx", ["prepare", "org.example"], 1, ["HTTP 503", "gave up after 2 attempts"], faults={"example/readme.txt": ("503", {})}),
    Case("url-redirect-loop", ["prepare", "org.example"], 1, ["too many redirects (more than 20): the server redirects in a loop"], faults={"example/readme.txt": ("redirect-loop", {})}),
    Case("url-truncated", ["prepare", "org.example"], 1, ["truncated body: connection lost after 6000 of 8000 bytes"], faults={"example/readme.txt": ("truncate", {})}),
    Case("url-corrupt-gzip", ["prepare", "org.example.digits"], 1, ["gunzip: corrupt gzip data"], faults={"example/digits.csv.gz": ("wrong-bytes", {})}),
    Case("url-refused", ["prepare", "org.example"], 1, ["cannot download http://127.0.0.1:9/example/readme.txt", "connection failed"], settings="retries = 0\n"),
    Case("url-mirror-scheme", ["prepare", "org.example"], 1, ["ftp://mirror.example/example/readme.txt: unsupported URL scheme 'ftp'"], settings='retries = 0\n[mirrors]\n"http://127.0.0.1:9/" = ["ftp://mirror.example/"]\n'),
    # -- archive members (the corpus archive, replaced on the server)
    Case("archive-dot-dot", ["prepare", "org.samples.corpus"], 1, ["member '../evil.txt'", "the archive was not extracted", "malformed or hostile"], serve={CORPUS: tar_gz(("../evil.txt", b"x"))}),
    Case("archive-absolute", ["prepare", "org.samples.corpus"], 1, ["member '/etc/evil.txt'", "the archive was not extracted"], serve={CORPUS: tar_gz(("/etc/evil.txt", b"x"))}),
    Case("archive-link-out", ["prepare", "org.samples.corpus"], 1, ["member 'passwd'", "/etc/passwd"], serve={CORPUS: tar_gz(("a.txt", b"a"), special("passwd", tarfile.SYMTYPE, "/etc/passwd"))}),
    Case("archive-device", ["prepare", "org.samples.corpus"], 1, ["member 'null'"], serve={CORPUS: tar_gz(("a.txt", b"a"), special("null", tarfile.CHRTYPE))}),
    Case("archive-not-tar", ["prepare", "org.samples.corpus"], 1, ["not a valid tar archive"], serve={CORPUS: gzip.compress(b"<html>not found</html>")}),
    # -- IDX headers (read from Python; the other bad headers: tests/test_idx.py::test_malformed)
    Case("idx-bad-magic", ["python", READ_IMAGES], 1, ["train_images.idx: not an IDX file"], serve={IMAGES: gzip.compress(b"\x01\x00\x08\x01" + bytes(8))}),
    Case("idx-truncated", ["python", READ_IMAGES], 1, ["train_images.idx", "truncated"], serve={IMAGES: gzip.compress(idx_bytes(__import__("numpy").zeros((4, 28, 28), "uint8"))[:-5])}),
    # -- command-line options
    Case("cli-unknown-option", ["--frobnicate", "search"], 2, ["No such option: --frobnicate"]),
    Case("cli-missing-argument", ["info"], 2, ["Missing argument 'ID'"]),
    Case("cli-unknown-command", ["nonsense"], 2, ["No such command 'nonsense'"]),
    Case("cli-encoder", ["prepare", "--encoder", "yaml", "org.example"], 2, ["unknown encoder 'yaml'", "use --encoder json or --encoder xpm"]),
    Case("cli-verify-mode", ["sync", "--verify", "fast"], 2, ["--verify must be 'trust' or 'full', not 'fast'"], pyproject=PROJECT),
    Case("cli-agree-unknown", ["agree", "org.example.termz"], 2, ["unknown agreement id 'org.example.termz'", "names the agreement a dataset asks for"]),
    Case("cli-rm-not-prepared", ["rm", "org.example"], 2, ["org.example is not prepared in this data dir"]),
    Case("cli-datafolder-not-a-folder", ["datafolders", "set", "org.example.licensed", "{tmp}/afile"], 2, ["afile is not a folder", "give the folder that holds the data"]),
    Case("cli-check-unknown-repository", ["check", "imagez"], 2, ["no repository imagez", "installed repositories: image"]),
    Case("cli-data-is-a-file", ["--data", "{tmp}/afile", "prepare", "org.example"], 1, ["creating the store", "Not a directory"]),
    Case("cli-store-not-a-store", ["--store", "{tmp}/notstore", "prepare", "org.example"], 1, ["notstore is not a datamaestro store (no VERSION file) and is not empty"]),
    Case("cli-store-version", ["--store", "{tmp}/v99", "prepare", "org.example"], 1, ["has layout version 99, this datamaestro reads version 1"]),
    Case("cli-jobs-negative", ["store", "verify", "-j", "-3"], 2, ["Invalid value for '--jobs' / '-j': -3 is not in the range x>=1"]),
    Case("cli-sync-jobs-zero", ["sync", "-j", "0"], 2, ["Invalid value for '--jobs' / '-j': 0 is not in the range x>=1"], pyproject=PROJECT),
    Case("cli-grace-negative", ["store", "gc", "--grace", "-5"], 2, ["Invalid value for '--grace': -5.0 is not in the range x>=0"]),
    Case("cli-unknown-group", ["store", "init", "--group", "no-such-group-here"], 2, ["unknown Unix group 'no-such-group-here'", "getent group"]),
    Case("cli-offline-missing", ["--offline", "prepare", "com.lecun.mnist"], 1, ["offline mode: 4 download(s) needed", "http://127.0.0.1:9/mnist/t10k-labels-idx1-ubyte.gz"]),
]


#: the good lock file, made once: it records the plugin's URLs, not the server's, so it is the same at every run
_GOOD_LOCK: list[str] = []


@pytest.fixture
def good_lock(served, tmp_path_factory) -> str:
    """The text of a valid lock file of :data:`PROJECT` (made by ``datamaestro lock``)."""
    if not _GOOD_LOCK:
        folder = tmp_path_factory.mktemp("lock-project")
        (folder / "pyproject.toml").write_text(PROJECT)
        result = subprocess.run(["datamaestro", "--quiet", "lock"], cwd=folder, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
        assert result.returncode == 0, result.stderr
        _GOOD_LOCK.append((folder / "datamaestro.lock").read_text())
    return _GOOD_LOCK[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, served, tmp_path, request):
    project = tmp_path / "project"
    project.mkdir()
    if case.settings is not None:
        Path(os.environ["DATAMAESTRO_CONFIG"]).write_text(case.settings)
    if case.pyproject is not None:
        (project / "pyproject.toml").write_text(case.pyproject)
    if case.lock is not None:
        text = case.lock(request.getfixturevalue("good_lock")) if callable(case.lock) else case.lock
        (project / "datamaestro.lock").write_text(text)
    for path, data in case.serve.items():
        (served.server.root / path).write_bytes(data)
    for path, (kind, params) in case.faults.items():
        served.server.set_fault(path, kind, **params)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "notstore").mkdir()
    (tmp_path / "notstore" / "mine.txt").write_text("my notes")
    (tmp_path / "v99").mkdir()
    (tmp_path / "v99" / "VERSION").write_text("99\n")

    if case.args[0] == "python":
        command = [sys.executable, "-c", case.args[1]]
    else:
        command = ["datamaestro", "--quiet", *(arg.replace("{tmp}", str(tmp_path)) for arg in case.args)]
    env = {**os.environ, "DATAMAESTRO_DIR": str(tmp_path / "dm"), **{k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}}
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)

    print(f"{case.id}\t{result.returncode}\t{result.stderr.strip()}")
    assert result.returncode == case.status, result.stderr
    for word in case.words:
        assert word in result.stderr, result.stderr
    if case.args[0] != "python":
        assert "Traceback" not in result.stderr, result.stderr


def test_the_catalogue_documents_every_case():
    """docs/errors.md has a row naming each case's test, and names no case that does not exist."""
    text = DOCS.read_text()
    named = set(re.findall(r"test_bad_inputs\.py::test_bad_input\[([\w-]+)\]", text))
    ids = {case.id for case in CASES}
    assert ids - named == set(), "cases without a row in docs/errors.md"
    assert named - ids == set(), "rows of docs/errors.md naming no case"
