"""Key login (issue #9 item 2): a token for proof of possession of a registered key.

``POST /auth/challenge`` -> a single-use nonce bound to the log id; the client signs
``ledger.login.login_message(log_id=..., nonce=...)`` with its own key; ``POST
/auth/token`` -> a short-lived access token for the user whose *active* key that is, with
the same claims and checks as every token of the embedded issuer. Every refusal is the
same 401 (``unauthenticated``), so the endpoint tells nobody which part was wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from api.deps import services
from api.services import Services
from ledger.crypto import key_id
from ledger.entries import LOG_PRINCIPAL
from ledger.errors import ConfigError, Unauthenticated
from ledger.login import LOGIN_REFUSED, NONCE_PATTERN, verify_login
from ledger.store import nonces
from ledger.store.projections import db_loader

router = APIRouter(tags=["service"])
log = structlog.get_logger("api")

HEX64 = r"^[0-9a-f]{64}$"


class ChallengeIn(BaseModel):
    user: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    public_key: str | None = Field(default=None, pattern=HEX64)

    @model_validator(mode="after")
    def _one_subject(self) -> ChallengeIn:
        if (self.user is None) == (self.public_key is None):
            raise ValueError("give either user or public_key")
        return self


class TokenIn(BaseModel):
    nonce: str = Field(max_length=64)
    public_key: str = Field(pattern=HEX64)
    signature: str = Field(max_length=128)


@router.post("/auth/challenge")
def challenge(body: ChallengeIn, svc: Services = Depends(services)) -> dict[str, Any]:
    """A nonce to sign (single use, 2 minutes), bound to this log's id. Unknown users get
    one too: the challenge does not say who is registered."""
    nonce, expires = nonces.issue(
        svc.ledger.engine,
        log_id=svc.log_id,
        at=datetime.now(UTC),
        user=body.user,
        public_key=body.public_key,
    )
    return {"nonce": nonce, "log_id": svc.log_id, "expires_at": expires}


@router.post("/auth/token")
def token(body: TokenIn, svc: Services = Depends(services)) -> dict[str, Any]:
    """Exchange a signed nonce for an access token (``Bearer``, 15 minutes by default)."""
    issuer = svc.login_issuer
    if issuer is None:  # pragma: no cover - build_services always makes one
        raise ConfigError("key login is not configured")
    if not NONCE_PATTERN.fullmatch(body.nonce):
        raise Unauthenticated(LOGIN_REFUSED)
    pub = bytes.fromhex(body.public_key)
    # The signature first (no database write for garbage), then the key's standing, then
    # the nonce is consumed: a nonce offered with a valid signature is spent either way.
    verify_login(public_key=pub, signature_b64=body.signature, log_id=svc.log_id, nonce=body.nonce)
    with svc.primary_engine.connect() as conn:
        rec = db_loader(conn).key(key_id(pub))
    if rec is None or rec.revoked_seq is not None or rec.user == LOG_PRINCIPAL or not rec.roles:
        raise Unauthenticated(LOGIN_REFUSED)
    nonces.consume(
        svc.ledger.engine,
        nonce=body.nonce,
        log_id=svc.log_id,
        at=datetime.now(UTC),
        user=rec.user,
        public_key=body.public_key,
    )
    log.info("key_login", subject=rec.user)
    return {
        "access_token": issuer.issue(rec.user),
        "token_type": "Bearer",
        "expires_in": issuer.settings.ttl_seconds,
    }
