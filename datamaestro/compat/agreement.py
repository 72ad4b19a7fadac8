"""User agreements: data whose licence a user must accept before it is downloaded.

::

    lua = useragreement("Do you agree to the MS MARCO terms of use? ...", id="net.windows.msmarco")

    @lua
    @dataset(url="https://microsoft.github.io/msmarco/")
    class Documents(Dataset): ...

``info`` shows the text; ``prepare`` asks once (on a terminal) and records
the answer in the user settings, under ``[agreements]``. Without a
terminal (a batch job), it stops with a message saying how to accept:
``datamaestro agree <id>`` or ``"<id>" = true`` under ``[agreements]``.
Building a config (``get_dataset``) never asks.
"""

from __future__ import annotations

import sys

from .decorators import DatasetAnnotation
from ..errors import DatamaestroError


class useragreement(DatasetAnnotation):
    """Asks a user to accept a text before a dataset is prepared.

    :param message: the agreement's text
    :param id: the agreement's id, shared by the datasets it covers
        (default: the dataset's id)
    """

    def __init__(self, message: str, id: str | None = None):
        self.message = message
        self.id = id

    def annotate(self, definition) -> None:
        """Records the agreement on the dataset (shown as its licence), checked before anything is produced."""
        agreement = (self.id or definition.id, self.message)
        definition.agreements = [*getattr(definition, "agreements", []), agreement]
        if not getattr(definition, "licence", None):
            definition.licence = self.message
        checks = getattr(definition, "production_checks", None)
        if checks is None:
            checks = definition.production_checks = []
        checks.append(lambda checked, context: check_agreement(checked, context, *agreement))


def check_agreement(definition, context, agreement_id: str, message: str) -> None:
    """Makes sure an agreement is accepted; asks on a terminal (once: the answer is recorded).

    :raises DatamaestroError: the agreement is refused or cannot be asked
    """
    accepted = context.settings.agreements.get(agreement_id)
    if accepted:
        return
    if accepted is None and sys.stdin is not None and sys.stdin.isatty():
        answer = input(f"{message}\nDo you accept ({agreement_id})? [yes/no] ").strip().lower()
        if answer in ("y", "yes"):
            from ..settings import set_user_setting

            set_user_setting("agreements", agreement_id, True)
            context.settings.agreements[agreement_id] = True
            return
    raise DatamaestroError(
        f"{definition.id}: the user agreement {agreement_id!r} is not accepted",
        hint=f"read it with `datamaestro info {definition.id}`, then accept it with `datamaestro agree {agreement_id}`",
    )


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.annotations.agreement')
