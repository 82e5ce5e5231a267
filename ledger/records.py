"""Records of the reducer's domain tables (``ledger.state.TABLES``).

Each record knows its table key (``key``). ``ledger.store.projections`` maps the fields
one to one onto columns (tuples as JSON text), so adding a field means a migration.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, fields
from typing import ClassVar

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

    @property
    def key(self) -> str:
        return self.entry_id


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
