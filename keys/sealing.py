"""The sealing key: AES-256-GCM encryption of site location openings (DESIGN.md, Secrets).

:class:`AesGcmSealer` implements :class:`ledger.locations.Sealer`. Each ``seal`` draws a
fresh random 96-bit nonce; the caller's associated data (``ledger.store.locations`` binds
site code, version and commitment) is authenticated, so a ciphertext moved to another
row does not open. Every failure to open - wrong key, flipped bit, other associated data -
raises the same :class:`KeystoreError` and nothing else (fail closed, no oracle).

The 32-byte key lives in the keystore directory as ``<root>/sealing.key`` (mode 0600,
created atomically and never overwritten), wrapped under a key derived from the keystore
passphrase::

    {"v": 1, "kdf": "scrypt", "salt": b64, "n": 131072, "r": 8, "p": 1,
     "nonce": b64, "wrapped": b64}

``wrapped`` is AES-256-GCM(KEK, nonce, key, aad=WRAP_AAD) with KEK = scrypt(passphrase,
salt, n, r, p). A random nonce is safe: each KEK (fresh salt) wraps exactly one key.

The key never leaves the object: no accessor, no ``repr`` of it, no pickling or copying.
Its public name, ``key_id``, is SHA-256 over a domain prefix and the key, so it names the
key without revealing it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ledger.errors import KeystoreError

__all__ = [
    "SEALING_KEY_FILE",
    "AesGcmSealer",
    "load_or_create_sealer",
    "load_sealer",
]

SEALING_KEY_FILE: Final = "sealing.key"
KEY_LEN: Final = 32
NONCE_LEN: Final = 12
KEY_ID_DOMAIN: Final = b"reserve-ledger/sealing-key-id\n"
WRAP_AAD: Final = b"reserve-ledger/sealing-key/v1\n"
OPEN_FAILED: Final = "sealed location cannot be opened with this key"

# scrypt: N = 2**17, r = 8, p = 1 (128 MiB, ~0.4 s): the usual choice for a key file.
SCRYPT_N: Final = 2**17
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
# A file may say otherwise (an older or stronger setting) but not absurdly: a tampered
# file must not make loading take hours or all memory.
_MIN_N: Final = 2**14
_MAX_N: Final = 2**20
_SALT_LEN: Final = 16
_MAX_FILE: Final = 4096
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
# HKDF salt of the keys derived from the sealing key (AesGcmSealer.derive_key).
DERIVE_SALT: Final = b"reserve-ledger/derive\n"
_CORRUPT: Final = "wrong passphrase or corrupt sealing key file"


class AesGcmSealer:
    """AES-256-GCM with one 32-byte key; implements :class:`ledger.locations.Sealer`."""

    __slots__ = ("__aead", "__derive_base", "_key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_LEN:
            raise KeystoreError("a sealing key is 32 bytes")
        self.__aead = AESGCM(key)
        # HKDF-Extract (RFC 5869 section 2.2) with a fixed salt; each purpose then gets
        # its own HKDF-Expand under a label of its own (issue #9 item 5).
        self.__derive_base = hmac.new(DERIVE_SALT, key, hashlib.sha256).digest()
        self._key_id = hashlib.sha256(KEY_ID_DOMAIN + key).hexdigest()

    @classmethod
    def generate(cls) -> AesGcmSealer:
        """A sealer with a fresh random key, held in memory only."""
        return cls(AESGCM.generate_key(bit_length=256))

    @property
    def key_id(self) -> str:
        """Lowercase hex SHA-256(KEY_ID_DOMAIN || key): names the key, reveals nothing."""
        return self._key_id

    def derive_key(self, label: bytes) -> bytes:
        """A 32-byte key for another purpose (the access log's HMAC, idempotency's), by
        HKDF-SHA256 (RFC 5869) with ``label`` as its info: one label per purpose, so the
        keys are independent, reveal nothing of the sealing key and need no file."""
        if not label:
            raise KeystoreError("a derived key needs a label")
        return HKDFExpand(algorithm=SHA256(), length=KEY_LEN, info=label).derive(
            self.__derive_base
        )

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext || 16-byte tag) with a fresh random 96-bit nonce."""
        nonce = os.urandom(NONCE_LEN)
        return nonce, self.__aead.encrypt(nonce, bytes(plaintext), bytes(aad))

    def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        """Decrypt and authenticate, or raise ``KeystoreError(OPEN_FAILED)``."""
        plaintext: bytes | None = None
        if isinstance(nonce, bytes | bytearray | memoryview) and len(nonce) == NONCE_LEN:
            # Raised below, outside the handler: no chained exception, no detail.
            with contextlib.suppress(InvalidTag, ValueError, TypeError):
                plaintext = self.__aead.decrypt(bytes(nonce), bytes(ciphertext), bytes(aad))
        if plaintext is None:
            raise KeystoreError(OPEN_FAILED)
        return plaintext

    def __repr__(self) -> str:
        return f"AesGcmSealer(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an AesGcmSealer holds a key and cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("an AesGcmSealer holds a key and cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("an AesGcmSealer holds a key and cannot be copied")


