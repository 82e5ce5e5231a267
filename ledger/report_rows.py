"""Result rows of the stock reads, shared by the database reads (``ledger.store.reports``)
and the offline answers from a verified bundle (``ledger.bundle_queries``), so both say
the same thing in the same shape. Free of the database: the core install imports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """Quantity (grams) of one lot on one account. ``owner`` and ``site`` are set for
    physical holdings (``H/<owner>/<site>``) and ``None`` for virtual accounts."""

    account: str
    owner: str | None
    site: str | None
    material: str
    lot: str
    quantity: int


@dataclass(frozen=True, slots=True)
class TraceLeg:
    seq: int
    n: int
    recorded_at: str
    kind: str
    account: str
    delta: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class AccountQuantity:
    account: str
    quantity: int


@dataclass(frozen=True, slots=True)
class LotTrace:
    """Every leg of a lot in log order and where it is now.

    ``balanced``: the current distribution over all accounts (physical and virtual) sums
    to zero, as double entry requires. ``consistent``: the legs explain the distribution
    exactly (folding the deltas gives every account's current balance, each leg's
    ``balance_after`` is the running balance, and each movement's legs on this lot sum to
    zero). ``held`` is the sum over physical holdings; ``owners`` every owner whose
    holding the lot ever touched (for the caller's scope check)."""

    lot: str
    material: str
    legs: tuple[TraceLeg, ...]
    distribution: tuple[AccountQuantity, ...]
    held: int
    owners: tuple[str, ...]
    balanced: bool
    consistent: bool
