"""A remote on object storage: S3 (and MinIO, Ceph, SeaweedFS), Google Cloud Storage, Azure.

``s3://bucket/prefix`` holds the store's layout under ``prefix``:
``objects/ab/cdef...`` and ``actions/ab/cdef....json``. The client is
`obstore <https://developmentseed.org/obstore/>`_, chosen by measurement
against boto3 and s3fs on a SeaweedFS server (``benchmarks/results.md``):
2.5–6× faster on many small objects, a 25 ms import, 15 MB installed. It is
an optional dependency (``pip install 'datamaestro[s3]'``) imported only
when a remote of this kind is used.

Credentials come from the usual places, never from datamaestro's files:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``),
else the ``AWS_PROFILE`` (or ``default``) profile of
``~/.aws/credentials`` (``AWS_SHARED_CREDENTIALS_FILE``); with neither,
requests are unsigned (a public bucket) — an instance's metadata service is
never asked. Google and Azure take their own environment variables
(obstore's ``from_env`` conventions).

A large object comes down like ``s5cmd cp`` takes it: the first
:data:`PART` bytes from the GET that also says its size, the rest in ranged
GETs of :data:`PART` bytes, :data:`RANGED_AT_ONCE` at a time, each written
to the object's file in ``tmp/`` chunk by chunk as it streams in, and kept
in a reused buffer until it is hashed, in order, as soon as the bytes
before it are (at most :data:`RANGED_HELD` parts in memory, across the
process); the disk's writeback of each part starts once it is hashed, and
the file is fsynced at the end. The object is named in the store only once
all its bytes hash to its digest: a pull killed meanwhile leaves a file in
``tmp/`` that no one reads, removed by the store's sweeps.

Every upload is one atomic PUT (multipart for large objects, completed only
when whole): no reader ever sees half an object. Objects are written with
``mode="create"`` (if-none-match): what another machine pushed meanwhile is
left as it is.
"""

from __future__ import annotations

import configparser
import html
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import IntegrityError, UntrustedInputError, UsageError
from ..store.testpoints import pause
from .base import MAX_RECORD_BYTES, Remote, RemoteUnavailable, action_key, object_key

if TYPE_CHECKING:
    from ..store import Store
    from ..store.objects import Staged

#: objects larger than this go up in parts of this size, PARTS_AT_ONCE at a time each (measured on a
#: SeaweedFS server: 8 MiB × 4 beat 16 MiB × 8 and aws s3 sync; more parts in flight only cost the server CPU)
PART = 8 * 1024 * 1024
PARTS_AT_ONCE = 4
#: bytes asked of a streamed download at a time
STREAM_CHUNK = 1024 * 1024
#: the least bytes a ranged GET's stream hands over at a time: 0, each as it comes off the connection (tens of
#: KiB), written at once. Measured (1 GiB, SeaweedFS on 127.0.0.1, load 11-14): 8 MiB parts each fetched whole
#: then written cost 2.3-3.8 s of system time, streamed and written as they come 1.0-1.5 s (s5cmd's cp 1.2 s)
RANGE_CHUNK = 0
#: a ranged part's bytes are written from its buffer this many at a time as they come (and the hashing follows).
#: Measured (1 GiB, local disk, load 3-9): 1 MiB writes 0.7-0.8 s of system time, 8 MiB ones 2.4-3.6 s, 32-64 KiB
#: ones 1.2-1.5 s; the whole part fetched first, then written: 4.0-4.3 s against 2.2-2.7 s
WRITE_BLOCK = 1024 * 1024
#: objects at least this large come down in ranged GETs of PART bytes (smaller ones in one GET)
RANGED_MIN = 4 * PART
#: ranged GETs at once for one object (s5cmd's multipart download runs 5 of 50 MB). On SeaweedFS on
#: 127.0.0.1 under load, 8 of 8 MiB fetched 1 GiB (unwritten) in 4.0-5.2 s, s5cmd's whole cp 3.9-5.5 s, one
#: GET 3.6-9 s; on S3 one connection carries far less than the link
RANGED_AT_ONCE = 8
#: parts fetched or being fetched and not yet hashed, across the process (however many objects come down
#: at once): the memory ranged GETs may hold (RANGED_HELD × PART, in reused buffers)
RANGED_HELD = 12
_RANGED_SLOTS = threading.BoundedSemaphore(RANGED_HELD)
SCHEMES = ("s3", "gs", "az", "abfs", "abfss")
MISSING_LIBRARY_HINT = "pip install 'datamaestro[s3]' (it installs obstore, the object-storage client)"


