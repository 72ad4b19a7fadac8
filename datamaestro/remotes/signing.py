"""Signed action records: a lab decides whose preparations it trusts.

An object of a remote proves itself (its name is its blake3); an action
record does not: "this recipe gives these bytes" is believed because the
remote says so. A remote whose settings list ``trusted_keys`` has its
records used only when one of those Ed25519 keys signed them; the others are
ignored (one warning per remote and run), so that the data comes from the
next remote or the original source. This is Nix's ``trusted-public-keys``
for the action cache.

**What is signed.** The bytes :func:`signed_bytes` returns: the line
``datamaestro action record v1`` and a newline, then the canonical JSON
(sorted keys, no spaces, UTF-8) of ``{"digest", "key", "kind", "size",
"source_digest", "value"}`` — the recipe key the record answers, the
output's kind, digest, size, source digest (a lock made from the record pins
it, and checks later downloads against it) and (for a ``value`` output) its
JSON value, ``null`` where the output has none. The URL is not signed: it is
only shown in messages, and differs from machine to machine (mirrors). A
reader builds these bytes from the key it asked for, never from the key the
document claims, so a record moved to another key fails.

**Where signatures go.** A record's JSON gets ``"signatures": ["NAME:BASE64",
...]``: the name of the key and the 64-byte Ed25519 signature, in base64.

**Key files.** A secret key file holds one line ``NAME:BASE64`` (the 32-byte
Ed25519 seed); a public key is written ``NAME:BASE64`` too (32 bytes). A
secret key file that anyone but its owner may read is refused.

The signature library is `cryptography
<https://cryptography.io>`_ (``pip install 'datamaestro[signing]'``),
imported only when a key is generated, a push signs, or a remote has
``trusted_keys``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..store.digests import canonical_json

if TYPE_CHECKING:
    from ..store import Output

logger = logging.getLogger(__name__)

#: the first line of the signed bytes: a signature made for something else never verifies here
DOMAIN = b"datamaestro action record v1\n"
MISSING_LIBRARY_HINT = "pip install 'datamaestro[signing]' (it installs cryptography, which makes and checks the signatures)"
#: a key's name: what ``trusted_keys`` and signatures call it
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: signatures read from one record, at most (a record is a small document from outside)
MAX_SIGNATURES = 32
SEED_BYTES = 32
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64


def _ed25519():
    """The Ed25519 module of cryptography, or a clear error when the optional dependency is missing."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UsageError("signed action records need the cryptography library, which is not installed", hint=MISSING_LIBRARY_HINT) from None
    return ed25519


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int) -> bytes | None:
    """The bytes of a base64 text when it decodes to exactly ``size`` bytes; None otherwise."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return data if len(data) == size else None


def split_named(text: str, size: int) -> tuple[str, bytes] | None:
    """(name, bytes) of a ``NAME:BASE64`` text whose bytes are ``size`` long; None when malformed."""
    if not isinstance(text, str):
        return None
    name, colon, encoded = text.strip().partition(":")
    if not colon or not NAME_PATTERN.match(name):
        return None
    data = _unb64(encoded, size)
    return None if data is None else (name, data)


def signed_bytes(key: str, output: "Output") -> bytes:
    """What a signature of an action record covers (see the module documentation)."""
    return DOMAIN + canonical_json(
        {
            "digest": output.digest,
            "key": key,
            "kind": str(output.kind),
            "size": output.size,
            "source_digest": output.source_digest,
            "value": output.value if output.kind == "value" else None,
        }
    )


# -- secret keys


@dataclass
class SigningKey:
    """A named Ed25519 secret key, read from its file by :func:`load_signing_key`."""

    name: str
    seed: bytes

    def _private(self):
        return _ed25519().Ed25519PrivateKey.from_private_bytes(self.seed)

    def public_key(self) -> str:
        """``NAME:BASE64`` of the public key (what members put in ``trusted_keys``)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return f"{self.name}:{_b64(self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))}"

    def sign(self, key: str, output: "Output") -> str:
        """The ``NAME:BASE64`` signature of the record of ``key`` giving ``output``."""
        return f"{self.name}:{_b64(self._private().sign(signed_bytes(key, output)))}"


def default_key_file(name: str) -> Path:
    """Where ``store key generate NAME`` writes by default: ``<config folder>/keys/NAME.secret``.

    The config folder is the settings file's (``$DATAMAESTRO_CONFIG``'s
    folder when set, else the platform's config folder).
    """
    from ..settings import user_settings_path

    return user_settings_path().parent / "keys" / f"{name}.secret"


def check_key_name(name: str) -> str:
    """The name, when it can name a key.

    :raises UsageError: it is empty, too long or holds other characters than letters, digits, ``.``, ``_``, ``-``
    """
    if not NAME_PATTERN.match(name or ""):
        raise UsageError(f"{name!r} cannot name a key", hint="use letters, digits, '.', '_' and '-' (at most 64), e.g. lab-ci")
    return name


def generate_key(name: str, out: Path | None = None) -> tuple[Path, str]:
    """Writes a new Ed25519 secret key (mode 0600) and returns (its file, the public key ``NAME:BASE64``).

    The file is written whole under a temporary name, then linked into
    place: an existing file is never replaced, and no half-written key is
    ever seen.

    :param out: the file (default: :func:`default_key_file`)
    :raises UsageError: a bad name, an existing file, a folder that cannot be written
    """
    check_key_name(name)
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    target = Path(out).expanduser() if out is not None else default_key_file(name)
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists: a key is never overwritten", hint="choose another file with --out, or remove that one first")
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, f"{name}:{_b64(seed)}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, target)  # fails rather than replace a file created meanwhile
    except FileExistsError:
        raise UsageError(f"{target} already exists: a key is never overwritten", hint="choose another file with --out") from None
    except OSError as exc:
        raise UsageError(f"cannot write the key {target}: {exc.strerror}", hint="choose a folder you may write with --out") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return target, SigningKey(name, seed).public_key()


