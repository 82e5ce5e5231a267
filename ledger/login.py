"""Key login (issue #9 item 2): proof of possession of a registered key, no password.

The service hands out a single-use nonce bound to its log id (``POST /auth/challenge``);
the client signs :func:`login_message` with the user's own key and exchanges it for a
short-lived token (``POST /auth/token``). The message has a domain of its own, so a login
signature is never valid as an entry signature (``reserve-ledger/entry/v2\\n...``) or a
checkpoint note, and an entry signature never logs anyone in. Pure: the ``reserve``
client imports it to sign, the service to verify.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import timedelta
from typing import Final

from ledger.crypto import Signer, verify_signature
from ledger.errors import SignatureInvalid, Unauthenticated

LOGIN_DOMAIN: Final = b"reserve-ledger/login/v1\n"
NONCE_BYTES: Final = 32
NONCE_TTL: Final = timedelta(minutes=2)
# base64url without padding of 32 bytes: 43 characters.
NONCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
# One answer for every refusal, so the endpoint is no oracle for which part was wrong
# (unknown key, revoked key, replayed, expired, other log, bad signature).
LOGIN_REFUSED: Final = (
    "key login refused: ask for a new challenge and sign it with your active registered key"
)


def new_nonce() -> str:
    """32 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode()


def login_message(*, log_id: str, nonce: str) -> bytes:
    """What the client signs: ``LOGIN_DOMAIN || log_id || "\\n" || nonce``."""
    if not log_id or "\n" in log_id:
        raise Unauthenticated(LOGIN_REFUSED)
    if not NONCE_PATTERN.fullmatch(nonce):
        raise Unauthenticated(LOGIN_REFUSED)
    return LOGIN_DOMAIN + log_id.encode() + b"\n" + nonce.encode()


def sign_login(signer: Signer, *, log_id: str, nonce: str) -> str:
    """The base64 signature a client sends to ``POST /auth/token``."""
    return base64.b64encode(signer.sign(login_message(log_id=log_id, nonce=nonce))).decode()


def verify_login(*, public_key: bytes, signature_b64: str, log_id: str, nonce: str) -> None:
    """Return nothing if the signature proves possession of ``public_key`` for this
    nonce and log, else raise :class:`Unauthenticated` (never saying which part failed)."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        verify_signature(
            public_key=public_key,
            signature=signature,
            message=login_message(log_id=log_id, nonce=nonce),
        )
    except (binascii.Error, ValueError, SignatureInvalid):
        raise Unauthenticated(LOGIN_REFUSED) from None
