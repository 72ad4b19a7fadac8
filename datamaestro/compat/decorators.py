"""The decorators of the original datamaestro's ``datamaestro.definitions``: tags, tasks, templates, annotations, hooks."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..definition import DatasetDefinition, _tags_of, _tasks_of

def _as_list(values) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else list(values)


def datatags(*tags: str) -> Callable:
    """Adds tags to a data type, a dataset or a ``@metadataset`` template."""

    def decorate(target):
        target.__datamaestro_tags__ = _tags_of(target) + list(tags)
        return target

    return decorate


def datatasks(*tasks: str) -> Callable:
    """Adds tasks to a data type, a dataset or a ``@metadataset`` template."""

    def decorate(target):
        target.__datamaestro_tasks__ = _tasks_of(target) + list(tasks)
        return target

    return decorate


def metadata(tags: str | list[str] | None = None, tasks: str | list[str] | None = None) -> Callable:
    """Adds tags and tasks to a data type (``@metadata(tags="images", tasks="classification")``)."""

    def decorate(target):
        datatags(*_as_list(tags))(target)
        return datatasks(*_as_list(tasks))(target)

    return decorate


def argument(name: str, type_: type, default: Any = inspect.Parameter.empty, help: str | None = None) -> Callable:
    """Declares an experimaestro ``Param`` on a data type (older decorator style)."""

    def decorate(cls):
        from experimaestro import Param

        annotations = cls.__dict__.get("__annotations__", {})
        if name not in annotations:
            annotations = dict(annotations)
            annotations[name] = Param[type_]
            cls.__annotations__ = annotations
            if default is not inspect.Parameter.empty:
                setattr(cls, name, default)
        return cls

    return decorate


class metadataset:
    """Marks a function as a template shared by several datasets (not a dataset itself).

    ``@dataset(Template, id=...)`` then takes the template's config type and
    its tags and tasks::

        @datatags("text")
        @metadataset(TrainingText)
        def WikiText(): ...

        @dataset(WikiText, id=".2.raw")
        class Wikitext2Raw(Dataset): ...

    :param base: the config type of the datasets built on the template
    """

    def __init__(self, base: type):
        self.base = base

    def __call__(self, target):
        target.__datamaestro__ = self
        return target


class DatasetAnnotation:
    """Base of annotations that decorate a dataset (``@useragreement(...)``).

    Usable above or below ``@dataset``; subclasses implement :meth:`annotate`.
    """

    def __call__(self, target):
        definition = getattr(target, "__dataset__", None)
        if isinstance(target, DatasetDefinition) or callable(getattr(target, "as_definition", None)):
            self.annotate(target)
        elif isinstance(definition, DatasetDefinition) and definition.target is target:
            self.annotate(definition)
        else:
            # below @dataset: applied when the definition is created
            target.__datamaestro_annotations__ = getattr(target, "__datamaestro_annotations__", []) + [self]
        return target

    def annotate(self, definition) -> None:
        """Applies the annotation to a definition."""
        raise NotImplementedError(f"{type(self).__name__} must implement annotate()")


def hook(name: str) -> Callable:
    """Turns a function ``f(definition, *args, **kwargs)`` into an annotation factory registering a hook.

    Example (what ``useragreement`` is)::

        @hook("pre-use")
        def check(definition, message): ...

        @check("Do you agree?")
        @dataset(...)
        class Data(Dataset): ...
    """

    def wrap(function: Callable) -> Callable:
        def factory(*args, **kwargs) -> DatasetAnnotation:
            return _HookAnnotation(name, function, args, kwargs)

        factory.__doc__ = function.__doc__
        factory.__name__ = function.__name__
        return factory

    return wrap


class _HookAnnotation(DatasetAnnotation):
    """The annotation :func:`hook` factories build."""

    def __init__(self, name: str, function: Callable, args: tuple, kwargs: dict):
        self.name = name
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def annotate(self, definition) -> None:
        """Registers the hook on the definition."""
        definition.register_hook(self.name, self.run)

    def run(self, definition) -> None:
        """Calls the function."""
        self.function(definition, *self.args, **self.kwargs)


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), "datamaestro.definitions")
