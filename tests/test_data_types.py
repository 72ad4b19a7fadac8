"""Data types: building configs, identifiers, preparation, CSV matrices."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np
import pytest
from experimaestro import Prepare

from datamaestro.data import Base, File, Folder, Generic
from datamaestro.data.csv import Generic as CSVGeneric
from datamaestro.data.csv import Matrix
from datamaestro.data.ml import FolderBased, Supervised
from datamaestro.data.tensor import IDX, Tensor
from datamaestro.errors import DatamaestroError, IntegrityError


def identifier(config) -> str:
    """The experimaestro identifier of a config, as a hex string."""
    return config.__xpm__.identifier.all.hex()


# --- building configs ------------------------------------------------------


def test_file_path(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hello")

    data = File.C(id="x", path=path)

    assert data.id == "x"
    assert data.path == path
    with data.open("r") as fp:
        assert fp.read() == "hello"


def test_folder_path(tmp_path):
    assert Folder.C(id="x", path=tmp_path).path == tmp_path


def test_supervised_splits(tmp_path):
    train = IDX.C(id="d.train@images", path=tmp_path / "train.idx")
    test = IDX.C(id="d.test@images", path=tmp_path / "test.idx")

    data = Supervised.C(id="d", train=train, test=test)

    assert data.train is train
    assert data.test is test
    assert data.validation is None


def test_supervised_split_optionality():
    # __getxpmtype__ builds the type on first use; the bare __xpmtype__
    # attribute is the parent's until then (experimaestro >= 2.7)
    arguments = Supervised.__getxpmtype__().arguments

    assert arguments["train"].required
    assert not arguments["validation"].required
    assert not arguments["test"].required


def test_folder_based(tmp_path):
    data = FolderBased.C(id="d", classes=["cat", "dog"], path=tmp_path)

    assert data.classes == ["cat", "dog"]
    assert data.path == tmp_path


def test_generic_keeps_undeclared_values(caplog):
    with caplog.at_level(logging.WARNING, logger="datamaestro.data"):
        data = Generic.C(id="g", url="https://example.org/x", size=3)

    assert (data.id, data.url, data.size) == ("g", "https://example.org/x", 3)
    assert "Generic should be avoided" in caplog.text


def test_base_is_an_experimaestro_prepare():
    assert issubclass(Base, Prepare)
    assert issubclass(IDX, Tensor) and issubclass(IDX, File)


# --- identifiers -------------------------------------------------------------

# Identifiers computed with the original datamaestro data types (same
# experimaestro version): a change here means experiments already run with
# datamaestro would no longer find their jobs.
ORIGINAL_IDENTIFIERS = {
    "file": "6dea9b4f3ec965774c2d41dd456a0169e2ced301228a2228ecc9c8fdf4e2449a",
    "folder": "2bb84768759e1f02800a4e895bbbf2272c99f7f4df102b4c4ea12ae8dbb0ffd2",
    "csvgeneric": "f8197aad0852e697a8a1a3aaec02ee920067f592e052be2c51f639c1b033a6b2",
    "matrix0": "221d64746295678ead1dd806fa359e13416162664dc9f8c1a4b44fd78d2720a0",
    "matrix": "f326c5f81c7b11fb3f8826bd775a3d8177cffa1d05ee02e29a6ef5247355c458",
    "supervised": "b5ca0ab1e35f7f868db906373617b43f508ca8351e2f71c291e4c7a5e36da3e2",
    "supervised_full": (
        "523e41ae7c6431eba87cd0e716181051fdadf5408e7a615d2335bd51096c7e7b"
    ),
    "idx": "330a55607520414b105bc8e72163ce240d9ec78301f85fb351fa063ea6bfce5d",
    "folderbased": "644deb5312cabfb6e1734b41c228d3b03dbec6784cf6f2735581a2b7c2d04c8a",
}


def configs() -> dict:
    """The configs whose identifiers ``ORIGINAL_IDENTIFIERS`` records."""
    file = File.C(id="x", path=Path("a"))
    return {
        "file": file,
        "folder": Folder.C(id="x", path=Path("b")),
        "csvgeneric": CSVGeneric.C(
            id="c", path=Path("a"), delimiter=";", ignore=2, names_row=1
        ),
        "matrix0": Matrix.C(id="x", path=Path("a")),
        "matrix": Matrix.C(
            id="x", path=Path("a"), names_row=0, size_row=1, target="t"
        ),
        "supervised": Supervised.C(id="s", train=file),
        "supervised_full": Supervised.C(
            id="s",
            train=file,
            validation=IDX.C(id="v", path=Path("v")),
            test=IDX.C(id="i", path=Path("z")),
        ),
        "idx": IDX.C(id="com.lecun.mnist@image", path=Path("z")),
        "folderbased": FolderBased.C(id="fb", classes=["a", "b"], path=Path(".")),
    }


@pytest.mark.parametrize("name", sorted(ORIGINAL_IDENTIFIERS))
def test_identifier_matches_original(name):
    assert identifier(configs()[name]) == ORIGINAL_IDENTIFIERS[name]


def test_identifier_is_stable():
    first = identifier(IDX.C(id="com.lecun.mnist@image", path=Path("a.idx")))
    second = identifier(IDX.C(id="com.lecun.mnist@image", path=Path("a.idx")))

    assert first == second


def test_identifier_follows_params():
    base = identifier(Matrix.C(id="m", path=Path("a")))

    assert identifier(Matrix.C(id="other", path=Path("a"))) != base
    assert identifier(Matrix.C(id="m", path=Path("a"), size_row=0)) != base
    assert identifier(Matrix.C(id="m", path=Path("a"), names_row=0)) != base


def test_identifier_ignores_meta():
    """Where the store put the bytes does not change what a task is."""
    assert identifier(File.C(id="x", path=Path("one"))) == identifier(
        File.C(id="x", path=Path("two"))
    )
    assert identifier(CSVGeneric.C(id="c", path=Path("a"), delimiter=";")) == (
        identifier(CSVGeneric.C(id="c", path=Path("a"), delimiter=","))
    )
    train_one = IDX.C(id="d.train@images", path=Path("one/train.idx"))
    train_two = IDX.C(id="d.train@images", path=Path("two/train.idx"))
    assert identifier(Supervised.C(id="d", train=train_one)) == identifier(
        Supervised.C(id="d", train=train_two)
    )


def test_identifier_ignores_default_splits():
    train = File.C(id="d@train", path=Path("a"))

    assert identifier(Supervised.C(id="d", train=train)) == identifier(
        Supervised.C(id="d", train=train, validation=None, test=None)
    )


# --- preparation, through the context ---------------------------------------


class FakeContext:
    """Stands for :class:`datamaestro.context.Context`: records the calls."""

    def __init__(self, dataset=None):
        self.prepared: list[str] = []
        self.dataset = dataset

    def prepare_data_id(self, data_id: str):
        self.prepared.append(data_id)

    def dataset_for_data_id(self, data_id: str):
        return self.dataset


@pytest.fixture
def fake_context():
    """Puts a FakeContext in scope as the session configs read."""
    from datamaestro import session

    context = FakeContext()
    token = session.enter(context)
    yield context
    session.leave(token)


def test_prepare_goes_through_the_context(fake_context):
    data = IDX.C(id="com.lecun.mnist.train@image", path=Path("a"))

    assert data.prepare() is data
    data.download()

    assert fake_context.prepared == ["com.lecun.mnist.train@image"] * 2


def test_dataset_information(fake_context):
    fake_context.dataset = types.SimpleNamespace(name="MNIST", description="Digits")

    info = File.C(id="com.lecun.mnist@image", path=Path("a")).dataset_information()

    assert info == {
        "id": "com.lecun.mnist@image",
        "name": "MNIST",
        "description": "Digits",
    }


def test_dataset_information_without_dataset(fake_context):
    info = File.C(id="adhoc@x", path=Path("a")).dataset_information()

    assert info == {"id": "adhoc@x", "name": "", "description": ""}


# --- CSV -----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_matrix_with_names_and_target(tmp_path):
    path = write(tmp_path, "# iris sample\nlength,width,class\n1.5,2,0\n3,4.25,1\n")

    data = Matrix.C(id="m", path=path, ignore=1, names_row=0, target="class")
    fields, values, targets = data.data()

    assert fields == ["length", "width", "class"]
    np.testing.assert_array_equal(values, [[1.5, 2.0], [3.0, 4.25]])
    np.testing.assert_array_equal(targets, [0.0, 1.0])
    assert data.columns() == fields


def test_matrix_plain(tmp_path):
    path = write(tmp_path, "1;2;3\n4;5;6\n\n")

    fields, values = Matrix.C(id="m", path=path, delimiter=";").data()

    assert fields == []
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [[1, 2, 3], [4, 5, 6]])


def test_matrix_size_row(tmp_path):
    path = write(tmp_path, "2,2\n1,2\n3,4\n")

    _, values = Matrix.C(id="m", path=path, size_row=0).data()

    np.testing.assert_array_equal(values, [[1, 2], [3, 4]])


def test_matrix_size_row_mismatch(tmp_path):
    path = write(tmp_path, "3,2\n1,2\n3,4\n")

    with pytest.raises(IntegrityError, match="announces 3x2"):
        Matrix.C(id="m", path=path, size_row=0).data()


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("1,2\n3,x\n", {}, r"line 2, column 2: 'x' is not a number"),
        ("1,2\n3\n", {}, r"line 2: 1 values where the first data row has 2"),
        ("a,b\n1,2\n", {"names_row": 0, "target": "c"}, r"no target column 'c'"),
        ("n,m\n1,2\n", {"size_row": 0}, r"size row should start with two"),
    ],
    ids=["not-a-number", "ragged", "unknown-target", "bad-size-row"],
)
def test_matrix_malformed(tmp_path, text, options, message):
    path = write(tmp_path, text)

    with pytest.raises(DatamaestroError, match=message) as raised:
        Matrix.C(id="m", path=path, **options).data()

    assert str(path) in str(raised.value)


def test_columns_without_names_row(tmp_path):
    assert CSVGeneric.C(id="c", path=write(tmp_path, "1,2\n")).columns() is None
