"""What every remote is: a source (and maybe a target) of objects and action records, by the store's layout."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.digests import hex_of

if TYPE_CHECKING:
    from ..store import Store
    from ..store.objects import Staged


#: the largest action record a remote may serve (bytes): more is refused unread
MAX_RECORD_BYTES = 4 << 20


class RemoteUnavailable(Exception):
    """A remote cannot serve anything (down, refusing): it is not asked again in this session."""


def object_key(digest: str) -> str:
    """``objects/ab/cdef...``: where an object lives in a store and in every remote."""
    hexdigest = hex_of(digest)
    return f"objects/{hexdigest[:2]}/{hexdigest[2:]}"


def action_key(key: str) -> str:
    """``actions/ab/cdef....json``: where an action record lives in a store and in every remote."""
    hexdigest = hex_of(key)
    return f"actions/{hexdigest[:2]}/{hexdigest[2:]}.json"


class Remote:
    """A remote store: a source (and, when :attr:`writable`, a target) of objects and action records."""

    #: how the remote is shown in reports
    label: str = ""
    #: whether :meth:`put_object` and :meth:`put_action` work
    writable: bool = False
    #: which of its action records may be used (:class:`~datamaestro.remotes.signing.RecordTrust`,
    #: from ``trusted_keys``); None: every record, trusted as the remote is
    record_trust = None

    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Copies the object ``digest`` into the store's tmp, checked; None when the remote lacks it.

        :param limit: the object's size when a document names it: more bytes are cut off and refused
        :raises IntegrityError: the remote's bytes do not hash to ``digest``, or exceed ``limit``
        :raises RemoteUnavailable: the remote cannot serve at all
        """
        raise NotImplementedError

    def stage_batch(self, store: "Store", digests: list[str], limits: dict[str, int] | None = None) -> list:
        """:meth:`stage` for several objects: one outcome per digest, in order.

        An outcome is the :class:`Staged` object, None (the remote lacks it),
        the :class:`IntegrityError` of wrong bytes, or the
        :class:`RemoteUnavailable` that stopped the batch (the remaining
        digests get it too). A remote that can do better than one object at
        a time (a folder: no per-object set-up) overrides this.
        """
        from ..errors import IntegrityError

        outcomes: list = []
        for index, digest in enumerate(digests):
            try:
                outcomes.append(self.stage(store, digest, (limits or {}).get(digest)))
            except IntegrityError as error:
                outcomes.append(error)
            except RemoteUnavailable as error:
                return outcomes + [error] * (len(digests) - index)
        return outcomes

    def get_action(self, key: str) -> bytes | None:
        """The JSON of the action record of a recipe key, or None when the remote has none.

        :raises RemoteUnavailable: the remote cannot serve at all
        """
        return None

    def missing(self, digests: list[str]) -> list[str]:
        """The objects among ``digests`` the remote lacks (what a push must send).

        :raises RemoteUnavailable: the remote cannot answer
        """
        raise NotImplementedError

    def put_object(self, digest: str, path: Path) -> None:
        """Uploads an object of the local store; the remote never shows it half-written.

        :raises RemoteUnavailable: the remote refuses or is down
        """
        raise RemoteUnavailable(f"{self.label} is read-only")

    def put_action(self, key: str, data: bytes) -> None:
        """Uploads an action record (after the objects it names)."""
        raise RemoteUnavailable(f"{self.label} is read-only")


_LEFT_OUT = threading.Lock()


def reason_of(remote: Remote, error: RemoteUnavailable) -> str:
    """What ``error`` says of ``remote``, without the remote's name when it starts with it (it is said once, by the caller)."""
    reason = str(error)
    return reason[len(remote.label) + 2 :] if reason.startswith(f"{remote.label}: ") else reason


def leave_out(remote: Remote, error: RemoteUnavailable) -> str | None:
    """Marks ``remote`` as left out for the rest of the run (``remote.left_out``); the line that says so, the first time only.

    A remote that cannot serve is said once per run, however many
    resources, datasets or pipelines then skip it.
    """
    with _LEFT_OUT:
        if getattr(remote, "left_out", None) is not None:
            return None
        remote.left_out = reason_of(remote, error)
    return f"remote cache {remote.label} left out: {remote.left_out}"


def is_left_out(remote: Remote) -> bool:
    """True once :func:`leave_out` marked ``remote`` for this run."""
    return getattr(remote, "left_out", None) is not None
