"""A keystore of passphrase-encrypted Ed25519 keys in a directory.

Layout of ``root`` (mode 0700)::

    <name>.key   encrypted PKCS#8 PEM ("ENCRYPTED PRIVATE KEY"), mode 0600
    <name>.pub   the raw public key as lowercase hex and a newline, mode 0644

The ``.pub`` file lets anyone list public keys without the passphrase; ``load`` checks it
against the decrypted private key. Files appear atomically and complete: each is written
to a temporary file in the same directory (created 0600), fsynced, then moved into place,
and the directory is fsynced. A private key is never overwritten: it is put in place with
``link(2)``, which fails if the name is taken, so two concurrent ``generate`` calls for the
same name cannot both win.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from keys.signer import Ed25519Signer
from ledger.errors import KeystoreError

__all__ = ["KEY_NAME_PATTERN", "FileKeystore", "validate_key_name"]

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

    def __init__(self, root: Path | str, *, passphrase: bytes) -> None:
        if not isinstance(passphrase, bytes):
            raise KeystoreError("the keystore passphrase must be bytes")
        if not passphrase:
            raise KeystoreError("an empty keystore passphrase is refused")
        self._root = Path(root)
        self.__passphrase = passphrase

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
        pem = private_key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(self.__passphrase)
        )
        signer = Ed25519Signer(private_key)
        try:
            self._place_new(pem, _KEY_MODE, key_path)
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

    def load(self, name: str) -> Ed25519Signer:
        """Decrypt key ``name``. Wrong passphrase or damaged file: KeystoreError."""
        data = self._read_key_file(name)
        try:
            private_key = load_pem_private_key(data, password=self.__passphrase)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Never chain: the underlying message must not reach logs or callers.
            raise KeystoreError(f"wrong passphrase or corrupt key file for '{name}'") from None
        if not isinstance(private_key, Ed25519PrivateKey):
            raise KeystoreError(f"the key file for '{name}' does not hold an Ed25519 key")
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
