"""Dataset families: one definition, several variants chosen by axes.

A family declares its axes with :class:`AxesVariants`; a variant is named
by a selector after the id, ``family.id[name=agnews,streaming=false]``.
Axes left out take their defaults. The data id of a variant is the family
id plus the canonical selector (axes sorted by name; axes with
``in_id=False`` never appear, axes with ``elide_default=True`` not when at
their default), as in the original datamaestro, so that experimaestro
identifiers stay the same::

    class Sizes(AxesVariants):
        size = Axis(["small", "large"], default="small")

    @dataset(variants=Sizes)
    class Corpus(Dataset):
        def config(self, size) -> File: ...

    get_dataset("org.example.corpus[size=large]")
"""

from __future__ import annotations

import inspect
import itertools
import typing
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterator, Mapping

from .errors import VariantError


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: the default of an axis that has none (so that None stays a valid default)
MISSING: Any = _Missing()


def split_id_selector(dataset_id: str) -> tuple[str, str]:
    """``"a.b[x=1]"`` -> ``("a.b", "x=1")``; ``"a.b"`` -> ``("a.b", "")`` (as the original datamaestro).

    Whitespace around the id is stripped, and the brackets are dropped
    (``parse_selector`` accepts the selector with or without them).

    :raises VariantError: a ``[`` without the closing ``]``
    """
    query = dataset_id.strip()
    index = query.find("[")
    if index < 0:
        return query, ""
    if not query.endswith("]"):
        raise VariantError(f"malformed selector: {dataset_id!r} (a variant selector ends with ']')", hint="e.g. family.id[axis=value,other=value]")
    return query[:index].strip(), query[index + 1 : -1]


def select_dataset(name: str, find: Callable[[str], Any], *, variant: Mapping[str, Any] | None = None, of_data_config: bool = False) -> tuple[Any, dict[str, Any], str]:
    """What an id asks for, in one pass: the definition, the variant's axis values (defaults filled in), and the id its lock entry has.

    ``family[b=2, a=1]`` -> ``(family, {"a": 1, "b": 2}, "org.family[a=1,b=2]")``;
    a dataset without variants -> ``(definition, {}, definition.id)``.

    :param name: an id or alias, with an optional selector; or a data
        config's id (``of_data_config``)
    :param find: the definition of an id without its selector (it has
        ``id`` and ``variants``); of a data config's id, called with that id
    :param variant: axis values given apart, instead of a selector
        (a data config's wins over its id's)
    :raises VariantError: a selector and ``variant`` both given, a variant
        for a dataset without variants, an unknown axis or value
    """
    if of_data_config:
        definition = find(name)
        shown = definition.id
        # only a family's data config names its variant in its id: family.id[axis=value]@repo
        selector = split_id_selector(name.partition("@")[0])[1].partition("]")[0] if definition.variants is not None else ""
    else:
        shown, selector = split_id_selector(name)
        definition = find(shown)
        if selector and variant is not None:
            raise VariantError(f"dataset {shown!r} received both a selector {selector!r} and a `variant` kwarg; pass only one", hint=f"use {shown}[{selector}] alone")
    variants = definition.variants
    if variants is None:
        if selector:
            raise VariantError(f"dataset {shown!r} does not declare variants but selector {selector!r} was supplied", hint=f"use {shown}")
        if variant:
            raise VariantError(f"dataset {shown!r} does not declare variants but `variant` kwarg {variant!r} was supplied", hint="drop variant=")
        return definition, {}, definition.id
    values = variants.resolve(**(dict(variant) if variant is not None else variants.parse_selector(selector)))
    return definition, values, definition.id + variants.format_selector(values)


