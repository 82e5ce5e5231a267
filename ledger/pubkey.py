"""Reading and writing the log's public key file (``$RESERVE_HOME/log.pub``).

Written as PEM SubjectPublicKeyInfo (RFC 8410), which OpenSSL and most tooling read. Read
from PEM, from 64 hex digits, or from a note verifier key (``name+hash+base64``), so an
auditor can pass whatever form they were given. Parsing needs no crypto library: an
Ed25519 SPKI is a fixed 12-byte DER prefix followed by the 32-byte key (RFC 8410 s. 4).
"""

from __future__ import annotations

import base64
import binascii
import re

from ledger.checkpoint import parse_note_verifier_key
from ledger.errors import ConfigError, LedgerError

_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----")


def to_pem(public_key: bytes) -> str:
    b64 = base64.b64encode(_SPKI_PREFIX + public_key).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"


def parse_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 key from PEM, hex or a note verifier key."""
    text = text.strip()
    m = _PEM.fullmatch(text)
    if m:
        try:
            der = base64.b64decode("".join(m.group(1).split()), validate=True)
        except binascii.Error as exc:
            raise ConfigError("public key PEM is not valid base64") from exc
        if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
            raise ConfigError("public key PEM is not an Ed25519 key")
        return der[12:]
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if "+" in text:
        try:
            return parse_note_verifier_key(text)[1]
        except LedgerError as exc:
            raise ConfigError("not a valid note verifier key") from exc
    raise ConfigError("trust file must hold an Ed25519 public key (PEM, hex or note vkey)")
