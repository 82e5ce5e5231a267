"""The keystore interface every backend implements (encrypted files, PKCS#11 HSM...)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ledger.crypto import Signer

__all__ = ["Keystore"]


@runtime_checkable
class Keystore(Protocol):
    """Named Ed25519 keys: user names such as ``admin`` or ``alice``, or ``log``.

    Names match ``^[a-z0-9][a-z0-9._-]{0,63}$``. Every failure raises
    :class:`ledger.errors.KeystoreError` whose message never contains key material or a
    passphrase/PIN. A backend may keep private keys where they cannot be read (an HSM):
    callers only ever get a :class:`ledger.crypto.Signer`.
    """

    def generate(self, name: str) -> Signer:
        """Create a new key under ``name``; refuse if one already exists."""
        ...

    def load(self, name: str) -> Signer:
        """Open the existing key ``name`` for signing."""
        ...

    def exists(self, name: str) -> bool:
        """Whether a key named ``name`` exists."""
        ...

    def names(self) -> list[str]:
        """The names of all keys, sorted."""
        ...

    def public_key(self, name: str) -> bytes:
        """The raw 32-byte public key of ``name`` (needs no passphrase/PIN)."""
        ...
