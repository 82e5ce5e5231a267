"""An Ed25519 signer backed by a pyca/cryptography private key held in memory."""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.crypto import key_id

__all__ = ["Ed25519Signer"]


class Ed25519Signer:
    """Implements :class:`ledger.crypto.Signer` around an ``Ed25519PrivateKey``.

    The private key never leaves the object: no accessor, no ``repr``/``str`` of it, and
    the object refuses to be pickled or copied (which would serialise the key).
    """

    __slots__ = ("__private_key", "_key_id", "_public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("Ed25519Signer needs an Ed25519PrivateKey")
        self.__private_key = private_key
        self._public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id(self._public_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A signer with a fresh random key (held in memory only)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public_key

    @property
    def key_id(self) -> str:
        """Lowercase hex SHA-256 of the public key (:func:`ledger.crypto.key_id`)."""
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature (RFC 8032, deterministic) over ``message``."""
        return self.__private_key.sign(message)

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an Ed25519Signer holds a private key and cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("an Ed25519Signer holds a private key and cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("an Ed25519Signer holds a private key and cannot be copied")
