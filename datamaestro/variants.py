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

import itertools
import typing
from typing import Any, Iterator, Mapping

from .errors import DatamaestroError


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: the default of an axis that has none (so that None stays a valid default)
MISSING: Any = _Missing()


def split_id_selector(dataset_id: str) -> tuple[str, str]:
    """``"a.b[x=1]"`` -> ``("a.b", "[x=1]")``; ``"a.b"`` -> ``("a.b", "")``."""
    index = dataset_id.find("[")
    if index < 0:
        return dataset_id, ""
    if not dataset_id.endswith("]"):
        raise DatamaestroError(f"{dataset_id!r}: a variant selector ends with ']'", hint="e.g. family.id[axis=value,other=value]")
    return dataset_id[:index], dataset_id[index:]


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
            raise ValueError(f"{raw!r} is not a boolean")
        return target(raw)

    def validate(self, value: Any) -> None:
        """Raises ValueError for a value outside the domain."""
        if self.domain is not None and value not in self.domain:
            raise ValueError(f"{value!r} is not one of {self.domain!r}")


builtin_type = type


class Variants:
    """What a family's variant space must provide (see :class:`AxesVariants`)."""

    def resolve(self, **values: Any) -> dict[str, Any]:
        """Every axis' value, defaults filled in; raises on unknown or missing axes."""
        raise NotImplementedError

    def parse_selector(self, selector: str) -> dict[str, Any]:
        """``"[k=v,...]"`` -> values (converted to the axes' types)."""
        raise NotImplementedError

    def format_selector(self, values: Mapping[str, Any]) -> str:
        """The canonical ``"[k=v,...]"`` of a variant ('' when no axis shows in ids)."""
        raise NotImplementedError

    def enumerate(self) -> Iterator[dict[str, Any]]:
        """The variants that can be listed."""
        raise NotImplementedError


class AxesVariants(Variants):
    """The cartesian product of independent axes, declared as class attributes or keywords::

        class Sizes(AxesVariants):
            size = Axis(["small", "large"], default="small")

        Sizes()  # or AxesVariants(size=Axis([...]))
    """

    def __init__(self, **axes: Axis):
        declared: dict[str, Axis] = {}
        for cls in reversed(type(self).__mro__):
            declared.update({key: value for key, value in vars(cls).items() if isinstance(value, Axis)})
        for key, value in axes.items():
            if not isinstance(value, Axis):
                raise TypeError(f"axis {key!r} must be an Axis, not {value!r}")
        self.axes: dict[str, Axis] = {**declared, **axes}

    def _error(self, message: str) -> DatamaestroError:
        return DatamaestroError(message, hint=f"axes: {', '.join(self.axes)}; e.g. id[{self.example()}]")

    def example(self) -> str:
        """A selector body naming every required axis with its first value."""
        parts = []
        for key, axis in self.axes.items():
            if not axis.has_default:
                value = axis.domain[0] if axis.domain else "..."
                parts.append(f"{key}={_format(value)}")
        return ",".join(parts)

    def resolve(self, **values: Any) -> dict[str, Any]:
        """Every axis' value, defaults filled in.

        :raises DatamaestroError: an unknown axis, a value outside its domain, a required axis missing
        """
        unknown = sorted(set(values) - set(self.axes))
        if unknown:
            raise self._error(f"unknown variant axes {unknown}")
        resolved = {}
        for key, axis in self.axes.items():
            if key in values:
                try:
                    axis.validate(values[key])
                except ValueError as exc:
                    raise self._error(f"axis {key}: {exc}") from None
                resolved[key] = values[key]
            elif axis.has_default:
                resolved[key] = axis.default
            else:
                raise self._error(f"the variant axis {key!r} is required")
        return resolved

    def parse_selector(self, selector: str) -> dict[str, Any]:
        """``"[k=v,...]"`` -> values, converted to each axis' type."""
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
                raise self._error(f"malformed selector part {part!r} (expected axis=value)")
            if key not in self.axes:
                raise self._error(f"unknown variant axis {key!r}")
            try:
                values[key] = self.axes[key].coerce(raw.strip())
            except (TypeError, ValueError) as exc:
                raise self._error(f"axis {key}: {exc}") from None
        return values

    def format_selector(self, values: Mapping[str, Any]) -> str:
        """The canonical selector: sorted axes, without ``in_id=False`` ones and elided defaults."""
        resolved = self.resolve(**values)
        parts = []
        for key in sorted(resolved):
            axis = self.axes[key]
            value = resolved[key]
            if not axis.in_id or (axis.elide_default and value == axis.default):
                continue
            parts.append(f"{key}={_format(value)}")
        return f"[{','.join(parts)}]" if parts else ""

    def enumerate(self) -> Iterator[dict[str, Any]]:
        """Every combination of the axes with a domain (open axes at their default)."""
        fixed = {k: a.default for k, a in self.axes.items() if a.domain is None and a.has_default}
        listed = [(k, a.domain) for k, a in self.axes.items() if a.domain is not None]
        for combination in itertools.product(*(domain for _, domain in listed)):
            yield {**fixed, **{key: value for (key, _), value in zip(listed, combination)}}


def _format(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
