"""The reducer's view of the world, and the changes it returns.

``apply(state, entry)`` (``ledger.reducer``) reads through :class:`StateView` and returns
a list of :class:`Change` objects instead of mutating anything. The same changes are then
applied to an in-memory :class:`State` (the verifier, and the write path's per-batch
overlay) or written to the projection tables (``ledger.store.projections``). One rule
book, two uses (DESIGN.md, "The core idea", point 3).

Changes carry absolute values (a record, a new balance), never deltas, so applying a
change twice is harmless and the projection tables can be compared to a replay directly.

Domain records live in named tables (:data:`TABLES`) read with ``get(table, key)``; the
key registry has its own methods because its rules ask questions across records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    public_key: str  # hex of the raw 32 bytes
    user: str
    roles: tuple[str, ...]
    sites: tuple[str, ...]
    owners: tuple[str, ...]
    clearance: str
    registered_seq: int
    revoked_seq: int | None = None
    custody: str = "self"


@dataclass(frozen=True, slots=True)
class LogInfo:
    log_id: str
    log_key: str  # hex public key currently signing checkpoints
    # The v1 ratchet (issue #9 item 6): 1 while the log still takes entries signed
    # without the log id (only logs written before v2), 2 from its first v2 entry on.
    entry_sig_version: int = 1
    # The genesis marks a demo ledger (``reserve demo``): the CLI may then sign several
    # people's parts from one keystore, and says that they are not independent.
    demo: bool = False


@dataclass(frozen=True, slots=True)
class SetLogInfo:
    info: LogInfo


@dataclass(frozen=True, slots=True)
class PutKey:
    record: KeyRecord


@dataclass(frozen=True, slots=True)
class SeenEntryId:
    entry_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``table[key] = value``; ``value=None`` removes the record (a zero balance, a
    resolved transfer the verifier need not remember)."""

    table: str
    key: Hashable
    value: Any


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a double-entry movement, with the account's balance after it."""

    seq: int
    n: int
    account: str
    material: str
    lot: str
    delta: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class Post:
    posting: Posting


Change = SetLogInfo | PutKey | SeenEntryId | Put | Post

# Domain tables the reducer reads and writes through Put. ``ledger.store.projections``
# maps each to a database table; the verifier compares each with the replay.
TABLES = (
    "test_balances",
    "owners",
    "materials",
    "lots",
    "sites",
    "targets",
    "balances",
    "transfers",
    "loans",
    "movements",
    "policies",
    "prices",
    "release_requests",
    "release_orders",
)


# What the verifier compares with the server's projections after a replay.
COMPARED_TABLES = tuple(t for t in TABLES if t != "movements")


class StateView(Protocol):
    """Everything a rule may read. Implementations answer as of the entry being applied,
    including changes made earlier in the same batch."""

    def log_info(self) -> LogInfo | None: ...

    def key(self, key_id: str) -> KeyRecord | None: ...

    def active_keys_of(self, user: str) -> list[KeyRecord]: ...

    def active_admin_count(self) -> int: ...

    def entry_id_seen(self, entry_id: str) -> bool: ...

    def get(self, table: str, key: Hashable) -> Any: ...


# How long after its creation an entry may still be appended; also bounds the memory the
# verifier needs to detect a replayed entry id (it only remembers ids this recent).
REPLAY_WINDOW = timedelta(hours=24)
# How far an author's clock may run ahead of the log's.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Loader:
    """Fetches what an in-memory :class:`State` does not hold yet (the database, on the
    write path). ``None`` answers mean "does not exist"."""

    log_info: Callable[[], LogInfo | None]
    key: Callable[[str], KeyRecord | None]
    keys_of: Callable[[str], list[KeyRecord]]
    admin_count: Callable[[], int]
    entry_id_seen: Callable[[str], bool]
    get: Callable[[str, Hashable], Any]


_MISSING = object()


