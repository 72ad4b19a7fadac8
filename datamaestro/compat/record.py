"""Records: a container holding at most one item per item family (the original API).

The data types of ``datamaestro-text`` and ``datamaestro-ir`` describe a
document or a topic as a record of items (an id item, a text item...).
An item *family* is the most generic subclass of :class:`Item` an item
class derives from: a record holds at most one item per family, and
``record[SomeItem]`` finds the item of ``SomeItem``'s family if it is an
instance of ``SomeItem``::

    class IDItem(Item): ...            # a family
    class TextItem(Item): ...          # another one
    class TitledText(TextItem): ...    # same family as TextItem

    record = Record(IDItem(...), TitledText(...))
    record[TextItem]                   # the TitledText item
    record_type(IDItem, TextItem)      # a record type, to validate records

New code can use plain dicts or ``typing.TypedDict`` instead.
"""

from __future__ import annotations

from typing import Dict, Optional, Type, TypeVar


class Item:
    """Base class of record items."""

    @classmethod
    def __get_base__(cls) -> type:
        """The item's family: its most generic ancestor below :class:`Item` (cached)."""
        cached = cls.__dict__.get("_family")
        if cached is not None:
            return cached
        family = cls
        for ancestor in cls.__mro__:
            if ancestor is not Item and isinstance(ancestor, type) and issubclass(ancestor, Item):
                family = ancestor
        cls._family = family
        return family


T = TypeVar("T", bound=Item)
Items = Dict[Type[Item], Item]


def _missing(key: type, items: Items) -> KeyError:
    present = ", ".join(f"{k.__module__}.{k.__qualname__}" for k in items) or "none"
    return KeyError(f"no item of type {key.__qualname__} in the record (items: {present})")


class Record:
    """Items by family.

    :param items: the items, or one dict ``{family: item}``
    :param override: a later item replaces an earlier one of the same family
        (else it is an error)
    """

    def __init__(self, *items, override: bool = False):
        if len(items) == 1 and isinstance(items[0], dict):
            self.items: Items = items[0]
            return
        self.items = {}
        for item in items:
            family = item.__get_base__()
            if family in self.items and not override:
                raise RuntimeError(f"the record already has an item of family {family.__qualname__} ({type(item).__qualname__})")
            self.items[family] = item

    def __getitem__(self, key: Type[T]) -> T:
        """The item of ``key``'s family, if it is a ``key``."""
        item = self.items.get(key.__get_base__())
        if item is None or not isinstance(item, key):
            raise _missing(key, self.items)
        return item

    def get(self, key: Type[T]) -> Optional[T]:
        """The item, or None."""
        try:
            return self[key]
        except KeyError:
            return None

    def has(self, key: type) -> bool:
        """Whether the record has an item of ``key``'s family."""
        return key.__get_base__() in self.items

    def update(self, *items: Item, target: "RecordType | None" = None) -> "Record":
        """A new record with these items added or replaced."""
        updated = dict(self.items)
        for item in items:
            updated[item.__get_base__()] = item
        return Record(updated)

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k.__module__}.{k.__qualname__}: {v}" for k, v in self.items.items()) + "}"

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k.__module__}.{k.__qualname__}: {v!r}" for k, v in self.items.items()) + "}"


class RecordType:
    """The item types a record must have (exactly one per family).

    :param item_types: the item classes
    """

    def __init__(self, *item_types: type):
        self.item_types = frozenset(item_types)
        self.mapping = {item_type.__get_base__(): item_type for item_type in item_types}

    def __repr__(self) -> str:
        return f"Record({','.join(sorted(t.__name__ for t in self.item_types))})"

    def contains(self, other: "RecordType") -> bool:
        """Whether every item type of ``other`` has a compatible (same or more specific) one here."""
        if len(self.item_types) != len(other.item_types):
            return False
        for item_type in other.item_types:
            mine = self.mapping.get(item_type.__get_base__())
            if mine is None or not issubclass(mine, item_type):
                return False
        return True

    def sub(self, *item_types: type) -> "RecordType":
        """A record type with these item types added or replacing those of their family."""
        merged = dict(self.mapping)
        for item_type in item_types:
            merged[item_type.__get_base__()] = item_type
        return RecordType(*merged.values())

    def has(self, item_type: type) -> bool:
        """Whether records of this type have ``item_type`` items."""
        mine = self.mapping.get(item_type.__get_base__())
        return mine is not None and issubclass(mine, item_type)

    def validate(self, record: Record) -> Record:
        """Checks that the record has exactly this type's items; returns it."""
        for item_type in self.item_types:
            record[item_type]
        if len(record.items) != len(self.item_types):
            extra = [item for family, item in record.items.items() if family not in self.mapping]
            raise KeyError(f"the record of type {self} has items of no declared type: {extra}")
        return record

    def __call__(self, *items: Item) -> Record:
        """A validated record of these items."""
        return self.validate(Record(*items))


def record_type(*item_types: type) -> RecordType:
    """A :class:`RecordType` of these item types."""
    return RecordType(*item_types)


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.record')
