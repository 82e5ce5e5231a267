"""Owner-scoped audit in the database (issue #14): the v2 switch, per-owner secrets, the
commitments the write path binds into each leaf, and the scoped export.

Secrets live in ``owner_keys`` (append-only): one row per owner and epoch. A new owner's
first epoch is created in the transaction that appends its ``owner.registered`` entry, so
no leaf touching an owner is ever written before its secret exists. Rotation adds an
epoch used from the next append on; old leaves keep the tags of their epoch (nothing is
rewritten), and the key file handed to an owner's auditors lists every epoch.

The secrets are stored sealed (migration 0015): AES-256-GCM under the keystore's sealing
key, the key that seals site locations (DESIGN.md, Secrets), bound to the row's owner and
epoch, so a database or backup leak does not reveal them; with the PKCS#11 backend the
AES key never leaves the token. Rows written before 0015 hold the secret in the clear
until ``reserve owner-scope seal`` seals them. Opened secrets are cached per process in
the :class:`OwnerKeyring` (the rows are append-only, so the cache cannot go stale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, insert, select, update

from ledger.errors import ConfigError, NotFound
from ledger.kinds.stock import OwnerRegistered
from ledger.locations import Sealer
from ledger.owner_scope import OwnerSecret, key_file_json, make_commitment, new_secret
from ledger.rules.owners import OwnerLookup, owners_touched, touches
from ledger.store.schema import log_state, owner_commitments, owner_keys, owner_scope
from ledger.store.schema import owners as owners_table

SEAL_AAD: Final = b"reserve-ledger/owner-secret/v1\n"
NEEDS_KEYRING: Final = (
    "owners' scoped-audit secrets are stored sealed: this needs the keystore's sealing key"
)


class OwnerKeyring:
    """Seals and opens owners' scoped-audit secrets with the sealing key (loaded on first
    use: scrypt or a token login costs time a command that never needs it should not pay)."""

    def __init__(self, sealer: Sealer | Callable[[], Sealer]):
        self._source = sealer
        self._sealer: Sealer | None = None
        self._opened: dict[tuple[str, int], bytes] = {}

    def _get(self) -> Sealer:
        if self._sealer is None:
            src = self._source
            self._sealer = src if isinstance(src, Sealer) else src()
        return self._sealer

    @staticmethod
    def _aad(owner: str, epoch: int) -> bytes:
        # Bound to the row: a sealed secret copied to another owner's row does not open.
        return SEAL_AAD + owner.encode() + b"\n" + str(epoch).encode()

    def seal(self, owner: str, epoch: int, secret: bytes) -> dict[str, Any]:
        """The columns of a sealed ``owner_keys`` row (``secret`` NULL)."""
        nonce, sealed = self._get().seal(secret, aad=self._aad(owner, epoch))
        self._opened[(owner, epoch)] = secret
        return {"secret": None, "nonce": nonce, "sealed": sealed}

    def open(self, owner: str, epoch: int, nonce: bytes, sealed: bytes) -> bytes:
        """The secret; :class:`ledger.errors.KeystoreError` (saying nothing else) if it
        does not open with this key."""
        got = self._opened.get((owner, epoch))
        if got is None:
            got = self._opened[(owner, epoch)] = self._get().open(nonce, sealed, aad=self._aad(owner, epoch))
        return got

    def __repr__(self) -> str:  # never the secrets
        return f"OwnerKeyring({len(self._opened)} opened)"


def _key_row(keyring: OwnerKeyring | None, *, owner: str, epoch: int, secret: bytes, from_seq: int) -> dict[str, Any]:
    """A new ``owner_keys`` row: always sealed, never the secret in the clear."""
    if keyring is None:
        raise ConfigError(NEEDS_KEYRING)
    return {"owner": owner, "epoch": epoch, "from_seq": from_seq, **keyring.seal(owner, epoch, secret)}


def enabled_from(conn: Connection) -> int | None:
    """The seq from which the log writes v2 leaves, or None (a v1 log)."""
    row = conn.execute(select(owner_scope.c.from_seq)).first()
    return int(row.from_seq) if row is not None else None


def read_secrets(
    conn: Connection, owner: str | None = None, *, keyring: OwnerKeyring | None
) -> dict[str, list[OwnerSecret]]:
    """Every epoch of every owner's secret (or of one owner), oldest epoch first, opened
    with ``keyring`` (:class:`ConfigError` without one if a row is sealed)."""
    q = select(owner_keys).order_by(owner_keys.c.owner, owner_keys.c.epoch)
    if owner is not None:
        q = q.where(owner_keys.c.owner == owner)
    out: dict[str, list[OwnerSecret]] = {}
    for r in conn.execute(q):
        epoch = int(r.epoch)
        if r.secret is not None:  # a row from before migration 0015, not sealed yet
            secret = bytes(r.secret)
        elif keyring is None:
            raise ConfigError(NEEDS_KEYRING)
        else:
            secret = keyring.open(r.owner, epoch, bytes(r.nonce), bytes(r.sealed))
        out.setdefault(r.owner, []).append(OwnerSecret(r.owner, epoch, secret))
    return out


def has_sealed(conn: Connection) -> bool:
    return conn.execute(select(owner_keys.c.owner).where(owner_keys.c.sealed.is_not(None)).limit(1)).first() is not None


def seal_cleartext(engine: Engine, *, keyring: OwnerKeyring) -> int:
    """Seal the rows written before migration 0015 (the one update ``owner_keys``
    allows: secret in the clear to sealed, nothing else). Returns how many."""
    n = 0
    with engine.begin() as conn:
        rows = conn.execute(select(owner_keys).where(owner_keys.c.secret.is_not(None))).all()
        for r in rows:
            cols = keyring.seal(r.owner, int(r.epoch), bytes(r.secret))
            conn.execute(
                update(owner_keys)
                .where(owner_keys.c.owner == r.owner, owner_keys.c.epoch == r.epoch)
                .values(**cols)
            )
            n += 1
    return n


def read_commitments(conn: Connection, *, start: int, end: int) -> dict[int, bytes]:
    q = select(owner_commitments).where(owner_commitments.c.seq >= start, owner_commitments.c.seq < end)
    return {int(r.seq): bytes(r.commitment) for r in conn.execute(q)}


def _head_size(conn: Connection) -> int:
    row = conn.execute(select(log_state.c.size)).first()
    return int(row.size) if row is not None else 0


def enable(engine: Engine, *, keyring: OwnerKeyring | None, rand: Callable[[], bytes] = new_secret) -> int:
    """Switch the log to v2 leaves from its next entry on, creating a secret for every
    owner registered so far. One-way (the table is append-only). Returns that seq."""
    with engine.begin() as conn:
        return enable_in(conn, keyring=keyring, rand=rand)


def enable_in(conn: Connection, *, keyring: OwnerKeyring | None, rand: Callable[[], bytes] = new_secret) -> int:
    """:func:`enable` inside the caller's transaction (``reserve init``: with genesis)."""
    if enabled_from(conn) is not None:
        raise ConfigError("owner-scoped audit is already enabled on this log")
    size = _head_size(conn)
    conn.execute(insert(owner_scope).values(id=1, from_seq=size))
    have = set(conn.execute(select(owner_keys.c.owner)).scalars())
    for r in conn.execute(select(owners_table.c.code)):
        if r.code not in have:
            conn.execute(
                insert(owner_keys).values(
                    **_key_row(keyring, owner=r.code, epoch=1, secret=rand(), from_seq=size)
                )
            )
    return size


