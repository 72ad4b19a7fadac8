"""The checks of documents from outside, one by one (the end-to-end cases are in ``tests/test_hostile_inputs.py``)."""

from __future__ import annotations

import json

import pytest

from datamaestro.errors import LockFileError, SettingsError, UntrustedInputError
from datamaestro.lock.fileformat import read_lock
from datamaestro.remotes.folder import FolderRemote
from datamaestro.remotes.pull import transfer
from datamaestro.settings import load_settings, trust_project
from datamaestro.store import Store
from datamaestro.store.actions import MAX_RECORD_BYTES, Kind, parse_record
from datamaestro.store.digests import canonical_json, digest_bytes
from datamaestro.store.paths import dataset_id_problem, name_problem, relative_path_problem

KEY = digest_bytes(b"a recipe")
DIGEST = digest_bytes(b"an object")


def record(**output) -> bytes:
    return canonical_json({"key": KEY, "recipe": {"class": "x"}, "output": {"kind": "file", "digest": DIGEST, "size": 9, **output}, "created": 1.5})


def test_a_record_as_the_store_writes_it_is_read():
    parsed = parse_record(record(url="http://example.org/x", source_digest=DIGEST), KEY, source="lab")
    assert parsed.output.kind == Kind.FILE and parsed.output.digest == DIGEST and parsed.output.size == 9
    signed = parse_record(canonical_json({"key": KEY, "recipe": {}, "output": {"kind": "file", "digest": DIGEST}, "signatures": ["lab:AAAA"]}), KEY)
    assert signed.output.digest == DIGEST  # a signed push's field (remotes/signing.py)
    value = parse_record(canonical_json({"key": KEY, "recipe": {}, "output": {"kind": "value", "value": {"n": [1, 2]}}}), KEY)
    assert value.output.value == {"n": [1, 2]}


