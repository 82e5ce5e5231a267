"""Which owners an entry touches: the one rule behind owner commitments (issue #14).

The write path commits to this set in each v2 leaf; the full verifier checks every leaf's
commitment against it; the scoped verifier checks the owner's own entries against it. One
pure function, so the three can never disagree about what "touches the owner" means.

An entry touches an owner when it moves, registers or decides about that owner's stock:
its movements (and the arrivals, loan returns and reversals that follow them), its
targets, policies, requests, approvals, orders and revocations, the sites that hold its
stock, and the keys scoped to it or to those sites. Entries that bind everyone (genesis,
log key rotations, keys of no owner or site such as admins and auditors, materials,
prices) touch :data:`EVERY` owner registered so far, so each owner's auditor receives
them and can prove none was withheld. A lot registration touches nobody: whose lot it is
only shows in the receipts, and the scoped bundle carries the lots its owner's movements
use (a missing one makes the replay fail).

``state`` is the state *before* the entry, as the reducer saw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Protocol

from ledger.kinds.keys import Genesis, KeyRegistered, KeyRevoked, LogKeyRotated, TestMovement
from ledger.kinds.release import (
    OrderRevoked,
    PolicySet,
    PriceObserved,
    ReleaseApproved,
    ReleaseOrdered,
    ReleaseRequested,
)
from ledger.kinds.stock import (
    Arrival,
    LoanReturn,
    LotRegistered,
    MaterialRegistered,
    OwnerRegistered,
    Reversal,
    SiteRegistered,
    SiteRelocated,
    TargetSet,
)
from ledger.records import is_holding, split_holding
from ledger.state import KeyRecord


class OwnerLookup(Protocol):
    """What :func:`owners_touched` reads (a :class:`ledger.state.StateView` has it)."""

    def key(self, key_id: str) -> KeyRecord | None: ...

    def get(self, table: str, key: Any) -> Any: ...


class _Every:
    """Every owner registered before the entry (and none registered later)."""

    def __repr__(self) -> str:
        return "EVERY"


EVERY: Final = _Every()
Touched = frozenset[str] | _Every

_GLOBAL = (Genesis, LogKeyRotated, MaterialRegistered, PriceObserved, TestMovement)
# Entries that name an earlier record: they touch that record's owner (none if unknown).
_BY_REFERENCE: Final = (
    (ReleaseApproved | ReleaseOrdered, "release_requests", "request"),
    (OrderRevoked, "release_orders", "order"),
    (Arrival, "transfers", "transfer"),
    (LoanReturn, "loans", "loan"),
)


def _site_owners(state: OwnerLookup, site: str) -> frozenset[str]:
    rec = state.get("sites", site)
    return frozenset(rec.owners) if rec is not None else frozenset()


def _key_scope(state: OwnerLookup, owners: Any, sites: Any) -> Touched:
    found = set(owners)
    for s in sites:
        found |= _site_owners(state, s)
    return frozenset(found) if found or owners or sites else EVERY


def owners_touched(body: Any, state: OwnerLookup) -> Touched:
    """The owners ``body`` touches, or :data:`EVERY` (see the module doc)."""
    if isinstance(body, _GLOBAL):
        return EVERY
    if isinstance(body, LotRegistered):
        return frozenset()
    if isinstance(body, OwnerRegistered):
        return frozenset({body.code})
    if isinstance(body, SiteRegistered):
        return frozenset(body.owners)
    if isinstance(body, SiteRelocated):
        return _site_owners(state, body.site)
    if isinstance(body, KeyRegistered):
        return _key_scope(state, body.owners, body.sites)
    if isinstance(body, KeyRevoked):
        rec = state.key(body.key_id)
        return EVERY if rec is None else _key_scope(state, rec.owners, rec.sites)
    if isinstance(body, TargetSet | PolicySet | ReleaseRequested):
        return frozenset({body.owner})
    for kinds, table, field in _BY_REFERENCE:
        if isinstance(body, kinds):
            rec = state.get(table, getattr(body, field))
            return frozenset({rec.owner}) if rec is not None else frozenset()
    if isinstance(body, Reversal):
        m = state.get("movements", body.reverses)
        if m is None:
            return frozenset()
        return frozenset(split_holding(p[0])[0] for p in m.postings if is_holding(p[0]))
    owner = getattr(body, "owner", None)  # every other movement names its owner
    return frozenset({owner}) if isinstance(owner, str) else frozenset()


def registered_owners(body: Any, registered: Iterable[str]) -> set[str]:
    """The owners with a secret when ``body`` is written: those registered before it, and
    the owner it registers (its secret is made in the same transaction)."""
    out = set(registered)
    if isinstance(body, OwnerRegistered):
        out.add(body.code)
    return out


def touches(touched: Touched, owner: str, *, registered: bool) -> bool:
    """Whether the entry touches ``owner``, registered before it or not. An owner not yet
    registered has no secret to be named with (a key may be scoped to an owner before
    its registration); its auditors get such entries as support (``owner_export``)."""
    return registered and (isinstance(touched, _Every) or owner in touched)
