"""Operations of the embedded ledger, shared by the CLI and the API.

Builds entry bodies, has the acting user's key sign them, and appends them with the log
key. It holds no rules: every decision is the reducer's (``ledger.reducer``), made inside
the append transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from ledger.bodies import new_body as new_body  # re-exported: callers import it from here
from ledger.crypto import Signer, SignerSource
from ledger.entries import LOG_PRINCIPAL, is_reserved_principal, sign_body
from ledger.errors import ConfigError, InvalidEntry, KeystoreError, NotFound, VerificationFailed
from ledger.locations import Location, Opening, Sealer
from ledger.state import KeyRecord, LogInfo
from ledger.store import owner_scope, projections
from ledger.store.db import has_log, migrate
from ledger.store.log import AppendResult, append
from ledger.store.owner_scope import OwnerKeyring
from ledger.store.schema import entries, log_state

Also = Callable[[Connection, int], None]


def both(first: Also | None, second: Also | None) -> Also | None:
    """Two ``also`` callbacks as one (either may be missing)."""
    if first is None or second is None:
        return first or second

    def run(conn: Connection, seq: int) -> None:
        first(conn, seq)
        second(conn, seq)

    return run


@dataclass
class Ledger:
    engine: Engine
    keystore: SignerSource
    # The sealing key, or a function that loads it (scrypt costs ~0.4 s, so commands
    # that never touch a location should not pay for it).
    sealer: Sealer | Callable[[], Sealer] | None = None
    _signers: dict[str, Signer] = field(default_factory=dict, repr=False)
    _keyring: OwnerKeyring | None = field(default=None, repr=False)
    _log_id: str | None = field(default=None, repr=False)
    _load_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _load_locks_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the log ----------------------------------------------------------------------
    def log_info(self) -> LogInfo:
        with self.engine.connect() as conn:
            info = projections.read_log_info(conn)
        if info is None:
            raise ConfigError("the database holds no log: run 'reserve init' first")
        return info

    def log_id(self) -> str:
        """The id entry signatures are bound to (v2, issue #9); fixed by the genesis."""
        if self._log_id is None:
            self._log_id = self.log_info().log_id
        return self._log_id

    def is_demo(self) -> bool:
        """Whether the genesis marks this ledger as a demo (``reserve demo``): only there
        may one keystore sign several people's parts of an entry (issue #9 item 4)."""
        return self.log_info().demo

    def sign(self, body: dict[str, Any], signers: list[Signer]) -> dict[str, Any]:
        """A submission of ``body`` signed (v2, bound to this log) by ``signers``."""
        return sign_body(body, signers, log_id=self.log_id())

    # -- keys -------------------------------------------------------------------------
    def log_signer(self) -> Signer:
        """The keystore key whose public half is the log's current checkpoint key."""
        with self.engine.connect() as conn:
            info = projections.read_log_info(conn)
        if info is None:
            raise ConfigError("the database holds no log: run 'reserve init' first")
        cached = self._signers.get("@log")
        if cached is not None and cached.public_key.hex() == info.log_key:
            return cached
        for name in self.keystore.names():
            if self.keystore.public_key(name).hex() == info.log_key:
                self._signers["@log"] = self.keystore.load(name)
                return self._signers["@log"]
        raise ConfigError("the log's checkpoint key is not in this keystore")

    def cached_signer(self, user: str) -> Signer | None:
        """``user``'s key if this process has unwrapped it already (no I/O, no KDF)."""
        return self._signers.get(user)

    def signer_for(self, user: str) -> Signer:
        """The keystore key of ``user`` (stored under the user's name). Loaded once per
        process: a keystore entry is never overwritten, so the cache cannot go stale.

        A load costs a scrypt (~0.4 s, 128 MiB; issue #9). Concurrent first requests of
        one user wait for a single load under that user's lock instead of each running
        its own: 25 concurrent scrypts per worker once kept a benchmark's writes at
        seconds per request for over a minute (issue #11). Other users' loads and cached
        keys are not held up by it."""
        signer = self._signers.get(user)
        if signer is not None:
            return signer
        with self._load_locks_guard:
            lock = self._load_locks.setdefault(user, threading.Lock())
        with lock:
            signer = self._signers.get(user)
            if signer is None:
                if not self.keystore.exists(user):
                    raise KeystoreError(f"no key for '{user}' in the keystore")
                signer = self._signers[user] = self.keystore.load(user)
        return signer

    # -- writing ----------------------------------------------------------------------
    def submit(
        self, body: dict[str, Any], signers: list[Signer], *, also: Also | None = None
    ) -> AppendResult:
        return append(
            self.engine, [self.sign(body, signers)], log_signer=self.log_signer(), also=also,
            keyring=self.owner_keyring(),
        )

    def act(self, actor: str, kind: str, /, **fields: Any) -> AppendResult:
        """Sign an entry of ``kind`` as ``actor`` and append it."""
        return self.submit(new_body(kind, actor, **fields), [self.signer_for(actor)])

    def init(
        self,
        *,
        log_id: str,
        admin: str,
        log_key_name: str = "log",
        demo: bool = False,
        owner_scoped: bool = False,
    ) -> AppendResult:
        """Create the schema, the log key and the first admin key, and append genesis
        (marked ``demo`` only by ``reserve demo``). ``owner_scoped`` switches the log to
        v2 leaves right after genesis (issue #14), before any owner exists, so no v1
        prefix but genesis reaches a scoped auditor in full."""
        if is_reserved_principal(admin):
            raise InvalidEntry(f"'{admin}' is reserved for the service's own keys", field="admin")
        migrate(self.engine)
        with self.engine.connect() as conn:
            if conn.execute(select(log_state.c.size)).first() is not None:
                raise ConfigError("this database already holds a log")
        log_key = (
            self.keystore.load(log_key_name)
            if self.keystore.exists(log_key_name)
            else self.keystore.generate(log_key_name)
        )
        admin_key = (
            self.keystore.load(admin)
            if self.keystore.exists(admin)
            else self.keystore.generate(admin)
        )
        body = new_body(
            "genesis",
            admin,
            log_id=log_id,
            log_key=log_key.public_key.hex(),
            admin_key=admin_key.public_key.hex(),
            **({"demo": True} if demo else {}),
        )
        keyring = self.owner_keyring()

        def scope(conn: Connection, _seq: int) -> None:  # same transaction: both or neither
            owner_scope.enable_in(conn, keyring=keyring)

        return append(
            self.engine, [sign_body(body, [admin_key, log_key], log_id=log_id)], log_signer=log_key,
            also=scope if owner_scoped else None,
        )

    def register_key(
        self,
        *,
        admin: str,
        user: str,
        roles: list[str],
        sites: list[str],
        owners: list[str],
        clearance: str,
        public_key: bytes | None = None,
    ) -> AppendResult:
        """Register ``user``'s key: the given public key, else the keystore's (created
        if missing: the embedded default keeps custodial user keys)."""
        if is_reserved_principal(user):
            # Before the keystore is touched: loading "token-issuer" here would register
            # the service's own key as this user's (issue #8, item 10).
            raise InvalidEntry(f"'{user}' is reserved for the service's own keys", field="user")
        custody = "self"
        if public_key is None:
            signer = (
                self.keystore.load(user)
                if self.keystore.exists(user)
                else self.keystore.generate(user)
            )
            public_key = signer.public_key
            custody = "server"
        return self.act(
            admin,
            "key.registered",
            user=user,
            public_key=public_key.hex(),
            roles=roles,
            sites=sites,
            owners=owners,
            clearance=clearance,
            custody=custody,
        )

    def revoke_key(self, *, actor: str, key_id: str, reason: str) -> AppendResult:
        return self.act(actor, "key.revoked", key_id=key_id, reason=reason)

    def rotate_log_key(self) -> AppendResult:
        """New checkpoint key, announced by an entry signed by the old and the new key."""
        old = self.log_signer()
        n = 2
        while self.keystore.exists(f"log-{n}"):
            n += 1
        new = self.keystore.generate(f"log-{n}")
        body = new_body("log.key_rotated", LOG_PRINCIPAL, new_key=new.public_key.hex())
        return append(
            self.engine, [self.sign(body, [old, new])], log_signer=new, keyring=self.owner_keyring()
        )

    def owner_keyring(self) -> OwnerKeyring | None:
        """Owners' scoped-audit secrets, sealed with the sealing key (issue #14); None
        without a sealing key (then an owner-scoped log refuses to append)."""
        if self._keyring is None and self.sealer is not None:
            self._keyring = OwnerKeyring(self._sealer)
        return self._keyring

    # -- sites (locations sealed beside the entry that commits to them) ---------------
    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise ConfigError("no sealing key available: locations cannot be stored")
        if not isinstance(self.sealer, Sealer):
            self.sealer = self.sealer()
        return self.sealer

    def site_submission(
        self, *, admin: str, code: str, classification: str, custodian: str, owners: list[str], location: Location
    ) -> tuple[dict[str, Any], Also]:
        """A signed site registration and the callback that seals its location in the
        same transaction (for callers that append through a group committer)."""
        from ledger.store.locations import seal_location

        commitment, seal = seal_location(site=code, location=location, sealer=self._sealer())
        body = new_body(
            "site.registered",
            admin,
            code=code,
            classification=classification,
            custodian=custodian,
            owners=owners,
            location_commitment=commitment,
        )
        return self.sign(body, [self.signer_for(admin)]), seal

    def register_site(
        self,
        *,
        admin: str,
        code: str,
        classification: str,
        custodian: str,
        owners: list[str],
        location: Location,
        also: Also | None = None,
    ) -> AppendResult:
        """Register a site: the log gets the commitment, the sealed table the opening, in
        one transaction."""
        from ledger.store.locations import seal_location

        commitment, seal = seal_location(site=code, location=location, sealer=self._sealer())
        body = new_body(
            "site.registered",
            admin,
            code=code,
            classification=classification,
            custodian=custodian,
            owners=owners,
            location_commitment=commitment,
        )
        return self.submit(body, [self.signer_for(admin)], also=both(seal, also))

    def relocate_site(
        self, *, admin: str, code: str, location: Location, also: Also | None = None
    ) -> AppendResult:
        from ledger.store.locations import seal_location

        commitment, seal = seal_location(site=code, location=location, sealer=self._sealer())
        body = new_body("site.relocated", admin, site=code, location_commitment=commitment)
        return self.submit(body, [self.signer_for(admin)], also=both(seal, also))

    def open_site_location(self, code: str) -> Opening:
        """The opening of a site's current sealed location, checked against the
        commitment the signed log holds (not only the sealed table's copy)."""
        from ledger.store.locations import open_location
        from ledger.store.projections import read_table

        with self.engine.connect() as conn:
            site = read_table(conn, "sites").get(code)
            if site is None:
                raise NotFound(f"no site '{code}'")
            opening = open_location(conn, site=code, sealer=self._sealer())
        if opening.commitment != site.location_commitment:
            raise VerificationFailed("the sealed location does not match the site's signed commitment")
        return opening

    # -- reading ----------------------------------------------------------------------
    def entry_ref(self, ref: str) -> str:
        """An entry id from an id or a seq (what the CLI printed)."""
        if ref.isdigit():
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(entries.c.entry_id).where(entries.c.seq == int(ref))
                ).first()
            if found is None:
                raise NotFound(f"no entry at seq {ref}")
            return str(found.entry_id)
        return ref

    def registered_keys(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            return sorted(
                projections.read_keys(conn).values(), key=lambda k: (k.user, k.registered_seq)
            )

    def active_key_of(self, user: str) -> KeyRecord:
        for k in self.registered_keys():
            if k.user == user and k.revoked_seq is None:
                return k
        raise NotFound(f"no active key for user '{user}'")

    def is_initialised(self) -> bool:
        if not has_log(self.engine):
            return False
        with self.engine.connect() as conn:
            return conn.execute(select(log_state.c.size)).first() is not None
