"""Derived resources (custom code) and MultipleDownloader through the real pipeline."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from datamaestro.data import File, Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.custom import Derived, derived
from datamaestro.download.multiple import MultipleDownloader
from datamaestro.download.single import FileDownloader
from datamaestro.errors import DefinitionError

TEXT = b"The quick brown Fox\njumps over the lazy Dog\n"

#: how many times each derivation really ran
CALLS: Counter = Counter()


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


class Tokenize(Derived):
    """One token per line, lower-cased when asked (the docstring's example, for real)."""

    def __init__(self, name, source, *, lower=False, **kwargs):
        super().__init__(name, {"text": source}, kind="file", **kwargs)
        self.lower = lower

    def params(self):
        return {"lower": self.lower}

    def prepare(self, inputs, output):
        CALLS["tokenize"] += 1
        with inputs["text"].open() as text, output.open("w") as tokens:
            for line in text:
                for token in line.split():
                    tokens.write((token.lower() if self.lower else token) + "\n")


def split_lines(inputs: dict, output: Path) -> None:
    """A tree: one file per line of the input."""
    CALLS["split"] += 1
    output.mkdir()
    (output / "lines").mkdir()
    for index, line in enumerate(inputs["text.txt"].read_text().splitlines()):
        (output / "lines" / f"{index}.txt").write_text(line)


def failing(inputs: dict, output: Path) -> None:
    output.mkdir()
    (output / "half").write_text("written before the failure")
    raise ValueError("the derivation failed")


def make_dataset(dataset_id: str, url: str, derive):
    """A dataset with a transient download and a resource derived from it by ``derive(TEXT)``."""

    @dataset(id=dataset_id)
    class Derivation(Dataset):
        TEXT = FileDownloader("text.txt", url, transient=True)
        OUT = derive(TEXT)

        def config(self) -> File:
            return File.C(path=self.OUT.path)

    return Derivation.__dataset__


@pytest.fixture
def text_url(http_server):
    (http_server.root / "text.txt").write_bytes(TEXT)
    return http_server.url("text.txt")


def test_file_derived_from_a_download(dm_context, text_url, http_server):
    definition = make_dataset("test.custom.tokens", text_url, lambda text: Tokenize("tokens.txt", text, lower=True))
    result = dm_context.pipeline().run(dm_context.request_of(definition))
    assert (definition.datapath / "tokens.txt").read_text().split() == TEXT.decode().lower().split()
    assert result.outputs["tokens.txt"].kind == "file"
    # the input was transient: only the derived file is in the dataset's folder
    assert not (definition.datapath / "text.txt").exists()
    assert list(dm_context.store.layout.tmp.iterdir()) == []
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert CALLS["tokenize"] == 1 and http_server.count("text.txt") == 1


def test_collected_transient_input_is_not_fetched_again(dm_context, text_url, http_server):
    from datamaestro.store.gc import gc

    definition = make_dataset("test.custom.collected", text_url, lambda text: Tokenize("tokens.txt", text, lower=False))
    dm_context.pipeline().run(dm_context.request_of(definition))
    report = gc(dm_context.store, grace_seconds=0)
    assert len(report.objects_deleted) == 1  # the transient download, which no view holds
    result = dm_context.pipeline().run(dm_context.request_of(definition))
    assert result.produced == [] and http_server.count("text.txt") == 1
    # were the derived output lost too, the transient input would be fetched again first
    from datamaestro.store.layout import remove_tree

    remove_tree(dm_context.store.path_of(result.outputs["tokens.txt"].digest))
    assert dm_context.pipeline().run(dm_context.request_of(definition)).produced == ["text.txt", "tokens.txt"]
    assert http_server.count("text.txt") == 2


def test_tree_derived(dm_context, text_url):
    definition = make_dataset("test.custom.lines", text_url, lambda text: derived("lines", [text], split_lines, kind="tree"))
    dm_context.pipeline().run(dm_context.request_of(definition))
    folder = definition.datapath / "lines" / "lines"
    assert (folder / "0.txt").read_text() == "The quick brown Fox"
    assert (folder / "1.txt").read_text() == "jumps over the lazy Dog"
    assert list(dm_context.store.layout.tmp.iterdir()) == []


def test_same_derivation_in_two_datasets_runs_once(dm_context, text_url, http_server):
    for dataset_id in ("test.custom.first", "test.custom.second"):
        definition = make_dataset(dataset_id, text_url, lambda text: Tokenize("tokens.txt", text))
        dm_context.pipeline().run(dm_context.request_of(definition))
        assert (definition.datapath / "tokens.txt").read_text().startswith("The\n")
    assert CALLS["tokenize"] == 1
    assert http_server.count("text.txt") == 1


def test_version_and_params_change_the_recipe(dm_context, text_url):
    variants = [
        ("test.custom.v1", lambda text: Tokenize("tokens.txt", text)),
        ("test.custom.v2", lambda text: Tokenize("tokens.txt", text, version="2")),
        ("test.custom.lower", lambda text: Tokenize("tokens.txt", text, lower=True, version="2")),
        ("test.custom.again", lambda text: Tokenize("tokens.txt", text, version="2")),
    ]
    for dataset_id, derive in variants:
        dm_context.pipeline().run(dm_context.request_of(make_dataset(dataset_id, text_url, derive)))
    assert CALLS["tokenize"] == 3


def test_failed_derivation_leaves_nothing(dm_context, text_url):
    definition = make_dataset("test.custom.failing", text_url, lambda text: derived("out", [text], failing, kind="tree"))
    with pytest.raises(ValueError, match="the derivation failed"):
        dm_context.pipeline().run(dm_context.request_of(definition))
    assert list(dm_context.store.layout.tmp.iterdir()) == []
    assert not definition.datapath.exists()


def test_prepare_must_write_its_output(dm_context, text_url):
    definition = make_dataset("test.custom.lazy", text_url, lambda text: derived("out.txt", [text], do_nothing))
    with pytest.raises(DefinitionError, match="wrote no file"):
        dm_context.pipeline().run(dm_context.request_of(definition))


def do_nothing(inputs, output):
    """Writes nothing (a bug in a plugin)."""


def test_definition_errors():
    text = FileDownloader("text.txt", "https://example.org/text.txt")
    with pytest.raises(DefinitionError, match="named function"):
        derived("out", [text], lambda inputs, output: None)
    with pytest.raises(DefinitionError, match="kind"):
        derived("out", [text], split_lines, kind="folder")
    with pytest.raises(DefinitionError, match="not a resource"):
        derived("out", ["text.txt"], split_lines)

    class Opaque(Derived):
        def params(self):
            return {"object": object()}

    with pytest.raises(DefinitionError, match="JSON"):
        Opaque("out", [text]).recipe()


def test_recipe_names_class_function_and_roles():
    text = FileDownloader("text.txt", "https://example.org/text.txt")
    recipe = Tokenize("tokens.txt", text, lower=True, version="3").recipe()
    assert recipe["class"].endswith("test_custom.Tokenize")
    assert (recipe["version"], recipe["params"], recipe["roles"]) == ("3", {"lower": True}, {"text": "text.txt"})
    assert derived("lines", [text], split_lines, kind="tree").recipe()["function"].endswith("test_custom.split_lines")


def test_multiple_downloader(dm_context, http_server):
    import gzip

    (http_server.root / "train.txt.gz").write_bytes(gzip.compress(b"train\n"))
    (http_server.root / "test.txt").write_bytes(b"test\n")

    @dataset(id="test.custom.multiple")
    class Splits(Dataset):
        SPLITS = MultipleDownloader("splits", {"train.txt": http_server.url("train.txt.gz"), "qrels/test.txt": http_server.url("test.txt")})

        def config(self) -> Folder:
            return Folder.C(path=self.SPLITS.path)

    definition = Splits.__dataset__
    dm_context.pipeline().run(dm_context.request_of(definition))
    dm_context.pipeline().run(dm_context.request_of(definition))
    folder = definition.datapath / "splits"
    assert (folder / "train.txt").read_bytes() == b"train\n"
    assert (folder / "qrels" / "test.txt").read_bytes() == b"test\n"
    assert http_server.count("train.txt.gz") == 1
    assert list(dm_context.store.layout.tmp.iterdir()) == []
    with pytest.raises(DefinitionError):
        MultipleDownloader("bad", {"../x": "https://example.org/x"})
    with pytest.raises(DefinitionError):
        MultipleDownloader("bad", {"a": "https://example.org/a", "a/b": "https://example.org/b"})
