"""Records of the reducer's domain tables (``ledger.state.TABLES``).

Each record knows its table key (``key``). ``ledger.store.projections`` maps the fields
one to one onto columns (tuples as JSON text), so adding a field means a migration.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

HOLDING_PREFIX = "H/"  # physical holding accounts: H/<owner>/<site>
TRANSIT = "V/transit"
LOANS = "V/loans"
LOSS = "V/loss"
GAIN = "V/gain"
ROTATION = "V/rotation"
CONVERSION = "V/conversion"


def holding(owner: str, site: str) -> str:
    return f"{HOLDING_PREFIX}{owner}/{site}"


def virtual(kind: str, name: str | None = None) -> str:
    """A virtual account (supplier, recipient, buyer...). Names are free text, so they
    are kept out of the account syntax's separators."""
    return f"V/{kind}" if name is None else f"V/{kind}:{name.replace('/', '_')}"


def is_holding(account: str) -> bool:
    return account.startswith(HOLDING_PREFIX)


def split_holding(account: str) -> tuple[str, str]:
    _, owner, site = account.split("/", 2)
    return owner, site


@dataclass(frozen=True, slots=True)
class OwnerRec:
    table: ClassVar[str] = "owners"
    code: str
    name: str
    country: str
    registered_seq: int

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class MaterialRec:
    table: ClassVar[str] = "materials"
    code: str
    name: str
    form: str
    base_unit: str
    grade_basis: str
    registered_seq: int

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class LotRec:
    table: ClassVar[str] = "lots"
    code: str
    material: str
    origin: str
    supplier: str
    purity: str
    basis: str
    certificate_sha256: str
    containers: tuple[tuple[str, str, int], ...]
    registered_seq: int

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class SiteRec:
    table: ClassVar[str] = "sites"
    code: str
    classification: str
    custodian: str
    owners: tuple[str, ...]
    location_commitment: str
    registered_seq: int
    commitment_seq: int
    last_count_at: str | None

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class TargetRec:
    table: ClassVar[str] = "targets"
    owner: str
    material: str
    days_of_cover: int
    annual_quantity: int
    basis: str
    valid_from: str
    valid_to: str
    set_seq: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.material)


@dataclass(frozen=True, slots=True)
class BalanceRec:
    """Quantity of one lot on one account. Holdings never go below zero."""

    table: ClassVar[str] = "balances"
    account: str
    lot: str
    material: str
    quantity: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.lot)


@dataclass(frozen=True, slots=True)
class TransferRec:
    """An open transfer (dispatched, not yet arrived)."""

    table: ClassVar[str] = "transfers"
    id: str
    owner: str
    lot: str
    material: str
    from_site: str
    to_site: str
    quantity: int
    dispatched_seq: int
    # When the dispatch happened (its occurred_at): an arrival may not be dated before it.
    # None only for transfers recorded before migration 0005 could backfill it.
    dispatched_at: str | None = None

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class LoanRec:
    """An open loan: what is still out with the borrower."""

    table: ClassVar[str] = "loans"
    id: str
    owner: str
    site: str
    lot: str
    material: str
    borrower: str
    quantity: int
    outstanding: int
    due_at: str
    premium_pct: str
    lent_seq: int

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class MovementRec:
    """A movement that may still be reversed: its postings and whether it was."""

    table: ClassVar[str] = "movements"
    entry_id: str
    seq: int
    kind: str
    site: str
    recorded_at: str
    postings: tuple[tuple[str, str, str, int], ...]  # (account, material, lot, delta)
    reversed_by: int | None
    occurred_at: str | None = None  # a reversal may not be dated before it (migration 0005)

    @property
    def key(self) -> str:
        return self.entry_id


# -- release authorisation (issue #5) ----------------------------------------------------


class PolicyVersion(NamedTuple):
    """One ``policy.set``: in force from ``effective_at`` until a later version's."""

    effective_at: str  # normalised (fixed width), so versions compare as strings
    seq: int
    quorum: int
    crisis_index: str
    crisis_currency: str
    crisis_threshold: str
    count_tolerance_pct: str
    regimes: tuple[str, ...]
    admin: str
    minister: str