@pytest.mark.parametrize(
    "data, why",
    [
        (record(kind="folder"), "is not file, tree or value"),
        (record(digest="blake3:../../x"), "is not a digest"),
        (record(digest=None), "is not a digest"),
        (record(source_digest="md5:abc"), "source digest"),
        (record(size=-1), "is not a count"),
        (record(size=True), "is not a count"),
        (record(url=["x"]), "url is not a URL"),
        (record(path="/etc"), "unknown output field 'path'"),
        (record(kind="value", value=1), "a value output with a digest"),
        (record(value={"a": 1}), "a file output with a value"),
        (canonical_json({"key": digest_bytes(b"other"), "recipe": {}, "output": {"kind": "value"}}), "another recipe"),
        (canonical_json({"recipe": {}, "output": {"kind": "value"}, "extra": 1}), "unknown field 'extra'"),
        (canonical_json({"recipe": [], "output": {"kind": "value"}}), "no recipe object"),
        (canonical_json({"recipe": {}, "output": "file"}), "no output object"),
        (canonical_json([1, 2]), "not a JSON object"),
        (canonical_json({"recipe": {}, "output": {"kind": "value"}, "signatures": "lab:AAAA"}), "signatures is not a list"),
        (b"\xff not json", "not JSON"),
        (b'{"recipe": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        (canonical_json({"recipe": {"a": json.loads("[" * 100 + "]" * 100)}, "output": {"kind": "value"}}), "nested deeper"),
        (b" " * (MAX_RECORD_BYTES + 1), "more than a record holds"),
    ],
)
def test_a_malformed_record_is_refused_naming_its_source(data, why):
    with pytest.raises(UntrustedInputError) as info:
        parse_record(data, KEY, source="lab (s3://bucket/prefix)")
    assert why in info.value.message and f"refused action record {KEY} from lab (s3://bucket/prefix)" in info.value.message
    assert info.value.source == "lab (s3://bucket/prefix)"


def test_the_local_cache_reads_a_bad_record_as_none(tmp_path):
    store = Store(tmp_path / "store")
    path = store.actions.path_of(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(record(kind="folder"))
    assert store.actions.get(KEY) is None


@pytest.mark.parametrize("path", ["", "/etc/passwd", "a/../../b", "..", "a//b", "./a", "a/.", "a/", "a\0b", "a\\b", "x" * 256])
def test_paths_that_leave_their_folder_are_named(path):
    assert relative_path_problem(path) is not None


def test_names_and_ids():
    assert relative_path_problem("sub/deep/c.txt") is None and name_problem("image") is None
    assert name_problem("a/b") is not None and name_problem("..") is not None
    assert dataset_id_problem("com.lecun.mnist") is None
    assert dataset_id_problem("org/../x.y") is not None and dataset_id_problem("a..b") is not None


LOCK = """version = 1
datamaestro = "2.0"
requested = ["{id}"]

[[dataset]]
id = "{id}"
repository = "{repository}"
plugin_version = "1"
fingerprint = "{digest}"
manifest = "{digest}"

[[dataset.resource]]
name = "{name}"
kind = "file"
digest = "{digest}"
"""


@pytest.mark.parametrize(
    "field, value, why",
    [
        ("repository", "../../../../x", "repository cannot name a folder"),
        ("repository", "a/b", "repository cannot name a folder"),
        ("id", "org/../../x.y", "id cannot name folders"),
        ("name", "/etc/passwd", "must stay inside the dataset folder"),
        ("name", "../../x", "must stay inside the dataset folder"),
    ],
)
def test_a_lock_whose_names_climb_out_is_refused(tmp_path, field, value, why):
    values = {"id": "org.example.x", "repository": "image", "name": "data.txt", "digest": DIGEST, field: value}
    path = tmp_path / "datamaestro.lock"
    path.write_text(LOCK.format(**values))
    with pytest.raises(LockFileError, match=why):
        read_lock(path)


def test_a_peer_object_larger_than_its_document_says_is_cut_off(tmp_path):
    peer = Store(tmp_path / "peer")
    digest = peer.objects.ingest_stream([b"x" * (3 << 20)])
    store = Store(tmp_path / "store")
    report = transfer(store, [digest], [FolderRemote(peer.root, link=False)], limits={digest: 14})
    assert not store.objects.has(digest)
    assert report.refused and "has 3145728 bytes, more than the 14 it should" in report.refused[0]


def test_a_peer_folder_fifo_is_refused_not_waited_for(tmp_path):
    import os

    peer = Store(tmp_path / "peer")
    digest = digest_bytes(b"anything")
    hexdigest = digest[7:]
    (peer.root / "objects" / hexdigest[:2]).mkdir(parents=True, exist_ok=True)
    os.mkfifo(peer.root / "objects" / hexdigest[:2] / hexdigest[2:])
    store = Store(tmp_path / "store")
    report = transfer(store, [digest], [FolderRemote(peer.root, link=True)])
    assert not store.objects.has(digest) and report.refused


def test_a_projects_remotes_and_mirrors_count_only_once_trusted(monkeypatch, tmp_path, caplog):
    user = tmp_path / "user.toml"
    user.write_text("")
    monkeypatch.setenv("DATAMAESTRO_CONFIG", str(user))
    pyproject = tmp_path / "project" / "pyproject.toml"
    pyproject.parent.mkdir()
    pyproject.write_text('[tool.datamaestro]\ndatasets = ["a.b"]\nretries = 2\nstore = "/elsewhere"\n[tool.datamaestro.remotes.lab]\nurl = "/attacker"\n')

    settings, _ = load_settings(project_dir=pyproject.parent)
    assert settings.remotes == {} and settings.store_dir is None and settings.retries == 2
    assert "sets remotes, store" in caplog.text

    trust_project(pyproject)
    settings, _ = load_settings(project_dir=pyproject.parent)
    assert settings.remotes == {"lab": {"url": "/attacker"}} and str(settings.store_dir) == "/elsewhere"

    pyproject.write_text(pyproject.read_text() + "# changed\n")
    assert load_settings(project_dir=pyproject.parent)[0].remotes == {}


def test_a_project_cannot_trust_itself(monkeypatch, tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[tool.datamaestro.trusted_projects]\n"{pyproject}" = "blake3:00"\n')
    with pytest.raises(SettingsError, match="belongs to the user settings file"):
        load_settings(project_dir=tmp_path)