def _obstore():
    """The obstore module, or a clear error when the optional dependency is missing."""
    try:
        import obstore
    except ImportError:
        raise UsageError("object-storage remotes need the obstore library, which is not installed", hint=MISSING_LIBRARY_HINT) from None
    return obstore


def aws_credentials(environ: dict[str, str] | None = None) -> dict[str, str]:
    """AWS credentials from the environment, else from the shared credentials file; {} when none.

    The standard chain without the instance metadata service (a laptop or a
    cluster node has none, and asking it means a request to a non-local
    address).
    """
    environ = os.environ if environ is None else environ
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        found = {"access_key_id": environ["AWS_ACCESS_KEY_ID"], "secret_access_key": environ["AWS_SECRET_ACCESS_KEY"]}
        if environ.get("AWS_SESSION_TOKEN"):
            found["token"] = environ["AWS_SESSION_TOKEN"]
        return found
    path = Path(environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    profile = environ.get("AWS_PROFILE", "default")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return {}
    if not parser.has_section(profile):
        return {}
    section = parser[profile]
    if not section.get("aws_access_key_id") or not section.get("aws_secret_access_key"):
        return {}
    found = {"access_key_id": section["aws_access_key_id"], "secret_access_key": section["aws_secret_access_key"]}
    if section.get("aws_session_token"):
        found["token"] = section["aws_session_token"]
    return found


_STATUS = re.compile(r"status code: (\d{3})")
_XML_FIELD = {name: re.compile(rf"<{name}>([^<]{{0,400}})</{name}>") for name in ("Code", "Message")}


def _server_error(text: str) -> tuple[int, str] | None:
    """The HTTP status and the S3 error (``Code: Message``) that obstore's text of a failed request holds; None when it holds none.

    The body is the server's: only its code and message are kept,
    unescaped, cut short and stripped of control characters.
    """
    status = _STATUS.search(text)
    code = _XML_FIELD["Code"].search(text)
    if status is None or code is None:
        return None
    message = _XML_FIELD["Message"].search(text)

    def clean(value: str) -> str:
        return "".join(char if char.isprintable() else " " for char in html.unescape(value)).strip()[:200]

    said = clean(code.group(1))
    if message is not None and clean(message.group(1)):
        said = f"{said}: {clean(message.group(1))}"
    return int(status.group(1)), said


class ObjectStoreRemote(Remote):
    """A remote store on object storage (see the module documentation).

    :param url: ``s3://bucket/prefix`` (or ``gs://``, ``az://``)
    :param endpoint: an S3-compatible server (MinIO, Ceph, SeaweedFS), e.g.
        ``https://minio.lab.example``; None: ``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL`` when set, else the provider's own
    :param name: the remote's name in the settings, for messages
    :param connect_timeout: seconds to establish a connection
    :param read_timeout: seconds without progress on a request
    """

    writable = True
    reads_packs = True
    writes_packs = True

    def __init__(self, url: str, *, endpoint: str | None = None, name: str | None = None, connect_timeout: float = 10, read_timeout: float = 30):
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.netloc:
            raise UsageError(f"remote {url!r}: expected s3://bucket/prefix (or gs://, az://)")
        self.url = url
        # an S3-compatible server named by the standard variables when the settings name none (``--from s3://...``)
        self.endpoint = endpoint or (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") if parts.scheme == "s3" else None)
        self.label = f"{name} ({url})" if name else url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._timeouts = (connect_timeout, read_timeout)
        self._store = None
        #: no credentials were found: requests go unsigned (a public bucket)
        self.unsigned = False
        self._lock = threading.Lock()

    # -- the client, made on first use
    def store(self):
        """The obstore store (imports obstore on first use)."""
        with self._lock:
            if self._store is None:
                self._store = self._make_store()
            return self._store

    def _make_store(self):
        obstore = _obstore()
        from obstore.store import from_url

        connect, read = self._timeouts
        client: dict[str, Any] = {
            "connect_timeout": timedelta(seconds=connect),
            # a stalled connection fails after read_timeout; a whole request may take longer (large objects)
            "read_timeout": timedelta(seconds=read),
            "timeout": timedelta(hours=1),
        }
        retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=read), "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2}}
        options: dict[str, Any] = {}
        scheme = urlsplit(self.url).scheme
        if scheme == "s3":
            credentials = aws_credentials()
            options.update(credentials or {"skip_signature": True})
            self.unsigned = not credentials
            options.setdefault("region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
            if self.endpoint:
                options["endpoint"] = self.endpoint.rstrip("/")
                options["virtual_hosted_style_request"] = False
                if self.endpoint.startswith("http://"):
                    client["allow_http"] = True
        del obstore
        return from_url(self.url, client_options=client, retry_config=retry, **options)

    def _key(self, relative: str) -> str:
        # from_url puts the URL's path in the store's prefix already
        return relative

    # -- errors
    def _unavailable(self, exc: BaseException, doing: str) -> RemoteUnavailable:
        """One clear reason for a failure of the remote as a whole."""
        errors = _obstore().exceptions

        full = str(exc)
        # obstore puts the status and the S3 code in the message only (its first line for display)
        text = full.splitlines()[0] if full else type(exc).__name__
        hint = None
        server_error = _server_error(full)
        if isinstance(exc, (errors.PermissionDeniedError, errors.UnauthenticatedError)) or any(code in full for code in ("403 Forbidden", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")):
            if self.unsigned:
                reason = "access denied (403): no credentials found, requests unsigned: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the AWS_PROFILE of ~/.aws/credentials"
            else:
                reason = "access denied (403): check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the AWS_PROFILE of ~/.aws/credentials)"
            hint = "check the credentials: what was sent stays"
        elif "NoSuchBucket" in full:
            reason = f"no bucket {self.bucket!r}"
        elif any(word in full for word in ("ConnectionRefused", "Connection refused", "dns error", "failed to lookup")):
            reason = f"cannot reach {self.endpoint or 'the endpoint'} (connection refused or no such host)"
        elif any(word in full for word in ("TimedOut", "kind: Timeout", "timed out")):
            reason = f"{self.endpoint or 'the endpoint'} did not answer in time {doing} (connect_timeout / read_timeout of the settings)"
        elif "error sending request" in full:
            reason = f"cannot reach {self.endpoint or 'the endpoint'} ({text[:160]})"
        elif server_error is not None:
            status, said = server_error
            reason = f"the server answered {status}: {said}"
            if status >= 500:
                hint = "the server failed on its side (the code and message above are its own): what was sent stays; try again later, and tell its administrators if it persists"
            else:
                hint = "the server refused the request: check the remote's url and endpoint in the settings"
        else:
            reason = text[:300]
        error = RemoteUnavailable(f"{self.label}: {reason}")
        error.hint = hint  # read by those that turn it into an error of their own (push)
        return error

    def _is_missing(self, exc: BaseException) -> bool:
        errors = _obstore().exceptions

        text = str(exc)
        if "NoSuchBucket" in text:
            return False  # the remote as a whole is wrong, not this object
        return isinstance(exc, (errors.NotFoundError, FileNotFoundError)) or "NoSuchKey" in text

    # -- reading
    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Streams the object into the store's tmp, hashed on the way (cut off past ``limit`` bytes); None when the remote lacks it.

        A large object (:data:`RANGED_MIN` bytes or more, as its GET says) comes
        down in parallel ranged GETs (see the module documentation).
        """
        obstore = _obstore()

        key = self._key(object_key(digest))
        try:
            result = obstore.get(self.store(), key)
        except Exception as exc:  # obstore raises its own classes, and built-in ones for not-found
            if self._is_missing(exc):
                return None
            raise self._unavailable(exc, f"downloading {digest}") from None
        size = result.meta["size"]
        if limit is not None and size > limit:
            raise UntrustedInputError(f"refused {digest}: more than the {limit} bytes it has (the remote says {size}; not taken)")
        ranged = size >= RANGED_MIN
        # a small object is hashed on all cores, in chunks of a megabyte; a large one on one core, beside
        # the parts' threads (in chunks of a few hundred KiB: more threads only cost switches)
        with store.objects.writer(expect=digest, limit=limit, threads=not ranged) as writer:
            try:
                if not ranged:
                    for chunk in result.stream(min_chunk_size=STREAM_CHUNK):
                        writer.write(memoryview(chunk))  # hashed and written from obstore's buffer: no copy
                    del result
                else:
                    writer.check_space(size)
                    client = self.store()

                    def fetch(start: int, end: int):
                        return obstore.get(client, key, options={"range": (start, end)}).stream(min_chunk_size=RANGE_CHUNK)

                    parts = _Parts(fetch, size, writer)
                    try:
                        # the first part from the GET that said the size, the others by ranges on the parts' threads
                        parts.write_first(result.stream(min_chunk_size=RANGE_CHUNK))
                        del result  # the rest comes by ranges: this connection is closed
                        parts.hash_in_order()
                    finally:
                        parts.stop()
            except IntegrityError:
                raise  # more bytes than the document names: refused, not a failure of the remote
            except Exception as exc:
                writer.abort()
                if self._is_missing(exc):
                    return None
                raise self._unavailable(exc, f"downloading {digest}") from None
            # a large object's writeback started part by part: flushed now, its commit needs no flush of the file system
            return writer.stage(fsync=ranged)

    def get_action(self, key: str) -> bytes | None:
        """The record's JSON, or None."""
        obstore = _obstore()

        try:
            # streamed and bounded: a record larger than any the store writes is refused by its reader, unread
            data = bytearray()
            for chunk in obstore.get(self.store(), self._key(action_key(key))).stream(min_chunk_size=STREAM_CHUNK):
                data += bytes(chunk)
                if len(data) > MAX_RECORD_BYTES:
                    break
            return bytes(data)
        except Exception as exc:
            if self._is_missing(exc):
                return None
            raise self._unavailable(exc, "reading an action record") from None

    def missing(self, digests: list[str]) -> list[str]:
        """The objects the remote lacks: one listing per fan-out folder for many, a HEAD each for a few."""
        obstore = _obstore()

        digests = list(dict.fromkeys(digests))
        try:
            if len(digests) <= 64:
                return [digest for digest in digests if not self._has(digest)]
            present: set[str] = set()
            for fan in sorted({object_key(d).rsplit("/", 1)[0] for d in digests}):
                for batch in obstore.list(self.store(), self._key(fan) + "/", chunk_size=1000):
                    present.update(meta["path"] for meta in batch)
        except RemoteUnavailable:
            raise
        except Exception as exc:
            if "NoSuchBucket" in str(exc):
                return digests  # a new bucket: everything is missing (the first upload creates it, where allowed)
            raise self._unavailable(exc, "listing the remote") from None
        return [digest for digest in digests if self._key(object_key(digest)) not in present]

    def _has(self, digest: str) -> bool:
        obstore = _obstore()

        try:
            obstore.head(self.store(), self._key(object_key(digest)))
            return True
        except Exception as exc:
            if self._is_missing(exc):
                return False
            raise self._unavailable(exc, "checking the remote") from None

    # -- writing
    def put_object(self, digest: str, path: Path) -> None:
        """Uploads an object (in parallel parts when large), unless the remote has it already."""
        obstore = _obstore()
        errors = obstore.exceptions

        size = path.stat().st_size
        try:
            if size > PART:
                obstore.put(self.store(), self._key(object_key(digest)), path, chunk_size=PART, max_concurrency=PARTS_AT_ONCE)
            else:
                obstore.put(self.store(), self._key(object_key(digest)), path.read_bytes(), mode="create")
        except errors.AlreadyExistsError:
            return  # pushed by someone else meanwhile: the same bytes, by their name
        except Exception as exc:
            raise self._unavailable(exc, f"uploading {digest}") from None

    def put_action(self, key: str, data: bytes) -> None:
        """Uploads an action record (one atomic PUT)."""
        obstore = _obstore()

        try:
            obstore.put(self.store(), self._key(action_key(key)), data)
        except Exception as exc:
            raise self._unavailable(exc, "uploading an action record") from None

    # -- packs (:mod:`datamaestro.remotes.packs`)
    def read_blob(self, key: str, limit: int) -> bytes | None:
        """The bytes at ``key``, streamed and cut off past ``limit`` (the caller refuses what is that long); None when missing."""
        obstore = _obstore()

        data = bytearray()
        try:
            for chunk in obstore.get(self.store(), self._key(key)).stream(min_chunk_size=STREAM_CHUNK):
                data += bytes(chunk)
                if len(data) >= limit:
                    break
        except Exception as exc:
            if self._is_missing(exc):
                return None
            raise self._unavailable(exc, f"reading {key}") from None
        return bytes(data[:limit])

    def read_range(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` of ``key`` in one ranged GET; None when missing."""
        obstore = _obstore()

        try:
            return bytes(obstore.get_range(self.store(), self._key(key), start=start, end=end))
        except Exception as exc:
            if self._is_missing(exc):
                return None
            if "Range" in str(exc) and ("416" in str(exc) or "not satisfiable" in str(exc).lower()):
                return b""  # the blob is shorter than the index says: its members are refused
            raise self._unavailable(exc, f"reading {key}") from None

    def has_blob(self, key: str) -> bool:
        """One HEAD."""
        obstore = _obstore()

        try:
            obstore.head(self.store(), self._key(key))
            return True
        except Exception as exc:
            if self._is_missing(exc) or "NoSuchBucket" in str(exc):
                return False
            raise self._unavailable(exc, f"checking {key}") from None

    def write_blob(self, key: str, data: bytes) -> None:
        """One atomic PUT (``mode="create"`` for a pack, named by its bytes: one already there is left)."""
        obstore = _obstore()
        errors = obstore.exceptions

        try:
            obstore.put(self.store(), self._key(key), data, mode="create" if key.endswith(".pack") else "overwrite")
        except errors.AlreadyExistsError:
            return
        except Exception as exc:
            raise self._unavailable(exc, f"uploading {key}") from None


class _Buffers:
    """Part-sized buffers, reused: a part's bytes wait in one until they are hashed.

    A buffer handed out comes back by :meth:`give_back` once its part is
    hashed; one whose part was dropped (a thread may still be copying into
    it) is left to the garbage collector. Reuse is what keeps the cost down:
    a fresh 8 MiB allocation per part, or one per chunk held, costs a page
    fault per 4 KiB on first touch (2.2-3.8 s of system time per GiB,
    measured), more than the copy.
    """

    def __init__(self):
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(PART)

    def give_back(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._free) < RANGED_HELD:
                self._free.append(buffer)


_BUFFERS = _Buffers()


class _Parts:
    """The parts of one large object, written at their places as their bytes come, hashed in order from memory.

    The first part comes from the GET that said the object's size
    (:meth:`write_first`, on the caller's thread, hashed as it comes), the
    others by ranged GETs on daemon threads. Each of those is copied chunk
    by chunk into a reused buffer (:data:`_BUFFERS`) and written from it
    every :data:`WRITE_BLOCK` bytes as it streams in (by the thread that
    fetched it: on a busy machine a process gets CPU time by the thread);
    :meth:`hash_in_order` hashes it from the buffer as soon as the bytes
    before it are hashed: the hash is of the bytes the remote sent, never
    read back from the file (a SeaweedFS mount reads back other bytes than
    those just written). :meth:`stop` returns only once no thread is
    writing, so the file is never closed under one.

    A thread takes a slot of :data:`_RANGED_SLOTS` before it takes the next
    part (lowest first); the slot (and the part's buffer) is given back once
    the part is hashed, or by :meth:`stop` for a part not hashed: the part
    in order is always fetched or being fetched, so the objects that share
    the slots all make progress, and at most :data:`RANGED_HELD` parts'
    bytes wait in memory across the process.

    :param fetch: ``fetch(start, end)``: the chunks of the bytes ``start`` to ``end`` (excluded) of the object
    :param writer: the object's :class:`ObjectWriter`
    """

    def __init__(self, fetch, size: int, writer):
        self.fetch = fetch
        self.size = size
        self.writer = writer
        self.count = -(-size // PART)
        self._next = 1
        #: bytes written of each part, from its start
        self._filled = [0] * self.count
        #: each part's buffer, while it is fetched and not yet hashed
        self._buffers: dict[int, bytearray] = {}
        #: parts whose slot went back (hashed)
        self._released = 0
        self._error: BaseException | None = None
        self._stopped = False
        #: threads writing into the file right now (stop waits for them: the file is closed next)
        self._writing = 0
        self._changed = threading.Condition()
        for n in range(min(RANGED_AT_ONCE, self.count - 1)):
            threading.Thread(target=self._work, name=f"ranged GET {n}", daemon=True).start()

    def _end(self, index: int) -> int:
        return min(self.size, (index + 1) * PART)

    def _work(self) -> None:
        while True:
            while not _RANGED_SLOTS.acquire(timeout=0.1):
                if self._stopped:
                    return
            with self._changed:
                if self._stopped or self._error is not None or self._next >= self.count:
                    _RANGED_SLOTS.release()
                    return
                index = self._next
                self._next += 1  # its slot is now given back by hash_in_order or stop
                buffer = self._buffers[index] = _BUFFERS.take()
            try:
                self._write_part(index, self.fetch(index * PART, self._end(index)), buffer)
            except BaseException as exc:  # handed to the thread that hashes
                with self._changed:
                    self._error = self._error or exc
                    self._changed.notify_all()
                return

    def _write_part(self, index: int, chunks, buffer: bytearray | None) -> None:
        """Writes part ``index`` from its chunks: copied into ``buffer`` and written from it every :data:`WRITE_BLOCK` bytes (None: each chunk written and hashed at once, in order), saying how far it is written each time; stops early once :meth:`stop` is called."""
        start, end = index * PART, self._end(index)
        offset = written = start
        kept = memoryview(buffer) if buffer is not None else None
        for chunk in chunks:
            view = memoryview(chunk)
            if offset + len(view) > end:
                if index == 0:
                    view = view[: end - offset]  # the first GET goes on: its part ends here
                else:
                    raise IntegrityError(f"the remote answered bytes {start}-{end - 1} with more than {end - start} bytes")
            if kept is None:
                self.writer.write_at(offset, view)
                self.writer.hash_in_order(view)
                offset = written = offset + len(view)
            else:
                kept[offset - start : offset - start + len(view)] = view
                offset += len(view)
                if offset - written < WRITE_BLOCK and offset < end:
                    continue
                with self._changed:
                    if self._stopped:
                        return
                    self._writing += 1
                try:
                    self.writer.write_at(written, kept[written - start : offset - start])
                    written = offset
                finally:
                    with self._changed:
                        self._writing -= 1
                        self._filled[index] = written - start  # only what was written is hashed
                        self._changed.notify_all()
            if offset == end:
                return
        if offset != end:
            raise IntegrityError(f"the remote answered bytes {start}-{end - 1} with {offset - start} bytes")

    def write_first(self, chunks) -> None:
        """Writes and hashes the first part from the chunks of the GET that said the object's size (the rest of that stream is left unread)."""
        self._write_part(0, chunks, None)
        self.writer.start_writeback(0, PART)

    def hash_in_order(self) -> None:
        """Hashes the other parts in order, each byte as soon as it is written; raises what a thread met."""
        for index in range(1, self.count):
            start, end = index * PART, self._end(index)
            hashed = 0
            while hashed < end - start:
                with self._changed:
                    while self._filled[index] <= hashed:
                        if self._error is not None:
                            raise self._error
                        self._changed.wait(0.1)  # wakes up for Ctrl-C and SIGTERM
                    filled = self._filled[index]
                    buffer = self._buffers[index]
                with memoryview(buffer) as view:
                    self.writer.hash_in_order(view[hashed:filled])
                hashed = filled
            with self._changed:
                self._released += 1
                del self._buffers[index]
            _BUFFERS.give_back(buffer)
            _RANGED_SLOTS.release()
            self.writer.start_writeback(start, end - start)
            pause("ranged-part-written")

    def stop(self) -> None:
        """Stops the threads (each at its next write), gives back the slots of the parts not hashed, drops their buffers, and waits until no thread is writing into the file (closed next)."""
        with self._changed:
            self._stopped = True
            unreleased = (self._next - 1) - self._released
            self._released += unreleased
            self._buffers.clear()
            self._changed.notify_all()
            while self._writing:
                self._changed.wait(0.1)
        for _ in range(unreleased):
            _RANGED_SLOTS.release()