@dataclass(frozen=True, slots=True)
class PolicyRec:
    """The release policies of one owner and material, by ``(effective_at, seq)``:
    the one in force and those still to come. Versions superseded before the latest
    ``policy.set`` was recorded are dropped (the log's clock never runs backwards, so no
    rule can ask for them again); orders copy what they relied on."""

    table: ClassVar[str] = "policies"
    owner: str
    material: str
    versions: tuple[PolicyVersion, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.material)

    def in_force(self, at: str) -> PolicyVersion | None:
        """The version in force at ``at`` (a normalised time), if any."""
        found = None
        for v in self.versions:
            if v[0] <= at:
                found = v
        return PolicyVersion._make(found) if found is not None else None

    def upcoming(self, at: str) -> list[PolicyVersion]:
        return [PolicyVersion._make(v) for v in self.versions if v[0] > at]


@dataclass(frozen=True, slots=True)
class PriceRec:
    """The latest observed price of a material on an index, in a currency."""

    table: ClassVar[str] = "prices"
    price_index: str
    material: str
    currency: str
    value: str
    observed_at: str  # normalised
    source: str
    entry_id: str
    seq: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.price_index, self.material, self.currency)


@dataclass(frozen=True, slots=True)
class RequestRec:
    """An open release request with its approvals so far. The order that executes it
    takes over everything the report needs, and the request record goes away; a request
    that lapses unordered (30 days) stays, as rare as the officials' requests are."""

    table: ClassVar[str] = "release_requests"
    id: str
    seq: int
    recorded_at: str
    lapses_at: str
    requester: str
    requester_key: str
    owner: str
    material: str
    quantity: int
    recipient: str
    regime: str
    purpose: str
    evidence_type: str  # "" (none), exhaustion_declaration, price_observation, override
    evidence: str  # the document hash, the observation id, or the override reason
    evidence_detail: str  # what the evidence showed when the request was recorded
    # (user, key_id, seq, recorded_at, cap or None)
    approvals: tuple[tuple[str, str, int, str, int | None], ...]

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class OrderRec:
    """A ministerial order, kept for good: it is what the reporting obligation reports
    (orders are ministerial acts, as few as reference data). ``remaining`` is the cap
    not yet executed; ``executions`` every movement made under it."""

    table: ClassVar[str] = "release_orders"
    id: str
    seq: int
    recorded_at: str
    minister: str
    minister_key: str
    request: str
    requested_at: str
    requester: str
    owner: str
    material: str
    regime: str
    recipient: str
    purpose: str
    quantity_requested: int
    evidence_type: str
    evidence: str
    evidence_detail: str
    approvals: tuple[tuple[str, str, int, str, int | None], ...]
    quorum: int
    policy_seq: int
    cap: int
    remaining: int
    valid_from: str  # normalised
    valid_until: str  # normalised
    sites: tuple[str, ...]
    report_to: str
    # (seq, entry_id, recorded_at, occurred_at, kind, site, lot, quantity, counterparty)
    executions: tuple[tuple[int, str, str, str, str, str, str, int, str], ...]
    revoked_seq: int | None
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None

    @property
    def key(self) -> str:
        return self.id


RECORD_TYPES: dict[str, type] = {
    r.table: r
    for r in (
        OwnerRec,
        MaterialRec,
        LotRec,
        SiteRec,
        TargetRec,
        BalanceRec,
        TransferRec,
        LoanRec,
        MovementRec,
        PolicyRec,
        PriceRec,
        RequestRec,
        OrderRec,
    )
}


def _tuplify(v: object) -> object:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def record_to_json(table: str, key: Hashable, value: object) -> dict[str, object]:
    """A table row as plain JSON (export bundles)."""
    if table not in RECORD_TYPES:
        return {"key": key, "value": value}
    return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]


def record_from_json(table: str, obj: dict[str, object]) -> tuple[Hashable, object]:
    if table not in RECORD_TYPES:
        return _tuplify(obj["key"]), obj["value"]
    rec = RECORD_TYPES[table](**{k: _tuplify(v) for k, v in obj.items()})
    return rec.key, rec