# -- the key file ---------------------------------------------------------------------


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes):
        raise KeystoreError("the keystore passphrase must be bytes")
    if not passphrase:
        raise KeystoreError("an empty keystore passphrase is refused")


def _kek(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> AESGCM:
    return AESGCM(Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(passphrase))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _wrap(key: bytes, passphrase: bytes) -> bytes:
    salt = secrets.token_bytes(_SALT_LEN)
    nonce = secrets.token_bytes(NONCE_LEN)
    wrapped = _kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).encrypt(nonce, key, WRAP_AAD)
    doc = {
        "v": 1,
        "kdf": "scrypt",
        "salt": _b64(salt),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
    }
    return (json.dumps(doc, sort_keys=True) + "\n").encode("ascii")


def _field_b64(doc: dict[str, Any], name: str, length: int) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeystoreError(_CORRUPT)
    raw: bytes | None = None
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(value, validate=True)
    if raw is None or len(raw) != length:
        raise KeystoreError(_CORRUPT)
    return raw


def _field_int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeystoreError(_CORRUPT)
    return value


def _unwrap(data: bytes, passphrase: bytes) -> bytes:
    doc: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or set(doc) != {
        "v",
        "kdf",
        "salt",
        "n",
        "r",
        "p",
        "nonce",
        "wrapped",
    }:
        raise KeystoreError(_CORRUPT)
    if _field_int(doc, "v") != 1 or doc["kdf"] != "scrypt":
        raise KeystoreError("the sealing key file has an unsupported format")
    n, r, p = _field_int(doc, "n"), _field_int(doc, "r"), _field_int(doc, "p")
    if not (_MIN_N <= n <= _MAX_N and n & (n - 1) == 0 and r == SCRYPT_R and p == SCRYPT_P):
        raise KeystoreError("the sealing key file has unsupported scrypt parameters")
    salt = _field_b64(doc, "salt", _SALT_LEN)
    nonce = _field_b64(doc, "nonce", NONCE_LEN)
    wrapped = _field_b64(doc, "wrapped", KEY_LEN + 16)
    key: bytes | None = None
    # Raised below, outside the handler: nothing chained, the passphrase appears nowhere.
    with contextlib.suppress(InvalidTag, ValueError):
        key = _kek(passphrase, salt, n, r, p).decrypt(nonce, wrapped, WRAP_AAD)
    if key is None or len(key) != KEY_LEN:
        raise KeystoreError(_CORRUPT)
    return key


def _os_error(what: str, exc: OSError) -> KeystoreError:
    return KeystoreError(f"cannot {what} the sealing key file: {exc.strerror or 'error'}")


def _ensure_root(root: Path) -> None:
    try:
        root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise KeystoreError("the keystore path is not a directory")
        if stat.S_IMODE(st.st_mode) != _DIR_MODE:
            os.chmod(root, _DIR_MODE)
    except OSError as exc:
        raise KeystoreError(
            f"cannot create the keystore directory: {exc.strerror or 'error'}"
        ) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place_new(root: Path, data: bytes) -> None:
    """Create ``root/sealing.key`` with ``data``, complete and 0600, or raise
    FileExistsError if it exists (the same pattern as ``keys.filestore``: a fsynced temp
    file put in place with ``link(2)``, which never replaces)."""
    final = root / SEALING_KEY_FILE
    tmp = root / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _FILE_MODE
    )
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, _FILE_MODE)  # exact mode, whatever the umask
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError as exc:
            # Filesystems without hard links: fall back to a checked replace.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "exists") from None
            os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(root)


def _read(root: Path) -> bytes:
    path = root / SEALING_KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeystoreError("no sealing key in the keystore") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeystoreError("the sealing key file is a symbolic link") from None
        raise _os_error("open", exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeystoreError("the sealing key file is not a regular file")
        if st.st_size > _MAX_FILE:
            raise KeystoreError(_CORRUPT)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(_MAX_FILE + 1)
    finally:
        os.close(fd)


def load_sealer(root: Path | str, *, passphrase: bytes) -> AesGcmSealer:
    """Open ``<root>/sealing.key``. Missing file, wrong passphrase or damaged file:
    :class:`KeystoreError` (whose message never contains the passphrase or the key)."""
    _check_passphrase(passphrase)
    return AesGcmSealer(_unwrap(_read(Path(root)), passphrase))


def load_or_create_sealer(root: Path | str, *, passphrase: bytes) -> AesGcmSealer:
    """Open the sealing key, creating it (random, wrapped under ``passphrase``) if the
    keystore has none. Of two concurrent creators one wins; the other opens its key."""
    _check_passphrase(passphrase)
    root = Path(root)
    if os.path.lexists(root / SEALING_KEY_FILE):
        return load_sealer(root, passphrase=passphrase)
    _ensure_root(root)
    key = AESGCM.generate_key(bit_length=256)
    try:
        _place_new(root, _wrap(key, passphrase))
    except FileExistsError:
        return load_sealer(root, passphrase=passphrase)
    except OSError as exc:
        raise _os_error("write", exc) from None
    return AesGcmSealer(key)
