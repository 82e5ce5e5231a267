"""A keystore whose Ed25519 keys live in a PKCS#11 token (an HSM, or SoftHSM2 in tests).

Keys are generated inside the token (``CKM_EC_EDWARDS_KEY_PAIR_GEN``, curve Ed25519 named
by its OID 1.3.101.112, RFC 8410) as token objects that are private, sensitive and not
extractable, so the private half can never be read or wrapped out (PKCS#11 v3.0 section
4.9); signatures are made by the token with ``CKM_EDDSA`` (pure Ed25519, RFC 8032).

Objects are found by label: ``reserve-ledger:sign:<name>`` for both halves of a key pair,
with ``<name>`` checked like the file keystore's names.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

from asn1crypto.core import OctetString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session
from pkcs11.util.ec import encode_named_curve_parameters

from keys.filestore import KEY_NAME_PATTERN, validate_key_name
from keys.pkcs11token import Pkcs11Token
from ledger.crypto import key_id
from ledger.errors import KeystoreError

__all__ = ["ED25519_OID", "LABEL_PREFIX", "Pkcs11Keystore", "Pkcs11Signer"]

ED25519_OID: Final = "1.3.101.112"
LABEL_PREFIX: Final = "reserve-ledger:sign:"


def _label(name: str) -> str:
    return LABEL_PREFIX + validate_key_name(name)


def _raw_public_key(ec_point: bytes) -> bytes:
    """CKA_EC_POINT of an Edwards key: the DER OCTET STRING of the 32 raw bytes (PKCS#11
    v3.0 section 2.3.8); some tokens return the raw bytes themselves."""
    raw = bytes(ec_point)
    if len(raw) != 32:
        try:
            raw = bytes(OctetString.load(raw).native)
        except (ValueError, TypeError):
            raise KeystoreError("the token returned a malformed Ed25519 public key") from None
    if len(raw) != 32:
        raise KeystoreError("the token returned a malformed Ed25519 public key")
    return raw


class Pkcs11Signer:
    """Implements :class:`ledger.crypto.Signer` with a private key that stays in the token."""

    __slots__ = ("__key", "_key_id", "_public_key", "_token")

    def __init__(self, token: Pkcs11Token, private_key: Any, public_key: bytes) -> None:
        self._token = token
        self.__key = private_key
        self._public_key = public_key
        self._key_id = key_id(public_key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature computed by the token (``CKM_EDDSA``)."""
        key = self.__key
        sig = self._token.run("sign", lambda _s: key.sign(bytes(message), mechanism=Mechanism.EDDSA))
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise KeystoreError("the token returned a malformed Ed25519 signature")
        return sig

    def __repr__(self) -> str:
        return f"Pkcs11Signer(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pkcs11Signer is bound to a token session and cannot be pickled")


class Pkcs11Keystore:
    """Ed25519 keys in a token; satisfies :class:`keys.backend.Keystore`."""

    def __init__(self, token: Pkcs11Token) -> None:
        self._token = token

    @property
    def token(self) -> Pkcs11Token:
        return self._token

    def __repr__(self) -> str:
        return f"Pkcs11Keystore(token={self._token.label!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pkcs11Keystore is bound to a token session and cannot be pickled")

    def _find(self, session: Session, cls: ObjectClass, label: str) -> list[Any]:
        return list(
            session.get_objects(
                {
                    Attribute.CLASS: cls,
                    Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                    Attribute.LABEL: label,
                }
            )
        )

    def _pair(self, session: Session, name: str) -> tuple[Any, bytes] | None:
        label = _label(name)
        privs = self._find(session, ObjectClass.PRIVATE_KEY, label)
        pubs = self._find(session, ObjectClass.PUBLIC_KEY, label)
        if not privs:
            return None
        if len(privs) > 1 or len(pubs) != 1:
            raise KeystoreError(f"the token holds an inconsistent key pair for '{name}'")
        return privs[0], _raw_public_key(pubs[0][Attribute.EC_POINT])

    def generate(self, name: str) -> Pkcs11Signer:
        """A new key pair made inside the token; refuse if ``name`` exists."""
        label = _label(name)

        def make(session: Session) -> Pkcs11Signer:
            if self._find(session, ObjectClass.PRIVATE_KEY, label):
                raise KeystoreError(f"a key named '{name}' already exists; refusing to overwrite it")
            pub, priv = session.generate_keypair(
                KeyType.EC_EDWARDS,
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                public_template={
                    Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID),
                    Attribute.LABEL: label,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.VERIFY: True,
                },
                private_template={
                    Attribute.LABEL: label,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                },
                store=True,
            )
            return Pkcs11Signer(self._token, priv, _raw_public_key(pub[Attribute.EC_POINT]))

        return self._token.run("generate a key pair", make)

    def load(self, name: str) -> Pkcs11Signer:
        found = self._token.run("find a key", lambda s: self._pair(s, name))
        if found is None:
            raise KeystoreError(f"no key named '{name}'")
        return Pkcs11Signer(self._token, found[0], found[1])

    def exists(self, name: str) -> bool:
        label = _label(name)
        return bool(
            self._token.run("find a key", lambda s: self._find(s, ObjectClass.PRIVATE_KEY, label))
        )

    def names(self) -> list[str]:
        def labels(session: Session) -> list[str]:
            objs = session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS}
            )
            return [str(o[Attribute.LABEL]) for o in objs]

        found = set()
        for label in self._token.run("list keys", labels):
            name = label[len(LABEL_PREFIX) :]
            if label.startswith(LABEL_PREFIX) and KEY_NAME_PATTERN.fullmatch(name) is not None:
                found.add(name)
        return sorted(found)

    def public_key(self, name: str) -> bytes:
        found = self._token.run("find a key", lambda s: self._pair(s, name))
        if found is None:
            raise KeystoreError(f"no key named '{name}'")
        return found[1]
