"""Error translation: transport failures turned into :class:`~datamaestro.errors.DownloadError` with one line and a hint, and the hint texts."""

from __future__ import annotations

import errno
import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from ..errors import DownloadError, IntegrityError

DEAD_HINT = "the URL is dead: check it or set a mirror in settings ([mirrors])"
DENIED_HINT = "the server refuses access: the data may need a login or a manual download; check the URL or set a mirror in settings ([mirrors])"
NETWORK_HINT = "check the network connection and the URL, try again later, or set a mirror in settings ([mirrors])"
TRUNCATED_HINT = "the connection keeps breaking: try again later, or set a mirror in settings ([mirrors])"
UNREACHABLE_HINT = "check the network connection and the URL's host, or set a mirror in settings ([mirrors])"
TIMEOUT_HINT = "the server does not answer in time: try again later, raise the timeouts (--timeout; settings timeout, read_timeout), or set a mirror in settings ([mirrors])"
#: errors of connect() that another try a moment later will meet again
UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


def _failure(url: str, reason: str, hint: str, *, missing: bool = False) -> DownloadError:
    return DownloadError(f"cannot download {url}: {reason}", hint=hint, reason=reason, missing=missing)


def _cause(exc: BaseException) -> BaseException:
    """The innermost exception that requests and urllib3 wrap around the real one."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in reversed(exc.args) if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc


def _host(url: str) -> str:
    """Where a URL points, for a hint: its host, or its folder for a ``file://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return str(PurePosixPath(unquote(parts.path)).parent)
    return parts.netloc or url


def _reason(exc: Exception) -> str:
    """What one source answered, without its URL."""
    return exc.reason if isinstance(exc, DownloadError) else getattr(exc, "message", str(exc))


def _answer(exc: Exception) -> str:
    """What a source answered, in a few words (``HTTP 404 Not Found``, ``refused the connection``...)."""
    if isinstance(exc, IntegrityError):
        return "served other bytes"
    reason = _reason(exc)
    lowered = reason.lower()
    if lowered.startswith("http "):
        return "answered " + reason.split(" (")[0]
    if "refused" in lowered:
        return "refused the connection"
    if "left out:" in lowered:
        return "was left out (down for another download)"
    if any(word in lowered for word in ("does not resolve", "name or service not known", "name resolution", "nodename nor servname", "getaddrinfo", "no such host")):
        return "has an unknown host name"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    if lowered.startswith("no such file"):
        return "has no such file"
    return "failed (" + reason.split(": ")[0] + ")"


def _mirror_advice(mirror_failures: list[Exception]) -> str:
    """What to do when the mirrors were tried and failed, by what the first mirror answered."""
    first = mirror_failures[0] if mirror_failures else None
    if first is not None and _answer(first).startswith("was left out"):
        # left out for what it answered another download of this session (which of the
        # downloads running at once met it first is a matter of timing): advise by that answer
        cause = _reason(first).partition("(")[2].rstrip(")")
        first = DownloadError(cause, reason=cause)
    if isinstance(first, IntegrityError):
        return "the mirror's copy differs from the original: replace it, or fix the [mirrors] setting"
    if isinstance(first, DownloadError) and (first.missing or _reason(first).startswith("no such file")):
        return "copy the file to the mirror, or fix its path in the [mirrors] setting"
    if first is not None and _answer(first) == "has an unknown host name":
        return "check the network connection and the mirror's host name, or fix the [mirrors] setting"
    return "check that the mirror is up and reachable from here, or fix the [mirrors] setting"


def _describe(exc: BaseException) -> str:
    """A short text for a network exception, without urllib3's object reprs."""
    cause = _cause(exc)
    return re.sub(r"(?:<[^<>]*>|\w+\(host=[^()]*\)):\s*", "", str(cause)) or type(cause).__name__
