"""``datamaestro accept``: the user agreements a user accepts, recorded in the user settings file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..context import Context


def accept_agreement(agreement_id: str, context: "Context") -> Path:
    """Records that the user accepts an agreement, in the user settings file; returns that file.

    :raises UsageError: no installed dataset asks for this agreement (a typo
        would otherwise be recorded silently and the dataset still refused)
    """
    from ..settings import set_user_setting

    known: dict[str, list[str]] = {}
    for entry in context.registry.index():
        for known_id in entry.agreements:
            known.setdefault(known_id, []).append(entry.id)
    if agreement_id not in known:
        import difflib

        close = difflib.get_close_matches(agreement_id, sorted(known), n=3, cutoff=0.6)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "`datamaestro prepare ID` names the agreement a dataset asks for"
            + (f" (known: {', '.join(sorted(known)[:5])}{' ...' if len(known) > 5 else ''})" if known else "; no installed dataset asks for one")
        )
        raise UsageError(f"unknown agreement id {agreement_id!r}", hint=hint)
    settings_file = set_user_setting("agreements", agreement_id, True)
    context.settings.agreements[agreement_id] = True
    return settings_file
