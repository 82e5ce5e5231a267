"""Result rows of the stock reads, shared by the database reads (``ledger.store.reports``)
and the offline answers from a verified bundle (``ledger.bundle_queries``), so both say
the same thing in the same shape. Free of the database: the core install imports it.

They are msgspec structs with ``gc=False`` rather than dataclasses (issue #12): a report
of the whole reserve builds thousands of them, and untracked instances neither cost a
Python-level ``__init__`` each nor feed the cyclic garbage collector, whose full passes
over a service's heap were the slowest reads' tail. They hold only strings, integers
and tuples of each other, so they can take part in no reference cycle.
Serialise them with :func:`as_builtins`."""

from __future__ import annotations

from typing import Any

import msgspec


def as_builtins(row: Any) -> Any:
    """Dicts, lists and scalars of a row or report (nested), for JSON or CSV output."""
    return msgspec.to_builtins(row)


class BalanceRow(msgspec.Struct, frozen=True, gc=False):
    """Quantity (grams) of one lot on one account. ``owner`` and ``site`` are set for
    physical holdings (``H/<owner>/<site>``) and ``None`` for virtual accounts."""

    account: str
    owner: str | None
    site: str | None
    material: str
    lot: str
    quantity: int


class TraceLeg(msgspec.Struct, frozen=True, gc=False):
    seq: int
    n: int
    recorded_at: str
    kind: str
    account: str
    delta: int
    balance_after: int


class AccountQuantity(msgspec.Struct, frozen=True, gc=False):
    account: str
    quantity: int


class LotTrace(msgspec.Struct, frozen=True, gc=False):
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
