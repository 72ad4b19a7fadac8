"""The checks behind :class:`DatasetTests` and the documentation analyzer of the original API."""

from __future__ import annotations

import importlib

from ..commands.audit import audit_repository
from ..errors import DatamaestroError


class DatasetTests:
    """A unittest mixin checking the repository of the test's own package (see :mod:`datamaestro.test`)."""

    def _report(self):
        from .. import session

        context = session.current()
        package = type(self).__module__.split(".")[0]
        for repository in context.registry.repositories().values():
            if repository.package == package:
                return audit_repository(repository, context)
        module = importlib.import_module(package)
        return audit_repository(module.Repository(context), context)

    def test_datafiles(self):
        """Every config module imports."""
        failures = self._report().module_failures
        assert not failures, "\n".join(f"{f.what}: {f.reason}" for f in failures)

    def test_unique_id(self):
        """No two datasets share an id."""
        duplicates = self._report().duplicate_ids
        assert not duplicates, f"ids defined more than once: {', '.join(duplicates)}"

    def test_datasets(self):
        """Every dataset's config builds (a family's first variant)."""
        failures = self._report().config_failures
        assert not failures, "\n".join(f"{f.what}: {f.reason}" for f in failures)


try:
    from experimaestro.tools.documentation import DocumentationAnalyzer
except ImportError as _missing:  # its optional dependencies (sphobjinv...) are not installed
    _reason = str(_missing)

    class DatamaestroAnalyzer:
        """Checks that every data type and dataset is documented (needs experimaestro's documentation tools)."""

        def __init__(self, *args, **kwargs):
            raise DatamaestroError(
                f"the documentation analyzer needs experimaestro's documentation tools ({_reason})",
                hint="pip install sphobjinv",
            )

else:

    class DatamaestroAnalyzer(DocumentationAnalyzer):
        """experimaestro's documentation analyzer, which also requires dataset modules to be documented.

        A dataset's config module must appear in a ``.. dm:datasets:: <module>``
        directive (or the repository in ``.. dm:repository::``) of the RST
        files next to the analyzed documentation.
        """

        def analyze(self):
            """Runs experimaestro's analysis, then adds undocumented dataset modules."""
            import re

            super().analyze()
            covered = set()
            for rst in self.doc_path.parent.rglob("*.rst"):
                text = rst.read_text(encoding="utf-8", errors="replace")
                covered.update(re.findall(r"^\s*\.\.\s+dm:datasets::\s+(\S+)", text, re.MULTILINE))
                if re.search(r"^\s*\.\.\s+dm:repository::", text, re.MULTILINE):
                    return
            from .. import session

            for repository in session.current().registry.repositories().values():
                if repository.package not in self.modules:
                    continue
                for definition in repository.definitions():
                    module = getattr(definition, "module", "")
                    if ".config." in module and module.split(".config.", 1)[1] not in covered:
                        self.undocumented.append(f"{module}.{definition.qualname}")


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.test.checks')