@dataclass
class State:
    """In-memory state: the verifier's whole state, or the write path's overlay.

    Memory grows with the number of keys, accounts, lots and open transfers and loans,
    not with the length of the history: entry ids are kept for :data:`REPLAY_WINDOW`,
    movements (for reversals) for their reversal window, and records that a rule removes
    (``Put(..., None)``) are dropped.
    """

    loader: Loader | None = None
    _log: LogInfo | None = None
    _keys: dict[str, KeyRecord] = field(default_factory=dict)
    _tables: dict[str, dict[Hashable, Any]] = field(default_factory=lambda: {t: {} for t in TABLES})
    _recent_ids: set[str] = field(default_factory=set)
    _id_queue: deque[tuple[datetime, str]] = field(default_factory=deque)
    _loaded_users: set[str] = field(default_factory=set)
    _absent_ids: set[str] = field(default_factory=set)

    # -- StateView ---------------------------------------------------------------
    def log_info(self) -> LogInfo | None:
        if self._log is None and self.loader is not None:
            self._log = self.loader.log_info()
        return self._log

    def key(self, key_id: str) -> KeyRecord | None:
        rec = self._keys.get(key_id)
        if rec is None and self.loader is not None:
            rec = self.loader.key(key_id)
            if rec is not None:
                self._keys[key_id] = rec
        return rec

    def active_keys_of(self, user: str) -> list[KeyRecord]:
        if self.loader is not None and user not in self._loaded_users:
            for rec in self.loader.keys_of(user):
                self._keys.setdefault(rec.key_id, rec)
            self._loaded_users.add(user)
        return [k for k in self._keys.values() if k.user == user and k.revoked_seq is None]

    def active_admin_count(self) -> int:
        if self.loader is not None:
            # The overlay only adds or revokes keys of this batch: ask the store for the
            # rest and correct by what the batch changed.
            base = self.loader.admin_count()
            for rec in self._keys.values():
                if "security_admin" in rec.roles:
                    stored = self.loader.key(rec.key_id)
                    was = stored is not None and stored.revoked_seq is None
                    now = rec.revoked_seq is None
                    base += int(now) - int(was)
            return base
        return sum(
            1 for k in self._keys.values() if "security_admin" in k.roles and k.revoked_seq is None
        )

    def entry_id_seen(self, entry_id: str) -> bool:
        if entry_id in self._recent_ids:
            return True
        if entry_id in self._absent_ids:
            return False
        return self.loader is not None and self.loader.entry_id_seen(entry_id)

    def known_keys(self, records: list[KeyRecord]) -> None:
        """Key records the caller read from the store for a whole batch (one query);
        never overrides what this state already holds."""
        for rec in records:
            self._keys.setdefault(rec.key_id, rec)

    def known_log_info(self, info: LogInfo) -> None:
        """The log's info as the caller read it with the head (one round trip fewer under
        the append lock); never overrides what this state already holds."""
        if self._log is None:
            self._log = info

    def known_absent_ids(self, ids: set[str]) -> None:
        """Ids the caller has checked are not in the store (one query per batch)."""
        self._absent_ids |= ids

    def get(self, table: str, key: Hashable) -> Any:
        t = self._tables[table]
        value = t.get(key, _MISSING)
        if value is _MISSING:
            value = self.loader.get(table, key) if self.loader is not None else None
            if self.loader is not None:
                t[key] = value
        return value

    # -- applying changes -----------------------------------------------------------
    def apply(self, changes: list[Change]) -> None:
        for ch in changes:
            match ch:
                case Put(table, key, value):
                    t = self._tables[table]
                    if value is None and self.loader is None:
                        t.pop(key, None)
                    else:
                        t[key] = value
                case Post():
                    pass  # postings index the database; a replay needs only balances
                case SetLogInfo(info):
                    self._log = info
                case PutKey(rec):
                    self._keys[rec.key_id] = rec
                case SeenEntryId(entry_id, created_at):
                    self._recent_ids.add(entry_id)
                    self._id_queue.append((created_at, entry_id))

    def forget_ids_before(self, horizon: datetime) -> None:
        """Drop remembered ids created before ``horizon``: the replay-window rule already
        refuses any entry that old, so its id cannot come back."""
        q = self._id_queue
        while q and q[0][0] < horizon:
            _, entry_id = q.popleft()
            self._recent_ids.discard(entry_id)

    def forget(self, table: str, keep: Callable[[Any], bool]) -> None:
        """Drop records a rule can no longer use (e.g. movements past their reversal
        window), so the verifier's memory stays bounded."""
        t = self._tables[table]
        for k in [k for k, v in t.items() if not keep(v)]:
            del t[k]

    # -- snapshots for comparison with the projection tables ------------------------
    def keys_snapshot(self) -> dict[str, KeyRecord]:
        return dict(self._keys)

    def table(self, name: str) -> dict[Hashable, Any]:
        return {k: v for k, v in self._tables[name].items() if v is not None}

    # -- saving and restoring (incremental audits, issue #10) -------------------------
    def parts(
        self,
    ) -> tuple[LogInfo | None, dict[str, KeyRecord], dict[str, dict[Hashable, Any]], list[tuple[datetime, str]]]:
        """Everything a verifier's state holds, for ``ledger.audit_state`` to save."""
        return self._log, dict(self._keys), self._tables, list(self._id_queue)

    @classmethod
    def restored(
        cls,
        log: LogInfo | None,
        keys: dict[str, KeyRecord],
        tables: dict[str, dict[Hashable, Any]],
        ids: list[tuple[datetime, str]],
    ) -> State:
        """A verifier's state as :meth:`parts` described it."""
        st = cls()
        st._log = log
        st._keys = dict(keys)
        st._tables = {t: dict(tables.get(t, {})) for t in TABLES}
        st._id_queue = deque(ids)
        st._recent_ids = {i for _, i in ids}
        return st
