"""The location-sealing key inside a PKCS#11 token (DESIGN.md, Secrets; issue #11).

An AES-256 key generated in the token, sensitive and not extractable, used only through
``CKM_AES_GCM`` inside the token: the key never leaves it. Ciphertexts have the same shape
as :class:`keys.sealing.AesGcmSealer`'s (random 96-bit nonce; ciphertext || 128-bit tag,
NIST SP 800-38D) so the store does not care which backend sealed a row.

``derive_key`` (the access log's HMAC key) is HMAC-SHA256 computed by the token with a
second, separate generic secret key that can only sign (``CKM_SHA256_HMAC``): one key,
one purpose, and neither leaves the token.

``key_id`` names the key by SHA-256 over a domain prefix and the key object's random
``CKA_ID``, set when the key is generated.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Final, NoReturn

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams

from keys.pkcs11token import Pkcs11Token
from keys.sealing import NONCE_LEN, OPEN_FAILED
from ledger.errors import KeystoreError

__all__ = ["AES_LABEL", "HMAC_LABEL", "Pkcs11Sealer", "load_or_create_pkcs11_sealer"]

AES_LABEL: Final = "reserve-ledger:seal:aes-256-gcm"
HMAC_LABEL: Final = "reserve-ledger:seal:derive-hmac"
KEY_ID_DOMAIN: Final = b"reserve-ledger/pkcs11-sealing-key-id\n"
_TAG_BITS: Final = 128


class Pkcs11Sealer:
    """Implements :class:`ledger.locations.Sealer` with AES-256-GCM inside the token."""

    __slots__ = ("__aes", "__hmac", "_key_id", "_token")

    def __init__(self, token: Pkcs11Token, aes: Any, hmac_key: Any, *, object_id: bytes) -> None:
        self._token = token
        self.__aes = aes
        self.__hmac = hmac_key
        self._key_id = hashlib.sha256(KEY_ID_DOMAIN + object_id).hexdigest()

    @property
    def key_id(self) -> str:
        return self._key_id

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_LEN)
        aes = self.__aes
        ct = self._token.run(
            "seal",
            lambda _s: aes.encrypt(
                bytes(plaintext),
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(nonce, bytes(aad), _TAG_BITS),
            ),
        )
        return nonce, bytes(ct)

    def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        """Decrypt and authenticate in the token, or raise ``KeystoreError(OPEN_FAILED)``."""
        if not isinstance(nonce, bytes | bytearray | memoryview) or len(nonce) != NONCE_LEN:
            raise KeystoreError(OPEN_FAILED)
        aes = self.__aes
        try:
            plain = self._token.run(
                "open",
                lambda _s: aes.decrypt(
                    bytes(ciphertext),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(bytes(nonce), bytes(aad), _TAG_BITS),
                ),
            )
        except (KeystoreError, TypeError, ValueError):
            plain = None  # one answer for every failure: no oracle
        if plain is None:
            raise KeystoreError(OPEN_FAILED)
        return bytes(plain)

    def derive_key(self, label: bytes) -> bytes:
        """HMAC-SHA256(derive key, ``label``) computed by the token."""
        key = self.__hmac
        out = self._token.run(
            "derive a key", lambda _s: key.sign(bytes(label), mechanism=Mechanism.SHA256_HMAC)
        )
        return bytes(out)

    def __repr__(self) -> str:
        return f"Pkcs11Sealer(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pkcs11Sealer is bound to a token session and cannot be pickled")


def _secret(session: Session, label: str, key_type: KeyType) -> Any | None:
    found = list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.LABEL: label}
        )
    )
    if len(found) > 1:
        raise KeystoreError("the token holds several sealing keys with the same label")
    return found[0] if found else None


_COMMON: Final = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}


def load_or_create_pkcs11_sealer(token: Pkcs11Token, *, create: bool = True) -> Pkcs11Sealer:
    """The token's sealing keys, generated in the token on first use if ``create``."""

    def get(session: Session) -> Pkcs11Sealer:
        aes = _secret(session, AES_LABEL, KeyType.AES)
        hmac_key = _secret(session, HMAC_LABEL, KeyType.GENERIC_SECRET)
        if aes is None:
            if not create:
                raise KeystoreError("no sealing key in the token")
            aes = session.generate_key(
                KeyType.AES,
                256,
                id=os.urandom(16),
                label=AES_LABEL,
                store=True,
                template={
                    **_COMMON,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                },
            )
        if hmac_key is None:
            hmac_key = session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=HMAC_LABEL,
                store=True,
                template={
                    **_COMMON,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: False,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                },
            )
        try:
            object_id = bytes(aes[Attribute.ID])
        except p11e.PKCS11Error:
            object_id = b""
        if not object_id:
            raise KeystoreError("the token's sealing key has no CKA_ID")
        return Pkcs11Sealer(token, aes, hmac_key, object_id=object_id)

    return token.run("open the sealing key", get)
