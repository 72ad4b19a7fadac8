"""Variant families and the errors callers catch, as datamaestro 1.16 behaves.

Written from 1.16's documented and observable behaviour (its own tests and
the published datamaestro-ir tests, which expect for instance
``pytest.raises(ValueError, match="not in axis domain")``), against this
design: the errors are ``DatamaestroError`` (message and hint) and derive
from the built-in exception 1.16 raised, whose wording starts the message.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Any, Iterator

import pytest
from experimaestro import Param

from datamaestro.api import get_dataset, prepare_dataset
from datamaestro.data import Base
from datamaestro.definitions import Dataset, dataset
from datamaestro.errors import ChecksumError, DatamaestroError, DefinitionError, IntegrityError, VariantError
from datamaestro.repository import Repository
from datamaestro.variants import MISSING, AxesVariants, Axis, Variants, split_id_selector


class Named(Base):
    """A data config with one parameter."""

    name: Param[str]


class FamilyAxes(AxesVariants):
    name = Axis(["a", "b"])
    streaming = Axis([False, True], default=True, type=bool)
    min_score = Axis(type=float, default=None)


@dataset(id="test.compat.variants.family", variants=FamilyAxes)
class Family(Dataset):
    """A family of variants"""

    def config(self, name, streaming, min_score) -> Named:
        return Named.C(name=name)


@dataset(id="test.compat.variants.flat")
class Flat(Dataset):
    """A dataset without variants"""

    def config(self) -> Named:
        return Named.C(name="fixed")


# -- errors


@pytest.mark.parametrize(
    "selector, message",
    [
        ("name=z", "value 'z' not in axis domain"),
        ("nme=a", "unknown variant axis: 'nme'"),
        ("name", "malformed selector fragment: 'name'"),
        ("name=a,streaming=maybe", "cannot coerce 'maybe' to bool"),
    ],
)
def test_selector_errors_are_value_errors_with_the_original_wording(dm_context, selector, message):
    variants = Family.__dataset__.variants
    with pytest.raises(ValueError) as caught:
        variants.resolve(**variants.parse_selector(selector))
    error = caught.value
    assert isinstance(error, DatamaestroError) and isinstance(error, VariantError)
    assert error.message.startswith(message)
    assert error.hint  # ours: what to do


def test_resolve_errors(dm_context):
    variants = Family.__dataset__.variants
    with pytest.raises(ValueError, match="unknown variant axes: \\['bogus'\\]"):
        variants.resolve(name="a", bogus=1)
    with pytest.raises(ValueError, match="missing required variant axis: 'name'"):
        variants.resolve()
    with pytest.raises(ValueError, match="not in axis domain"):
        Family.__dataset__.prepare(variant_kwargs={"name": "not-in-domain"})


def test_a_bad_variants_argument_is_a_type_error():
    with pytest.raises(TypeError, match="must be a Variants instance or subclass") as caught:
        dataset(variants=dict)(type("Bad", (Dataset,), {"config": lambda self: None}))
    assert isinstance(caught.value, DefinitionError)
    with pytest.raises(TypeError):
        AxesVariants(name=["a", "b"])
    with pytest.raises(TypeError):
        Axis(("a", "b"))


def test_hash_check_raises_an_io_error_on_a_mismatch(tmp_path):
    from datamaestro.utils import HashCheck

    path = tmp_path / "file"
    path.write_bytes(b"hello")
    assert HashCheck(hashlib.md5(b"hello").hexdigest()).check(path) is None
    with pytest.raises(IOError) as caught:
        HashCheck(hashlib.md5(b"other").hexdigest()).check(path)
    assert isinstance(caught.value, ChecksumError) and isinstance(caught.value, IntegrityError)
    with pytest.raises(FileNotFoundError):
        HashCheck(hashlib.md5(b"hello").hexdigest()).check(tmp_path / "missing")


def test_glob_checker_answers_true_or_false(tmp_path):
    from datamaestro.download.links import GlobChecker

    assert GlobChecker("*.txt").compute(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="No files matching"):
        GlobChecker("*.txt").check(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    assert GlobChecker("*.txt").check(tmp_path) is True
    digest = GlobChecker("*.txt").compute(tmp_path)
    assert GlobChecker("*.txt", digest).check(tmp_path) is True
    assert GlobChecker("*.txt", "deadbeef").check(tmp_path) is False
    # .gz files are hashed on their decompressed bytes
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"content"))
    expected = hashlib.md5(hashlib.md5(b"content").hexdigest().encode()).hexdigest()
    assert GlobChecker("*.gz").compute(tmp_path) == expected


# -- the variants module


def test_axis_enumerable_and_declared_axes():
    assert Axis(["a"]).enumerable and not Axis(type=int, default=0).enumerable
    assert Axis().default is MISSING
    variants = FamilyAxes()
    assert variants.axes["name"] is FamilyAxes.name
    variants.axes.pop("name")  # a copy
    assert "name" in variants.axes
    assert set(AxesVariants(extra=Axis([1])).axes) == {"extra"}


def test_variants_is_abstract_and_matches_through_enumerate():
    with pytest.raises(TypeError):
        Variants()

    class Presets(Variants):
        def resolve(self, **values: Any) -> dict[str, Any]:
            return {"preset": values.get("preset", "small")}

        def parse_selector(self, selector: str) -> dict[str, Any]:
            return {}

        def format_selector(self, values) -> str:
            return ""

        def enumerate(self) -> Iterator[dict[str, Any]]:
            yield {"preset": "small"}
            yield {"preset": "Large", "other": None}

    assert Presets().matches("large") and Presets().matches("SMA")
    assert not Presets().matches("medium")
    assert FamilyAxes().matches("b") and not FamilyAxes().matches("z")


def test_split_id_selector_as_the_original():
    assert split_id_selector("foo.bar") == ("foo.bar", "")
    assert split_id_selector("  foo.bar  ") == ("foo.bar", "")
    assert split_id_selector("foo.bar[name=x]") == ("foo.bar", "name=x")
    assert split_id_selector("foo.bar[]") == ("foo.bar", "")
    assert split_id_selector("foo [name=x, streaming=true]") == ("foo", "name=x, streaming=true")
    with pytest.raises(ValueError, match="malformed selector"):
        split_id_selector("foo[name=x")


def test_repository_search_ignores_the_selector(dm_context):
    repository = dm_context.registry.repositories()["image"]
    assert Repository.search(repository, "com.lecun.mnist[name=a]").id == "com.lecun.mnist"
    assert Repository.search(repository, "no.such.id[name=x]") is None


def test_variant_kwargs_and_flat_datasets(dm_context):
    family = Family.__dataset__
    config = prepare_dataset(Family, variant={"name": "b"})
    assert config.id == "test.compat.variants.family[min_score=null,name=b,streaming=true]"
    # the wrapper hands back one config per variant, the same object each time
    assert family.prepare(variant_kwargs={"name": "a"}) is family.prepare(variant_kwargs={"name": "a", "streaming": True})
    assert family.prepare(variant_kwargs={"name": "a"}) is not family.prepare(variant_kwargs={"name": "b"})
    # a flat dataset ignores variant_kwargs, and returns its one config
    flat = Flat.__dataset__
    assert flat.prepare(variant_kwargs={"something": "x"}) is flat.prepare()
    assert flat.prepare().name == "fixed"
    assert prepare_dataset(Flat, variant={}).name == "fixed"
    with pytest.raises(ValueError, match="does not declare variants"):
        prepare_dataset(Flat, variant={"something": "x"})


def test_selector_and_variant_both_given(mnist_server, dm_context):
    with pytest.raises(ValueError, match="both a selector"):
        get_dataset("com.lecun.mnist[name=a]", variant={"name": "b"})
    with pytest.raises(ValueError, match="does not declare variants but selector"):
        get_dataset("com.lecun.mnist[name=a]")