def rotate(
    engine: Engine, owner: str, *, keyring: OwnerKeyring | None, rand: Callable[[], bytes] = new_secret
) -> int:
    """A new epoch of ``owner``'s secret, used from the next append on. Returns it."""
    with engine.begin() as conn:
        if enabled_from(conn) is None:
            raise ConfigError("owner-scoped audit is not enabled on this log")
        last = conn.execute(
            select(func.max(owner_keys.c.epoch)).where(owner_keys.c.owner == owner)
        ).scalar_one_or_none()
        if last is None:
            raise NotFound(f"no owner {owner} with a scoped-audit secret")
        epoch = int(last) + 1
        conn.execute(
            insert(owner_keys).values(
                **_key_row(keyring, owner=owner, epoch=epoch, secret=rand(), from_seq=_head_size(conn))
            )
        )
    return epoch


def key_file(engine: Engine, owner: str, *, keyring: OwnerKeyring | None) -> str:
    """The key file for ``owner``'s auditors (every epoch): hand it over out of band."""
    with engine.connect() as conn:
        head = conn.execute(select(log_state.c.log_id)).first()
        epochs = read_secrets(conn, owner, keyring=keyring).get(owner)
    if head is None or not epochs:
        raise NotFound(f"no owner {owner} with a scoped-audit secret")
    return key_file_json(str(head.log_id), owner, epochs)


class Committer:
    """The write path's part (``ledger.store.log``): per appended entry, the commitment to
    bind into its leaf (None for a v1 log), and the rows to store with it."""

    def __init__(
        self, conn: Connection, *, keyring: OwnerKeyring | None, rand: Callable[[], bytes] = new_secret
    ):
        self.enabled = enabled_from(conn) is not None
        self._rand = rand
        self._keyring = keyring
        self.current: dict[str, bytes] = {}
        self.new_keys: list[dict[str, Any]] = []
        if self.enabled:
            for owner, epochs in read_secrets(conn, keyring=keyring).items():
                self.current[owner] = epochs[-1].secret

    def commit(self, body: Any, state: OwnerLookup, *, seq: int, log_id: str) -> bytes | None:
        """``C`` for ``body`` at ``seq`` (``state`` as the reducer saw it, before it)."""
        if not self.enabled:
            return None
        if isinstance(body, OwnerRegistered) and body.code not in self.current:
            secret = self._rand()
            self.current[body.code] = secret
            self.new_keys.append(_key_row(self._keyring, owner=body.code, epoch=1, secret=secret, from_seq=seq))
        touched = owners_touched(body, state)
        # The owners with a secret are exactly those registered so far (``enable`` made
        # one for each earlier owner; the registration above for a new one), which is
        # what ``touches`` means by registered.
        chosen = [k for o, k in self.current.items() if touches(touched, o, registered=True)]
        return make_commitment(chosen, log_id=log_id, seq=seq)

    def write(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Store the new owners' secrets and the batch's commitments (same transaction)."""
        if self.new_keys:
            conn.execute(insert(owner_keys), self.new_keys)
            self.new_keys = []
        if rows:
            conn.execute(insert(owner_commitments), rows)
