"""The service's composition root: engines, keystore, token issuer and verifier.

Built once at start-up from the environment (or handed in by tests). Holds no rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Engine

from api.auth import TokenIssuer, TokenVerifier
from api.config import ApiSettings
from api.metrics import observe_group
from api.refusals import RefusalRecorder
from keys import Keystore, open_keystore
from ledger.crypto import Signer
from ledger.entries import warm_up
from ledger.errors import ConfigError, KeystoreError
from ledger.service import Ledger
from ledger.store.access import record_many
from ledger.store.db import make_engine
from ledger.store.group_commit import GroupCommitter
from ledger.store.projections import read_log_info
from ledger.store.tokens import is_revoked

log = structlog.get_logger("api")

TOKEN_KEY_NAME = "token-issuer"  # noqa: S105 - a keystore entry name
# HKDF labels (info) of the keys derived from the sealing key, one per purpose (issue #9).
ACCESS_LOG_HMAC_LABEL = b"reserve-ledger/hkdf/access-log-hmac/v1"
IDEMPOTENCY_HMAC_LABEL = b"reserve-ledger/hkdf/idempotency-hmac/v1"
READ_POOL_SIZE = 20


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
    refusals: RefusalRecorder
    # Read-only engine on the primary: what must see its own (or the latest) write reads
    # here (authentication, revocation, custody, reveals); ``reader`` is the replica when
    # RESERVE_DB_READ is set, else this same engine (issue #11).
    primary: Engine | None = None

    def __post_init__(self) -> None:
        if self.primary is None:
            self.primary = self.reader

    @property
    def has_replica(self) -> bool:
        return self.reader is not self.primary

    @property
    def primary_engine(self) -> Engine:
        assert self.primary is not None
        return self.primary

    def auth_connection(self) -> Connection:
        """A connection to the primary for single-statement lookups. On PostgreSQL in
        autocommit: no BEGIN and no ROLLBACK around a one-query read (two round trips
        fewer per request)."""
        conn = self.primary_engine.connect()
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def read_connection(self) -> Connection:
        """A connection for reads (the replica when configured) without a transaction on
        PostgreSQL: only for routes whose statements need no shared snapshot (one
        statement, or reads of history that can no longer change)."""
        conn = self.reader.connect()
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn
    # Issues the tokens of key login (issue #9): the embedded issuer, or with an identity
    # provider a local issuer whose tokens only this service accepts.
    login_issuer: TokenIssuer | None = None

    def is_revoked(self, jti: str) -> bool:
        with self.primary_engine.connect() as conn:
            return is_revoked(conn, jti)

    def close(self) -> None:
        """Write the buffered refusals, stop the committer and close every pool (before a
        fork, and at exit). Safe to call again."""
        self.refusals.close()
        self.committer.close()
        self.ledger.engine.dispose()
        self.primary_engine.dispose()
        self.reader.dispose()


def _token_signer(keystore: Keystore) -> Signer:
    """The embedded issuer's key, made on first start. Several workers may start at once:
    of two creators one wins and the other loads its key, so every worker signs and
    accepts the same tokens (issue #11)."""
    if keystore.exists(TOKEN_KEY_NAME):
        return keystore.load(TOKEN_KEY_NAME)
    try:
        return keystore.generate(TOKEN_KEY_NAME)
    except KeystoreError:
        if keystore.exists(TOKEN_KEY_NAME):
            return keystore.load(TOKEN_KEY_NAME)
        raise


def build_services(
    settings: ApiSettings, *, passphrase: bytes | Callable[[], bytes]
) -> Services:
    """``passphrase`` (or a function asked for it) is used by the file keystore only."""
    warm_up()  # msgspec types inspected before any request thread runs (issue #8, item 1)
    backend = open_keystore(
        settings.ledger, passphrase=passphrase if callable(passphrase) else lambda: passphrase
    )
    keystore = backend.keystore
    sealer = backend.sealer()
    led = Ledger(make_engine(settings.ledger.db_url), keystore, sealer)
    if not led.is_initialised():
        raise ConfigError("the database holds no log: run 'reserve init' (or 'reserve demo') first")
    # Read pools as large as a worker's usual concurrent readers (routes' threads and
    # authentication's): at 10, 50 clients made the pool open and close a PostgreSQL
    # connection per few requests (issue #11, profiled).
    primary = make_engine(settings.ledger.db_url, readonly=True, pool_size=READ_POOL_SIZE)
    read_url = settings.ledger.read_db_url
    reader = make_engine(read_url, readonly=True, pool_size=READ_POOL_SIZE) if read_url else primary
    with primary.connect() as conn:
        info = read_log_info(conn)
    assert info is not None
    signer = _token_signer(keystore)
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
        committer=GroupCommitter(
            led.engine, led.log_signer, observe=observe_group, keyring=led.owner_keyring()
        ),
        refusals=RefusalRecorder(
            lambda events: record_many(
                led.engine, events, log_signer=led.log_signer(), log_id=info.log_id
            ),
            settings.refusals,
        ),
        login_issuer=login_issuer,
        primary=primary,
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
