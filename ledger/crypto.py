"""Signatures and key ids, as the log and the verifier see them.

Verification uses libsodium through PyNaCl: on this project's machines it verifies Ed25519
about twice as fast as the OpenSSL binding (bench/), and the verifier's speed is bounded
by it. Signing and key storage live in ``keys/`` (pyca/cryptography); this module only
needs a signer's public shape, given as a ``typing.Protocol`` so that ``ledger`` never
imports a keystore backend.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Protocol, runtime_checkable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ledger.errors import SignatureInvalid

ED25519_PUBLIC_KEY_LEN = 32
ED25519_SIGNATURE_LEN = 64


def key_id(public_key: bytes) -> str:
    """Key id = lowercase hex SHA-256 of the raw 32-byte Ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_LEN:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(public_key).hexdigest()


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign with one Ed25519 key (a file key, an HSM object...)."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        ...

    @property
    def key_id(self) -> str:
        """``key_id(public_key)``."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``message``."""
        ...


def verify_signature(*, public_key: bytes, signature: bytes, message: bytes) -> None:
    """Return nothing if ``signature`` is valid, else raise :class:`SignatureInvalid`."""
    if len(signature) != ED25519_SIGNATURE_LEN:
        raise SignatureInvalid("signature is not 64 bytes")
    try:
        _verify_key(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise SignatureInvalid("signature does not verify") from exc


@functools.lru_cache(maxsize=4096)
def _verify_key(public_key: bytes) -> VerifyKey:
    """A log has few signing keys and each signs many entries: building the key object
    once per key saves ~5 % of a verification (bench/verify.py, issue #10)."""
    return VerifyKey(public_key)


class SignerSource(Protocol):
    """Where the embedded service finds private keys by name (``keys.FileKeystore``, an
    HSM...). Only the composition roots (CLI, API) construct one; ``ledger`` just uses it."""

    def load(self, name: str) -> Signer: ...

    def names(self) -> list[str]: ...

    def public_key(self, name: str) -> bytes: ...

    def generate(self, name: str) -> Signer: ...

    def exists(self, name: str) -> bool: ...