class Axis:
    """One dimension of a family.

    :param domain: the allowed values (None: any value of ``type``)
    :param type: the type selector strings are converted to (``str``,
        ``int``, ``float``, ``bool`` or ``Optional[...]`` of one); inferred
        from the domain when all its values have one type
    :param default: the value when a selector omits the axis (none: required)
    :param description: a short text for listings
    :param elide_default: leave the axis out of the data id when at its default
    :param in_id: never put the axis in the data id (a flag that does not
        change the data, such as a loading mode)
    """

    def __init__(
        self,
        domain: list | None = None,
        *,
        type: Any = None,
        default: Any = MISSING,
        description: str = "",
        elide_default: bool = False,
        in_id: bool = True,
    ):
        if domain is not None and not isinstance(domain, list):
            raise TypeError(f"an axis domain is a list of values or None, not {domain!r}")
        if elide_default and default is MISSING:
            raise ValueError("Axis(elide_default=True) needs a default")
        self.domain = list(domain) if domain is not None else None
        if type is None and self.domain:
            kinds = {builtin_type(value) for value in self.domain if value is not None}
            type = kinds.pop() if len(kinds) == 1 else None
        self.type = type
        self.default = default
        self.description = description
        self.elide_default = elide_default
        self.in_id = in_id

    @property
    def enumerable(self) -> bool:
        """Whether the axis has a finite list of values (a domain)."""
        return self.domain is not None

    @property
    def has_default(self) -> bool:
        """Whether a selector may omit the axis."""
        return self.default is not MISSING

    def coerce(self, raw: Any) -> Any:
        """Converts a selector's text to the axis' type (``null``/``none`` is None)."""
        if raw is None or (isinstance(raw, str) and raw.lower() in ("null", "none")):
            return None
        target = self.type
        if typing.get_origin(target) is typing.Union:
            inner = [t for t in typing.get_args(target) if t is not builtin_type(None)]
            target = inner[0] if len(inner) == 1 else None
        if target is None or isinstance(raw, target):
            return raw
        if target is bool:
            word = str(raw).lower()
            if word in ("true", "yes", "1"):
                return True
            if word in ("false", "no", "0"):
                return False
            raise VariantError(f"cannot coerce {raw!r} to bool", hint="true/false, yes/no or 1/0")
        return target(raw)

    def validate(self, value: Any) -> None:
        """Raises :class:`VariantError` (a ``ValueError``) for a value outside the domain; open axes accept anything."""
        if self.domain is not None and value not in self.domain:
            raise VariantError(f"value {value!r} not in axis domain {self.domain!r}", hint=f"one of {', '.join(_format(v) for v in self.domain)}")

    def __repr__(self) -> str:
        parts = []
        if self.domain is not None:
            parts.append(f"domain={self.domain!r}")
        if self.type is not None:
            parts.append(f"type={self.type!r}")
        if self.has_default:
            parts.append(f"default={self.default!r}")
        return "Axis(" + ", ".join(parts) + ")"


builtin_type = type


class Variants(ABC):
    """What a family's variant space must provide (see :class:`AxesVariants`); abstract.

    Other schemes than a product of axes (named presets, say) implement
    these four methods.
    """

    @abstractmethod
    def resolve(self, **values: Any) -> dict[str, Any]:
        """Every axis' value, defaults filled in; raises :class:`VariantError` on unknown or missing axes."""

    @abstractmethod
    def parse_selector(self, selector: str) -> dict[str, Any]:
        """``"[k=v,...]"`` (brackets optional) -> values converted to the axes' types."""

    @abstractmethod
    def format_selector(self, values: Mapping[str, Any]) -> str:
        """The canonical ``"[k=v,...]"`` of a variant ('' when no axis shows in ids)."""

    @abstractmethod
    def enumerate(self) -> Iterator[dict[str, Any]]:
        """The variants that can be listed."""

    def matches(self, query: str) -> bool:
        """Whether ``query`` is a substring (case-insensitive) of a value of a listed variant (what search uses)."""
        query = query.lower()
        return any(value is not None and query in str(value).lower() for variant in self.enumerate() for value in variant.values())

    def document(self) -> str:
        """A Markdown description of the variant space (the class docstring by default)."""
        doc = type(self).__doc__
        return inspect.cleandoc(doc) if doc else ""


