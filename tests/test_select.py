"""variants.select_dataset: the definition, the axis values and the lock entry id of an id, in one call (what Context.request starts from)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from datamaestro.errors import VariantError
from datamaestro.variants import AxesVariants, Axis, select_dataset


class Axes(AxesVariants):
    size = Axis(["small", "large"], default="small")
    lang = Axis(["en", "fr"])


FAMILY = SimpleNamespace(id="org.family", variants=Axes())
PLAIN = SimpleNamespace(id="org.plain", variants=None)


def find(base_id: str):
    """The registry of this test: an alias names the family too."""
    return {"org.family": FAMILY, "family": FAMILY, "org.plain": PLAIN}[base_id]


def test_family_selector_gives_values_and_canonical_entry():
    definition, values, entry_id = select_dataset("family[lang=fr, size=large]", find)
    assert definition is FAMILY
    assert values == {"size": "large", "lang": "fr"}
    assert entry_id == select_dataset("org.family[size=large,lang=fr]", find)[2]
    assert entry_id.startswith("org.family[") and "lang=fr" in entry_id


def test_defaults_filled_in_from_a_variant_kwarg():
    _, values, entry_id = select_dataset("org.family", find, variant={"lang": "en"})
    assert values == {"size": "small", "lang": "en"}
    assert entry_id == "org.family" + FAMILY.variants.format_selector(values)


def test_plain_dataset_is_its_own_entry():
    assert select_dataset(" org.plain ", find) == (PLAIN, {}, "org.plain")


@pytest.mark.parametrize(
    "name, variant, message",
    [
        ("org.plain[lang=fr]", None, "does not declare variants"),
        ("org.plain", {"lang": "fr"}, "does not declare variants"),
        ("family[lang=fr]", {"lang": "en"}, "both a selector"),
        ("family[lang=de]", None, "lang"),
        ("family[lang=fr", None, "malformed selector"),
    ],
)
def test_refused(name, variant, message):
    with pytest.raises(VariantError, match=message):
        select_dataset(name, find, variant=variant)


def test_data_config_id_names_its_variant_and_a_variant_kwarg_wins():
    owners = []

    def owner(data_id: str):
        owners.append(data_id)
        return FAMILY

    _, values, entry_id = select_dataset("org.family[lang=fr]@repo", owner, of_data_config=True)
    assert owners == ["org.family[lang=fr]@repo"]  # the finder gets the whole id (two repositories may define one id)
    assert values["lang"] == "fr" and entry_id == "org.family" + FAMILY.variants.format_selector(values)
    _, values, _ = select_dataset("org.family[lang=fr]@repo", owner, variant={"lang": "en"}, of_data_config=True)
    assert values["lang"] == "en"


def test_data_config_of_a_plain_dataset_has_no_selector():
    assert select_dataset("org.plain.train@repo", lambda _: PLAIN, of_data_config=True) == (PLAIN, {}, "org.plain")
