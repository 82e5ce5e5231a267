"""The service's composition root: engines, keystore, token issuer and verifier.

Built once at start-up from the environment (or handed in by tests). Holds no rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from api.auth import TokenIssuer, TokenVerifier
from api.config import ApiSettings
from keys import FileKeystore
from keys.sealing import load_or_create_sealer
from ledger.errors import ConfigError
from ledger.service import Ledger
from ledger.store.db import make_engine
from ledger.store.group_commit import GroupCommitter
from ledger.store.projections import read_log_info
from ledger.store.tokens import is_revoked

log = structlog.get_logger("api")

TOKEN_KEY_NAME = "token-issuer"  # noqa: S105 - a keystore entry name
# HKDF labels (info) of the keys derived from the sealing key, one per purpose (issue #9).
ACCESS_LOG_HMAC_LABEL = b"reserve-ledger/hkdf/access-log-hmac/v1"
IDEMPOTENCY_HMAC_LABEL = b"reserve-ledger/hkdf/idempotency-hmac/v1"


@dataclass
class Services:
    settings: ApiSettings
    ledger: Ledger
    reader: Engine
    issuer: TokenIssuer | None
    verifier: TokenVerifier
    log_id: str
    hmac_key: bytes  # the access log's (keyed hashes of clients and paths)
    idempotency_hmac_key: bytes  # idempotency's request hashes: a key of its own (HKDF)
    committer: GroupCommitter
    # Issues the tokens of key login (issue #9): the embedded issuer, or with an identity
    # provider a local issuer whose tokens only this service accepts.
    login_issuer: TokenIssuer | None = None

    def is_revoked(self, jti: str) -> bool:
        with self.reader.connect() as conn:
            return is_revoked(conn, jti)


def build_services(settings: ApiSettings, *, passphrase: bytes) -> Services:
    keystore = FileKeystore(settings.ledger.keystore_dir, passphrase=passphrase)
    sealer = load_or_create_sealer(settings.ledger.keystore_dir, passphrase=passphrase)
    led = Ledger(make_engine(settings.ledger.db_url), keystore, sealer)
    if not led.is_initialised():
        raise ConfigError("the database holds no log: run 'reserve init' (or 'reserve demo') first")
    reader = make_engine(settings.ledger.db_url, readonly=True)
    with reader.connect() as conn:
        info = read_log_info(conn)
    assert info is not None
    signer = (
        keystore.load(TOKEN_KEY_NAME)
        if keystore.exists(TOKEN_KEY_NAME)
        else keystore.generate(TOKEN_KEY_NAME)
    )
    login_issuer = TokenIssuer(signer, settings.token)
    local = {login_issuer.kid: signer.public_key}
    # With an identity provider the service issues no tokens of its own except key login's.
    issuer = login_issuer if settings.token.jwks_url is None else None
    services = Services(
        settings=settings,
        ledger=led,
        reader=reader,
        issuer=issuer,
        verifier=TokenVerifier(settings.token, local_keys=local),
        log_id=info.log_id,
        hmac_key=sealer.derive_key(ACCESS_LOG_HMAC_LABEL),
        idempotency_hmac_key=sealer.derive_key(IDEMPOTENCY_HMAC_LABEL),
        committer=GroupCommitter(led.engine, led.log_signer),
        login_issuer=login_issuer,
    )
    services.verifier = TokenVerifier(
        settings.token, local_keys=local, is_revoked=services.is_revoked
    )
    if settings.unsafe_demo_login:
        log.warning(
            "unsafe_demo_login_enabled",
            note="any registered user can get a token without a password",
        )
    return services