class AxesVariants(Variants):
    """The cartesian product of independent axes, declared as class attributes or keywords::

        class Sizes(AxesVariants):
            size = Axis(["small", "large"], default="small")

        Sizes()  # or AxesVariants(size=Axis([...]))
    """

    #: the axes declared as class attributes (and inherited), by name
    _class_axes: ClassVar[dict[str, Axis]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared: dict[str, Axis] = {}
        for base in reversed(cls.__mro__):
            declared.update({key: value for key, value in vars(base).items() if isinstance(value, Axis)})
        cls._class_axes = declared

    def __init__(self, **axes: Axis):
        for key, value in axes.items():
            if not isinstance(value, Axis):
                raise TypeError(f"axis {key!r} must be an Axis instance (got {value!r})")
        self._axes: dict[str, Axis] = {**type(self)._class_axes, **axes}

    @property
    def axes(self) -> dict[str, Axis]:
        """The declared :class:`Axis` objects by name (a copy: changing it changes nothing)."""
        return dict(self._axes)

    def _error(self, message: str) -> VariantError:
        return VariantError(message, hint=f"axes: {', '.join(self._axes)}; e.g. id[{self.example()}]")

    def example(self) -> str:
        """A selector body naming every required axis with its first value."""
        parts = []
        for key, axis in self._axes.items():
            if not axis.has_default:
                value = axis.domain[0] if axis.domain else "..."
                parts.append(f"{key}={_format(value)}")
        return ",".join(parts)

    def resolve(self, **values: Any) -> dict[str, Any]:
        """Every axis' value, defaults filled in.

        :raises VariantError: an unknown axis, a value outside its domain, a
            required axis missing (a ``ValueError`` too)
        """
        unknown = [key for key in values if key not in self._axes]
        if unknown:
            raise self._error(f"unknown variant axes: {unknown!r}; known axes: {list(self._axes)!r}")
        resolved = {}
        for key, axis in self._axes.items():
            if key in values:
                try:
                    axis.validate(values[key])
                except VariantError as exc:
                    raise self._error(f"{exc.message} (axis {key!r})") from None
                resolved[key] = values[key]
            elif axis.has_default:
                resolved[key] = axis.default
            else:
                raise self._error(f"missing required variant axis: {key!r}")
        return resolved

    def parse_selector(self, selector: str) -> dict[str, Any]:
        """``"[k=v,...]"`` (brackets optional) -> values, converted to each axis' type."""
        body = (selector or "").strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1]
        values = {}
        for part in (p.strip() for p in body.split(",")):
            if not part:
                continue
            key, equal, raw = part.partition("=")
            key = key.strip()
            if not equal:
                raise self._error(f"malformed selector fragment: {part!r} (expected 'key=value')")
            if key not in self._axes:
                raise self._error(f"unknown variant axis: {key!r}; known axes: {list(self._axes)!r}")
            try:
                values[key] = self._axes[key].coerce(raw.strip())
            except VariantError as exc:
                raise self._error(f"{exc.message} (axis {key!r})") from None
            except (TypeError, ValueError) as exc:
                raise self._error(f"cannot coerce {raw.strip()!r} for axis {key!r}: {exc}") from None
        return values

    def format_selector(self, values: Mapping[str, Any]) -> str:
        """The canonical selector: sorted axes, without ``in_id=False`` ones and elided defaults."""
        resolved = self.resolve(**values)
        parts = []
        for key in sorted(resolved):
            axis = self._axes[key]
            value = resolved[key]
            if not axis.in_id or (axis.elide_default and value == axis.default):
                continue
            parts.append(f"{key}={_format(value)}")
        return f"[{','.join(parts)}]" if parts else ""

    def enumerate(self) -> Iterator[dict[str, Any]]:
        """Every combination of the axes with a domain (open axes at their default, those without one left out)."""
        fixed = {k: a.default for k, a in self._axes.items() if a.domain is None and a.has_default}
        listed = [(k, a.domain) for k, a in self._axes.items() if a.domain is not None]
        for combination in itertools.product(*(domain for _, domain in listed)):
            yield {**fixed, **{key: value for (key, _), value in zip(listed, combination)}}


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
