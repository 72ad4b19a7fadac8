"""The thin top-level API: find, describe and prepare datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .context import Context

if TYPE_CHECKING:
    from .pipeline import PipelineResult


def _context(context: Context | None) -> Context:
    return context if context is not None else Context.instance()


def get_dataset(dataset_id: str, *, context: Context | None = None):
    """The data config of a dataset, without downloading anything.

    Paths in the config are the dataset's readable paths; they exist once
    the dataset is prepared.

    :param dataset_id: a dataset id or alias, e.g. ``"com.lecun.mnist"``
    :raises DatasetNotFoundError: unknown id (with the closest ids)
    """
    return _context(context).dataset(dataset_id).config()


def prepare_dataset(dataset_id: str, *, context: Context | None = None):
    """Makes a dataset present (downloading what the store lacks) and returns its config.

    Example::

        ds = prepare_dataset("com.lecun.mnist")
        ds.train.images.data().shape   # (60000, 28, 28)

    :param dataset_id: a dataset id or alias
    :raises DatamaestroError: any failure, with a message saying what to do
    """
    ctx = _context(context)
    definition = ctx.dataset(dataset_id)
    ctx.prepare(definition)
    return definition.config()


def prepare_definition(dataset_id: str, *, context: Context | None = None) -> "PipelineResult":
    """Prepares a dataset and returns what the pipeline did (manifest, produced resources)."""
    ctx = _context(context)
    return ctx.prepare(ctx.dataset(dataset_id))
