"""Auditing a repository: its modules import, its ids are unique, its configs build.

What ``datamaestro check`` (the command keeps its name) and
:class:`datamaestro.test.DatasetTests` run. "Audit" is this word alone in
the code: the lock's ``--check`` is whether the lock is *current*
(:func:`datamaestro.project.resolve.stale_reasons`), the store's check on use
compares *stamps*, and ``store verify`` rehashes.
Nothing is downloaded: a config is built (paths need not exist) and
validated by experimaestro. A variant family is checked on its first
variant.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..context import Context
    from ..repository import Repository


@dataclass
class Failure:
    """Something that failed: what, and why (the exception's type and message)."""

    what: str
    reason: str


@dataclass
class AuditReport:
    """The result of auditing one repository."""

    repository: str
    modules: int = 0
    datasets: int = 0
    configs_built: int = 0
    seconds: float = 0.0
    module_failures: list[Failure] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    config_failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failure at all."""
        return not (self.module_failures or self.duplicate_ids or self.config_failures)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def first_variant(definition) -> dict:
    """The values of a family's first listed variant ({} for a plain dataset)."""
    variants = getattr(definition, "variants", None)
    if variants is None:
        return {}
    return next(iter(variants.enumerate()), {})


def audit_repository(repository: "Repository", context: "Context") -> AuditReport:
    """Imports every module of a repository and builds every dataset's config.

    :param repository: the repository (from ``context.registry.repositories()``)
    :param context: the context the configs are built in
    """
    from .. import session
    from ..registry import index_entry

    session.set_default(context)
    report = AuditReport(repository.id)
    start = time.monotonic()
    for name in repository.module_names():
        report.modules += 1
        try:
            importlib.import_module(name)
        except Exception as exc:
            report.module_failures.append(Failure(name, _reason(exc)))
    seen: dict[str, int] = {}
    try:
        definitions = list(repository.definitions())
    except Exception as exc:
        report.module_failures.append(Failure(f"{repository.id} (listing its datasets)", _reason(exc)))
        definitions = []
    for definition in definitions:
        report.datasets += 1
        try:
            entry = index_entry(definition, repository)
            seen[entry.id] = seen.get(entry.id, 0) + 1
            found = context.registry.find(entry.id) if entry.generated else definition
            config = found.config(**first_variant(found))
            config.__xpm__.validate()
            report.configs_built += 1
        except Exception as exc:
            report.config_failures.append(Failure(getattr(definition, "id", repr(definition)), _reason(exc)))
    report.duplicate_ids = sorted(key for key, count in seen.items() if count > 1)
    report.seconds = time.monotonic() - start
    return report


def audit_repositories(namespaces: list[str], context: "Context") -> list[AuditReport]:
    """Audits the named repositories (all when none is named): what ``datamaestro check`` runs.

    :raises UsageError: an unknown namespace
    """
    repositories = context.registry.repositories()
    unknown = [name for name in namespaces if name not in repositories]
    if unknown:
        raise UsageError(f"no repository {', '.join(unknown)}", hint=f"installed repositories: {', '.join(sorted(repositories))}")
    return [audit_repository(repositories[name], context) for name in (namespaces or sorted(repositories))]
