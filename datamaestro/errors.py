"""One exception hierarchy for every failure a user can cause or meet.

The CLI turns any :class:`DatamaestroError` into a one-line message (plus its
``hint``) and a non-zero exit status; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class DatamaestroError(Exception):
    """Base class of every error datamaestro reports to a user.

    :param message: what happened, in one sentence
    :param hint: what the user can do about it (optional)
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self._message = message
        self.hint = hint
        #: what was being prepared (``<dataset id>/<resource name>``), set once by the pipeline
        self.where: str | None = None

    @property
    def message(self) -> str:
        """The message, prefixed by what was being prepared when the pipeline says so."""
        if self.where and not self._message.startswith(self.where):
            return f"{self.where}: {self._message}"
        return self._message

    def located(self, where: str) -> "DatamaestroError":
        """Records what was being prepared (kept when already set: the innermost is the most precise)."""
        if self.where is None:
            self.where = where
            self.args = (self.message,)
        return self

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(DatamaestroError):
    """Bad input on the command line or in an API call."""

    exit_code = 2


class VariantError(UsageError, ValueError):
    """A variant selector or variant values a family refuses (an unknown axis, a value outside its domain, a malformed selector).

    Also a :class:`ValueError`, which the original datamaestro raised (code
    written for it catches that); the message starts with its wording.
    """


class SettingsError(DatamaestroError):
    """A settings file or a ``[tool.datamaestro]`` table is malformed."""

    exit_code = 2


class DatasetNotFoundError(DatamaestroError):
    """No repository defines the requested dataset id.

    :param dataset_id: the id that was asked for
    :param suggestions: close ids, best first
    """

    exit_code = 2

    def __init__(self, dataset_id: str, suggestions: list[str] | None = None):
        self.dataset_id = dataset_id
        self.suggestions = list(suggestions or [])
        hint = (
            "did you mean " + " or ".join(self.suggestions[:3]) + "?"
            if self.suggestions
            else "run `datamaestro search` to list the known datasets"
        )
        super().__init__(f"unknown dataset id {dataset_id!r}", hint=hint)


class DefinitionError(DatamaestroError):
    """A dataset definition is malformed (a bug in a plugin)."""


class VariantsTypeError(DefinitionError, TypeError):
    """``@dataset(variants=...)`` given something that is not a ``Variants`` class or instance.

    Also a :class:`TypeError`, as in the original datamaestro.
    """


class DownloadError(DatamaestroError):
    """A transfer failed: HTTP error, timeout, truncated body, reset...

    :param reason: what the source answered, without the URL (for listings of sources)
    :param missing: the source has no such file (HTTP 404/410): another source may
    """

    def __init__(self, message: str, *, hint: str | None = None, reason: str | None = None, missing: bool = False):
        super().__init__(message, hint=hint)
        self.reason = reason if reason is not None else message
        self.missing = missing


class OfflineError(DownloadError):
    """Offline mode is on and some data is missing from the store.

    :param urls: every URL that would have been downloaded
    """

    def __init__(self, urls: list[str]):
        self.urls = list(urls)
        listing = "\n".join(f"  - {url}" for url in self.urls)
        super().__init__(
            f"offline mode: {len(self.urls)} download(s) needed\n{listing}",
            hint="run again without --offline / DATAMAESTRO_OFFLINE, or sync from a peer store",
        )


class MissingDataError(DatamaestroError):
    """A prepared dataset's data is not on disk: never prepared or synced here, collected, quarantined, or the store deleted.

    :param dataset_id: the dataset whose data is read ('' when unknown)
    :param path: the path read
    """

    def __init__(self, dataset_id: str, path):
        import os

        self.dataset_id = dataset_id
        self.path = path
        link = os.path.islink(path)
        what = f"{path} links to {os.path.realpath(path)}, which is gone" if link else f"{path} does not exist"
        name = dataset_id or "this dataset"
        super().__init__(
            f"the data of {name} is missing: {what} (not prepared or synced since the lock changed, collected by gc, "
            "quarantined by store verify, or the store was deleted)",
            hint=f"run `datamaestro sync` in the project (when its lock pins {name}), or `datamaestro prepare {dataset_id or 'ID'}`",
        )


class IntegrityError(DatamaestroError):
    """Bytes do not match what was expected (size, checksum, pinned digest)."""


class ChecksumError(IntegrityError, OSError):
    """A local file whose checksum differs (``HashCheck(...).check(path)``).

    Also an :class:`OSError` (``IOError``), which the original datamaestro
    raised there.
    """


class ArchiveError(DatamaestroError):
    """An archive is malformed or tries to write outside its folder."""


class UnreadableArchiveError(ArchiveError):
    """An archive's bytes cannot be read: not its format, cut short, or damaged inside.

    Unlike a hostile member, this may come from the transfer: a download
    resumed from bytes an earlier run kept is downloaded again whole when
    its archive is unreadable (see :func:`datamaestro.download.single.using_downloaded_file`).
    """


class StoreError(DatamaestroError):
    """The store is unusable: wrong layout version, no permission, full disk."""


class LockTimeoutError(StoreError):
    """Waiting for another process that holds a store lock took too long."""


class LockFileError(DatamaestroError):
    """``datamaestro.lock`` is malformed or out of date."""

    exit_code = 2


class RemoteError(DatamaestroError):
    """A remote cache refused a push, or could not be reached."""


class UntrustedInputError(IntegrityError):
    """A document that came from outside (a tree, an action record, a lock entry, a peer's view or manifest) failed validation.

    Treated like a corrupt object: nothing of it is written, and the next
    remote, then the original source, is used. The message names the source,
    e.g. ``refused tree blake3:… from lab (s3://…): entry '../../x' leaves the tree``.

    :param source: who served it (a remote's description, a peer, a file path); '' when unknown
    """

    def __init__(self, message: str, *, source: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.source = source
