"""Search terms over the dataset index.

Every term must match (AND). A term is either free text, matched without
case against the id, name and description, or ``field:value`` with field
``tag``, ``task``, ``repo`` or ``type`` (``type:`` matches the end of the
config type's qualified name, ``type:IDX`` or ``type:tensor.IDX``).
"""

from __future__ import annotations

from typing import Callable, Iterable

from .errors import UsageError
from .registry import IndexEntry

FIELDS = ("tag", "task", "repo", "type")


def _field_matcher(field: str, value: str) -> Callable[[IndexEntry], bool]:
    value = value.lower()
    if field == "tag":
        return lambda e: any(value == t.lower() for t in e.tags)
    if field == "task":
        return lambda e: any(value == t.lower() for t in e.tasks)
    if field == "repo":
        return lambda e: e.repository.lower() == value
    return lambda e: bool(e.type) and (e.type.lower() == value or e.type.lower().endswith("." + value))


def parse_terms(terms: Iterable[str]) -> list[Callable[[IndexEntry], bool]]:
    """Turns search terms into predicates; raises UsageError on an unknown field."""
    predicates = []
    for term in terms:
        field, colon, value = term.partition(":")
        if colon and field in FIELDS:
            if not value:
                raise UsageError(f"search term {term!r} has no value", hint=f"write {field}:VALUE")
            predicates.append(_field_matcher(field, value))
        elif colon and field.isidentifier() and "/" not in value:
            raise UsageError(
                f"unknown search field {field!r} in {term!r}", hint=f"fields are {', '.join(f + ':' for f in FIELDS)}"
            )
        else:
            text = term.lower()
            predicates.append(
                lambda e, text=text: text in e.id.lower() or text in e.name.lower() or text in e.description.lower()
                or any(text in a.lower() for a in e.aliases)
            )
    return predicates


def search(entries: Iterable[IndexEntry], terms: Iterable[str]) -> list[IndexEntry]:
    """The entries matching every term, sorted by id."""
    predicates = parse_terms(terms)
    return sorted((e for e in entries if all(p(e) for p in predicates)), key=lambda e: e.id)