def load_signing_key(path: Path) -> SigningKey:
    """The secret key of a file written by :func:`generate_key`.

    :raises UsageError: the file cannot be read, may be read or written by
        others than its owner (group or others), or holds no key
    """
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot read the secret key {path}: {exc.strerror}", hint="give the file `datamaestro store key generate` wrote") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"the secret key {path} is not a file")
        if info.st_mode & 0o077:
            raise UsageError(
                f"the secret key {path} may be read or changed by others than its owner (mode {stat.S_IMODE(info.st_mode):04o}): it is not used",
                hint=f"chmod 600 {path} (and make a new key if others may have read it)",
            )
        text = os.read(fd, 4096).decode("ascii", errors="replace")
    finally:
        os.close(fd)
    parsed = split_named(text, SEED_BYTES)
    if parsed is None:
        raise UsageError(f"{path} holds no secret key (expected one line NAME:BASE64)", hint="give the file `datamaestro store key generate` wrote")
    return SigningKey(*parsed)


# -- trusted keys


def parse_public_key(text: str) -> tuple[str, bytes] | None:
    """(name, 32 bytes) of a public key ``NAME:BASE64``; None when malformed."""
    return split_named(text, PUBLIC_BYTES)


def record_signatures(data: bytes | dict) -> list[str]:
    """The ``signatures`` of a record's JSON (bytes or parsed); [] when it has none or they are malformed."""
    try:
        document = json.loads(data) if isinstance(data, (bytes, str)) else data
    except ValueError:
        return []
    signatures = document.get("signatures") if isinstance(document, dict) else None
    if not isinstance(signatures, list):
        return []
    return [s for s in signatures[:MAX_SIGNATURES] if isinstance(s, str) and len(s) < 256]


class RecordTrust:
    """Which action records of one remote may be used: those signed by one of its ``trusted_keys``.

    :param label: the remote, for messages
    :param trusted_keys: ``NAME:BASE64`` public keys (the settings checked their form)
    :raises UsageError: cryptography is not installed (a remote that must be checked is never used unchecked)
    """

    def __init__(self, label: str, trusted_keys: list[str]):
        ed25519 = _ed25519()
        self.label = label
        self.names = []
        self._keys: dict[str, list] = {}
        for text in trusted_keys:
            parsed = parse_public_key(text)
            if parsed is None:
                raise UsageError(f"remote {label}: trusted key {text!r} is not NAME:BASE64 of an Ed25519 public key")
            name, raw = parsed
            self.names.append(name)
            self._keys.setdefault(name, []).append(ed25519.Ed25519PublicKey.from_public_bytes(raw))
        self._warned = False
        self._lock = threading.Lock()
        #: records ignored during the run
        self.ignored = 0

    def verified(self, key: str, output: "Output", signatures: list[str]) -> bool:
        """True when one of the signatures is a trusted key's over this record."""
        from cryptography.exceptions import InvalidSignature

        message = signed_bytes(key, output)
        for text in signatures:
            parsed = split_named(text, SIGNATURE_BYTES)
            if parsed is None:
                continue
            name, signature = parsed
            for public in self._keys.get(name, ()):
                try:
                    public.verify(signature, message)
                    return True
                except InvalidSignature:
                    continue
        return False

    def admits(self, key: str, data: bytes) -> bool:
        """True when the record ``data`` (its JSON), asked for the recipe key ``key``, is signed by a trusted key.

        An unsigned, badly signed or unreadable record is ignored: the first
        one of the run is reported in a warning, the others counted.
        """
        from ..store import Output

        try:
            document = json.loads(data)
            output = Output.from_json(document["output"])
        except (ValueError, KeyError, TypeError, AttributeError):
            output = None
        if output is not None and self.verified(key, output, record_signatures(document)):
            return True
        with self._lock:
            self.ignored += 1
            first, self._warned = not self._warned, True
        if first:
            logger.warning(
                "remote cache %s: ignored an action record not signed by a trusted key (%s); "
                "such records are ignored for this run and the data comes from the next remote or the original source",
                self.label, ", ".join(dict.fromkeys(self.names)),
            )
        return False


def describe_trust(spec: dict) -> str:
    """How a remote's action records are trusted, in one phrase (``info``, the docs)."""
    keys = [parse_public_key(text) for text in spec.get("trusted_keys", ()) or ()]
    if not spec.get("trusted_keys"):
        return "action records trusted as the remote is (no trusted_keys: anyone who may push decides)"
    names = ", ".join(dict.fromkeys(k[0] for k in keys if k))
    return f"action records used only when signed by a trusted key ({names})"


def merge_signatures(existing: bytes | None, key: str, output: "Output", ours: str | None) -> list[str]:
    """The signatures a pushed record carries: those of the remote's record when it says the same, plus ours.

    The remote's signatures are kept only when its record signs the same
    bytes (same key, kind, digest, size, value): they stay as valid as they
    were. A signature of the same key name as ours is replaced by ours.
    """
    from ..store import Output

    kept: list[str] = []
    if existing is not None:
        try:
            document = json.loads(existing)
            theirs = Output.from_json(document["output"])
        except (ValueError, KeyError, TypeError, AttributeError):
            theirs = None
        if theirs is not None and signed_bytes(key, theirs) == signed_bytes(key, output):
            kept = record_signatures(document)
    if ours is not None:
        name = ours.partition(":")[0]
        kept = [s for s in kept if s.partition(":")[0] != name] + [ours]
    return list(dict.fromkeys(kept))
