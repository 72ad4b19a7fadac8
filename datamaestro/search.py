"""Search terms over the dataset index.

Every term must match (AND). A term is either free text, matched without
case against the id, name, description, aliases, tags and tasks, or
``field:value`` with field ``tag``, ``task``, ``repo`` or ``type``
(``type:`` matches the end of the config type's qualified name, ``type:IDX``
or ``type:tensor.IDX``). A tag or task matches in the singular or the plural
(``tag:image`` finds ``images``).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from .errors import UsageError
from .registry import IndexEntry

FIELDS = ("tag", "task", "repo", "type")


def _word(value: str) -> str:
    """A tag or task as compared: lower case, singular (``Images`` -> ``image``)."""
    value = value.strip().lower()
    return value[:-1] if value.endswith("s") and not value.endswith("ss") else value


def _field_matcher(field: str, value: str) -> Callable[[IndexEntry], bool]:
    value = value.lower()
    if field == "tag":
        return lambda e: any(_word(value) == _word(t) for t in e.tags)
    if field == "task":
        return lambda e: any(_word(value) == _word(t) for t in e.tasks)
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
                or any(text in a.lower() for a in (*e.aliases, *e.tags, *e.tasks))
            )
    return predicates


def search(entries: Iterable[IndexEntry], terms: Iterable[str]) -> list[IndexEntry]:
    """The entries matching every term, sorted by id."""
    predicates = parse_terms(terms)
    return sorted((e for e in entries if all(p(e) for p in predicates)), key=lambda e: e.id)


def no_match_hint(entries: Iterable[IndexEntry], terms: Iterable[str]) -> str | None:
    """What to try when no entry matches: the known values close to a ``tag:``, ``task:`` or ``repo:`` that none has."""
    import difflib

    entries = list(entries)
    known = {
        "tag": {t for e in entries for t in e.tags},
        "task": {t for e in entries for t in e.tasks},
        "repo": {e.repository for e in entries},
    }
    for term in terms:
        field, colon, value = term.partition(":")
        if not colon and not any(p(e) for p in parse_terms([term]) for e in entries):
            # free text none matches: the words of ids, aliases, names, tags and tasks close to it (a typo)
            words = {w for e in entries for text in (e.id, *e.aliases, e.name or "", *e.tags, *e.tasks) for w in re.split(r"[\s._/-]+", text.lower()) if len(w) > 2}
            close = difflib.get_close_matches(term.lower(), sorted(words), n=3, cutoff=0.7)
            if close:
                return f"no dataset mentions {term!r}; did you mean {' or '.join(close)}?"
            continue
        if not colon or field not in known:
            continue
        values = known[field]
        if any(_field_matcher(field, value)(e) for e in entries):
            continue
        close = difflib.get_close_matches(value.lower(), sorted(values, key=str.lower), n=3, cutoff=0.5)
        close += [v for v in sorted(values) if value.lower() in v.lower() and v not in close][: 3 - len(close)]
        if close:
            return f"no dataset has {field} {value!r}; did you mean {' or '.join(f'{field}:{v}' for v in close)}?"
        return f"no dataset has {field} {value!r}"
    return None
