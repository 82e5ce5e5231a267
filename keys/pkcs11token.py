"""One logged-in session on a PKCS#11 token, shared by the keystore and the sealer.

PKCS#11 keeps the login state per application (process), not per session: a second
``C_Login`` in the same process fails with ``CKR_USER_ALREADY_LOGGED_IN`` (PKCS#11 v2.40
section 5.6). So a process holds one :class:`Pkcs11Token` per (module, token label), made
by :func:`connect` and cached; a session is not safe for concurrent operations from
several threads (PKCS#11 v2.40 section 2.6.2), so every operation takes the token's lock.

A PKCS#11 session does not survive ``fork(2)``: the cache is keyed by process id, and a
forked worker re-initialises the library and logs in again on its first ``connect``.

Errors never contain the PIN: a refused PIN, a missing token or an unloadable module is a
:class:`ledger.errors.ConfigError` (the operator must fix the configuration), anything the
token refuses later a :class:`ledger.errors.KeystoreError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pkcs11
from pkcs11 import exceptions as p11e

from ledger.errors import ConfigError, KeystoreError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

__all__ = ["Pkcs11Token", "connect"]

T = TypeVar("T")

_lock = threading.Lock()
_tokens: dict[tuple[int, str, str], Pkcs11Token] = {}
_initialised_in: dict[str, int] = {}  # module -> the process that initialised it


class Pkcs11Token:
    """A logged-in read-write session on one token and the lock that serialises it."""

    __slots__ = ("__pin_digest", "_label", "_lock", "_session")

    def __init__(self, session: pkcs11.Session, *, label: str, pin_digest: bytes) -> None:
        self._session = session
        self._label = label
        self._lock = threading.RLock()
        self.__pin_digest = pin_digest

    @property
    def label(self) -> str:
        return self._label

    def run(self, what: str, fn: Callable[[pkcs11.Session], T]) -> T:
        """``fn(session)`` under the lock; a token error becomes a KeystoreError naming
        ``what`` and the PKCS#11 error class only (never data, never the PIN)."""
        with self._lock:
            try:
                return fn(self._session)
            except p11e.PKCS11Error as exc:
                raise KeystoreError(
                    f"the PKCS#11 token refused to {what} ({type(exc).__name__})"
                ) from None

    def same_pin(self, pin_digest: bytes) -> bool:
        return hmac.compare_digest(self.__pin_digest, pin_digest)

    def __repr__(self) -> str:
        return f"Pkcs11Token(label={self._label!r})"

    __str__ = __repr__


def _pin_digest(module: str, label: str, pin: str) -> bytes:
    # Only to tell a second caller with another PIN apart; never stored or logged.
    return hashlib.sha256(f"{module}\0{label}\0{pin}".encode()).digest()


def _load(module: str) -> Pkcs11Lib:
    """The loaded library (python-pkcs11 keeps one instance per path), initialised in
    this process: a child of ``fork(2)`` inherits the parent's library state, which
    PKCS#11 says it must not use (v2.40 section 6.6.1), so it re-initialises it once."""
    if not os.path.isfile(module):
        raise ConfigError("RESERVE_PKCS11_MODULE does not name a file (the PKCS#11 library)")
    try:
        lib = pkcs11.lib(module)
        pid = os.getpid()
        if _initialised_in.setdefault(module, pid) != pid:
            lib.reinitialize()
            _initialised_in[module] = pid
        return lib
    except (p11e.PKCS11Error, OSError):
        raise ConfigError("RESERVE_PKCS11_MODULE cannot be loaded as a PKCS#11 library") from None


def connect(*, module: str, token_label: str, pin: str) -> Pkcs11Token:
    """The process's logged-in session on the token labelled ``token_label``.

    A wrong or locked PIN, an unknown token or module: :class:`ConfigError`, one line,
    without the PIN.
    """
    if not pin:
        raise ConfigError("RESERVE_PKCS11_PIN is empty; the token's user PIN is required")
    digest = _pin_digest(module, token_label, pin)
    key = (os.getpid(), module, token_label)
    with _lock:
        found = _tokens.get(key)
        if found is not None:
            if not found.same_pin(digest):
                raise ConfigError("the PKCS#11 token refused the PIN (RESERVE_PKCS11_PIN)")
            return found
        lib = _load(module)
        try:
            token = lib.get_token(token_label=token_label)
        except p11e.NoSuchToken:
            raise ConfigError(
                f"no PKCS#11 token labelled '{token_label}' (RESERVE_PKCS11_TOKEN)"
            ) from None
        except p11e.MultipleTokensReturned:
            raise ConfigError(
                f"several PKCS#11 tokens are labelled '{token_label}'; labels must be unique"
            ) from None
        except p11e.PKCS11Error as exc:
            raise ConfigError(f"cannot list PKCS#11 tokens ({type(exc).__name__})") from None
        try:
            session = token.open(user_pin=pin, rw=True)
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
            raise ConfigError("the PKCS#11 token refused the PIN (RESERVE_PKCS11_PIN)") from None
        except p11e.PinLocked:
            raise ConfigError("the PKCS#11 token's user PIN is locked; ask its security officer") from None
        except p11e.PKCS11Error as exc:
            raise ConfigError(
                f"cannot log in to the PKCS#11 token ({type(exc).__name__})"
            ) from None
        found = _tokens[key] = Pkcs11Token(session, label=token_label, pin_digest=digest)
        return found
