"""A keystore of passphrase-encrypted Ed25519 keys in a directory.

Layout of ``root`` (mode 0700)::

    <name>.key   the encrypted private key, mode 0600 (below)
    <name>.pub   the raw public key as lowercase hex and a newline, mode 0644

A key file (issue #9 item 5) is JSON naming its KDF and parameters::

    {"v": 2, "kdf": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": b64(16 bytes),
     "pub": hex, "nonce": b64(12 bytes), "ciphertext": b64}

``ciphertext`` is AES-256-GCM(scrypt(passphrase, salt), nonce, the 32-byte private key,
aad = KEYFILE_AAD || pub): every file has its own salt, and scrypt at N = 2^17, r = 8
(128 MiB, ~0.4 s) makes each guess of a shared passphrase cost that much per file, where
the PKCS#8 ``BestAvailableEncryption`` files of before (PBKDF2, 2,048 iterations) cost
next to nothing. Those older files still load (existing keystores keep working);
``reserve keys upgrade`` rewrites them (:meth:`FileKeystore.upgrade`).

Tests create hundreds of keystores: ``unsafe_kdf_cost`` (or ``RESERVE_UNSAFE_KDF_COST``,
which only the test suite sets) lowers log2(N) for *new* files, with a warning logged.

The ``.pub`` file lets anyone list public keys without the passphrase; ``load`` checks it
against the decrypted private key. Files appear atomically and complete: each is written
to a temporary file in the same directory (created 0600), fsynced, then moved into place,
and the directory is fsynced. A private key is never overwritten: it is put in place with
``link(2)``, which fails if the name is taken, so two concurrent ``generate`` calls for the
same name cannot both win.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import structlog
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from keys.signer import Ed25519Signer
from ledger.errors import KeystoreError

__all__ = ["KEY_NAME_PATTERN", "FileKeystore", "KeyFileInfo", "validate_key_name"]

log = structlog.get_logger("keys")

KEYFILE_VERSION: Final = 2
KEYFILE_AAD: Final = b"reserve-ledger/keyfile/v2\n"
SCRYPT_LOG2_N: Final = 17  # N = 2^17, r = 8, p = 1: 128 MiB, ~0.4 s per key
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
# What a file may state: below, it is a test keystore (unsafe_kdf_cost); above, a file
# that would make a load take minutes and gigabytes (a denial of service, not a key).
_LOG2_N_RANGE: Final = (4, 20)
UNSAFE_KDF_COST_ENV: Final = "RESERVE_UNSAFE_KDF_COST"
# At most one scrypt per core at a time in a process: a service whose threads all load
# different users' keys at once would otherwise hold 128 MiB each and finish none for
# seconds; in turn, the first keys are ready after one KDF's time (issue #11).
_KDF_SLOTS: Final = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))

KEY_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_KEY_SUFFIX = ".key"
_PUB_SUFFIX = ".pub"
_DIR_MODE = 0o700
_KEY_MODE = 0o600
_PUB_MODE = 0o644
#: An encrypted Ed25519 PKCS#8 PEM is about 300 bytes; anything far larger is not ours.
_MAX_KEY_FILE = 64 * 1024


# ``<root>/sealing.key`` belongs to keys.sealing (the location sealing key), not to a signer.
RESERVED_NAMES = frozenset({"sealing"})


def validate_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name, else raise :class:`KeystoreError`.

    Names are 1-64 characters of ``a-z 0-9 . _ -`` starting with a letter or digit, so a
    name can never be a path (no ``/``), a hidden or temporary file, or ``..``.
    """
    if not isinstance(name, str) or KEY_NAME_PATTERN.fullmatch(name) is None or name in RESERVED_NAMES:
        raise KeystoreError(
            "invalid key name: use 1-64 characters from a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileKeystore:
    """Encrypted key files under ``root``; satisfies :class:`keys.backend.Keystore`."""

    def __init__(
        self, root: Path | str, *, passphrase: bytes, unsafe_kdf_cost: int | None = None
    ) -> None:
        if not isinstance(passphrase, bytes):
            raise KeystoreError("the keystore passphrase must be bytes")
        if not passphrase:
            raise KeystoreError("an empty keystore passphrase is refused")
        self._root = Path(root)
        self.__passphrase = passphrase
        if unsafe_kdf_cost is None and os.environ.get(UNSAFE_KDF_COST_ENV):
            try:
                unsafe_kdf_cost = int(os.environ[UNSAFE_KDF_COST_ENV])
            except ValueError:
                raise KeystoreError(f"{UNSAFE_KDF_COST_ENV} must be an integer") from None
        self._log2_n = SCRYPT_LOG2_N
        if unsafe_kdf_cost is not None:
            if not _LOG2_N_RANGE[0] <= unsafe_kdf_cost <= _LOG2_N_RANGE[1]:
                raise KeystoreError("unsafe_kdf_cost is log2(N), between 4 and 20")
            self._log2_n = unsafe_kdf_cost
        self._warned = False

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"FileKeystore(root={str(self._root)!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a FileKeystore holds a passphrase and cannot be pickled")

    # ----------------------------------------------------------------------------- paths

    def _key_path(self, name: str) -> Path:
        return self._root / (validate_key_name(name) + _KEY_SUFFIX)

    def _pub_path(self, name: str) -> Path:
        return self._root / (validate_key_name(name) + _PUB_SUFFIX)

    def _ensure_root(self) -> None:
        """Create the directory 0700 if needed; tighten it to 0700 if it is looser."""
        try:
            self._root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            st = os.lstat(self._root)
            if not stat.S_ISDIR(st.st_mode):
                raise KeystoreError("the keystore path is not a directory")
            if stat.S_IMODE(st.st_mode) != _DIR_MODE:
                os.chmod(self._root, _DIR_MODE)
        except KeystoreError:
            raise
        except OSError as exc:
            raise KeystoreError(
                f"cannot create the keystore directory: {exc.strerror or 'error'}"
            ) from None

    def _write_temp(self, data: bytes, mode: int) -> Path:
        """Write ``data`` to a fresh 0600 temp file in ``root``, fsynced; chmod to ``mode``."""
        tmp = self._root / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _KEY_MODE
        )
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)  # exact mode, whatever the umask
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        return tmp

    def _place_new(self, data: bytes, mode: int, final: Path) -> None:
        """Atomically create ``final`` with ``data``; fail if it exists."""
        tmp = self._write_temp(data, mode)
        try:
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

    def _place_replace(self, data: bytes, mode: int, final: Path) -> None:
        tmp = self._write_temp(data, mode)
        try:
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    # ------------------------------------------------------------------------------- API

    def generate(self, name: str) -> Ed25519Signer:
        """Create a new key ``name``; refuse (KeystoreError) if it already exists."""
        key_path = self._key_path(name)
        pub_path = self._pub_path(name)
        self._ensure_root()
        if os.path.lexists(key_path):
            raise KeystoreError(f"a key named '{name}' already exists; refusing to overwrite it")
        private_key = Ed25519PrivateKey.generate()
        data = self._encrypt(private_key)
        signer = Ed25519Signer(private_key)
        try:
            self._place_new(data, _KEY_MODE, key_path)
        except FileExistsError:
            raise KeystoreError(
                f"a key named '{name}' already exists; refusing to overwrite it"
            ) from None
        except OSError as exc:
            raise KeystoreError(
                f"cannot write the key file for '{name}': {exc.strerror or 'error'}"
            ) from None
        try:
            # Derived data: replacing a stale leftover .pub is correct.
            pub_text = (signer.public_key.hex() + "\n").encode("ascii")
            self._place_replace(pub_text, _PUB_MODE, pub_path)
            _fsync_dir(self._root)
        except OSError as exc:
            raise KeystoreError(
                f"cannot write the public key file for '{name}': {exc.strerror or 'error'}"
            ) from None
        return signer

    def _read_key_file(self, name: str) -> bytes:
        path = self._key_path(name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeystoreError(f"no key named '{name}'") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KeystoreError(f"the key file for '{name}' is a symbolic link") from None
            raise KeystoreError(
                f"cannot open the key file for '{name}': {exc.strerror or 'error'}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeystoreError(f"the key file for '{name}' is not a regular file")
            if st.st_size > _MAX_KEY_FILE:
                raise KeystoreError(f"wrong passphrase or corrupt key file for '{name}'")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(_MAX_KEY_FILE + 1)
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- key file format

    def _encrypt(self, private_key: Ed25519PrivateKey) -> bytes:
        if self._log2_n < SCRYPT_LOG2_N and not self._warned:
            # Said when it matters: a weak file is about to be written.
            log.warning(
                "unsafe_kdf_cost",
                log2_n=self._log2_n,
                note="new key files are cheap to crack: for tests only",
            )
            self._warned = True
        salt = secrets.token_bytes(16)
        nonce = secrets.token_bytes(12)
        n = 2**self._log2_n
        with _KDF_SLOTS:
            kek = Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(self.__passphrase)
        raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        pub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        doc = {
            "v": KEYFILE_VERSION,
            "kdf": "scrypt",
            "n": n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": base64.b64encode(salt).decode(),
            "pub": pub,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(
                AESGCM(kek).encrypt(nonce, raw, KEYFILE_AAD + pub.encode())
            ).decode(),
        }
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    def _decrypt(self, name: str, data: bytes) -> Ed25519PrivateKey:
        wrong = f"wrong passphrase or corrupt key file for '{name}'"
        if data.lstrip().startswith(b"-----BEGIN"):
            # PKCS#8 of before issue #9: still read, until `reserve keys upgrade`.
            try:
                legacy = load_pem_private_key(data, password=self.__passphrase)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                # Never chain: the underlying message must not reach logs or callers.
                raise KeystoreError(wrong) from None
            if not isinstance(legacy, Ed25519PrivateKey):
                raise KeystoreError(f"the key file for '{name}' does not hold an Ed25519 key")
            return legacy
        info = _parse_key_file(name, data)
        try:
            with _KDF_SLOTS:
                kek = Scrypt(salt=info.salt, length=32, n=info.n, r=info.r, p=info.p).derive(
                    self.__passphrase
                )
            raw = AESGCM(kek).decrypt(info.nonce, info.ciphertext, KEYFILE_AAD + info.pub.encode())
        except (InvalidTag, ValueError):
            raise KeystoreError(wrong) from None
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
        pub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        if pub != info.pub:
            raise KeystoreError(wrong)
        return private_key

    def key_file_info(self, name: str) -> KeyFileInfo:
        """How ``name``'s file is protected (no passphrase needed): for ``keys upgrade``
        and for checking the KDF settings."""
        data = self._read_key_file(name)
        if data.lstrip().startswith(b"-----BEGIN"):
            return KeyFileInfo(kdf="pkcs8-pbkdf2", n=0, r=0, p=0)
        return _parse_key_file(name, data)

    def needs_upgrade(self, name: str) -> bool:
        info = self.key_file_info(name)
        return info.kdf != "scrypt" or info.n < 2**self._log2_n

    def upgrade(self, name: str) -> bool:
        """Re-encrypt ``name`` with the current KDF settings if its file is older or
        weaker (decrypting it first with the passphrase); whether it was rewritten. The
        file is replaced atomically; the key itself never changes."""
        if not self.needs_upgrade(name):
            return False
        private_key = self._decrypt(name, self._read_key_file(name))
        try:
            self._place_replace(self._encrypt(private_key), _KEY_MODE, self._key_path(name))
            _fsync_dir(self._root)
        except OSError as exc:
            raise KeystoreError(
                f"cannot rewrite the key file for '{name}': {exc.strerror or 'error'}"
            ) from None
        log.info("key_file_upgraded", key=name)
        return True

    def load(self, name: str) -> Ed25519Signer:
        """Decrypt key ``name``. Wrong passphrase or damaged file: KeystoreError."""
        private_key = self._decrypt(name, self._read_key_file(name))
        signer = Ed25519Signer(private_key)
        try:
            recorded = self._read_public_hex(name)
        except KeystoreError:
            recorded = None  # .pub lost: the private key is authoritative
        if recorded is not None and recorded != signer.public_key:
            raise KeystoreError(f"the public key file for '{name}' does not match its private key")
        return signer

    def exists(self, name: str) -> bool:
        """Whether a private key ``name`` exists (invalid names raise KeystoreError)."""
        return os.path.lexists(self._key_path(name))

    def names(self) -> list[str]:
        """Sorted names of the private keys in the store (empty if ``root`` is absent)."""
        try:
            entries = os.listdir(self._root)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeystoreError(
                f"cannot list the keystore directory: {exc.strerror or 'error'}"
            ) from None
        found = []
        for entry in entries:
            if not entry.endswith(_KEY_SUFFIX):
                continue
            name = entry[: -len(_KEY_SUFFIX)]
            if KEY_NAME_PATTERN.fullmatch(name) is not None and name not in RESERVED_NAMES:
                found.append(name)
        return sorted(found)

    def _read_public_hex(self, name: str) -> bytes:
        path = self._pub_path(name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeystoreError(f"no public key file for '{name}'") from None
        except OSError as exc:
            raise KeystoreError(
                f"cannot open the public key file for '{name}': {exc.strerror or 'error'}"
            ) from None
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(200)
        text = raw.decode("ascii", errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{64}", text) is None:
            raise KeystoreError(f"the public key file for '{name}' is corrupt")
        return bytes.fromhex(text)

    def public_key(self, name: str) -> bytes:
        """The raw 32-byte public key of ``name``, read from ``<name>.pub`` (no passphrase)."""
        if not self.exists(name):
            raise KeystoreError(f"no key named '{name}'")
        return self._read_public_hex(name)


@dataclass(frozen=True)
class KeyFileInfo:
    """The protection a key file states: its KDF and parameters (and, for the scrypt
    format, what is needed to decrypt it with the passphrase)."""

    kdf: str  # "scrypt", or "pkcs8-pbkdf2" for the files of before issue #9
    n: int
    r: int
    p: int
    salt: bytes = field(default=b"", repr=False)
    pub: str = field(default="", repr=False)
    nonce: bytes = field(default=b"", repr=False)
    ciphertext: bytes = field(default=b"", repr=False)


def _parse_key_file(name: str, data: bytes) -> KeyFileInfo:
    corrupt = KeystoreError(f"wrong passphrase or corrupt key file for '{name}'")
    try:
        doc: Any = json.loads(data)
    except ValueError:
        raise corrupt from None
    if not isinstance(doc, dict) or doc.get("v") != KEYFILE_VERSION or doc.get("kdf") != "scrypt":
        raise KeystoreError(f"the key file for '{name}' is in an unknown format")
    try:
        n, r, p = (doc[k] for k in ("n", "r", "p"))
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (n, r, p)):
            raise corrupt
        if n < 2 or n & (n - 1) or not _LOG2_N_RANGE[0] <= n.bit_length() - 1 <= _LOG2_N_RANGE[1]:
            raise KeystoreError(f"the key file for '{name}' states unsupported scrypt parameters")
        if not (1 <= r <= 32 and 1 <= p <= 16):
            raise KeystoreError(f"the key file for '{name}' states unsupported scrypt parameters")
        salt = base64.b64decode(doc["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        ciphertext = base64.b64decode(doc["ciphertext"], validate=True)
        pub = doc["pub"]
    except (KeyError, TypeError, binascii.Error):
        raise corrupt from None
    if len(salt) < 16 or len(nonce) != 12 or not isinstance(pub, str) or not re.fullmatch(r"[0-9a-f]{64}", pub):
        raise corrupt
    return KeyFileInfo(kdf="scrypt", n=n, r=r, p=p, salt=salt, pub=pub, nonce=nonce, ciphertext=ciphertext)
