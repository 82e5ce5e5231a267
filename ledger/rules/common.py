"""Helpers shared by the domain rules: scope checks and the double-entry book."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from ledger.canonical import MAX_SAFE_INT
from ledger.errors import Rejected
from ledger.records import BalanceRec, LotRec, PolicyRec, PolicyVersion, SiteRec, is_holding
from ledger.reducer import Context, Signers
from ledger.state import Change, Post, Posting, Put, StateView
from ledger.timefmt import format_time
from ledger.units import format_quantity

# The largest balance any account may reach, either way (issue #8, item 3): 2^53 - 1 g
# (about 9 billion tonnes). Every quantity and balance then stays exact as a JSON number
# (I-JSON, RFC 7493 section 2.2), fits a BIGINT on both engines with room for sums, and
# can always be reversed and reported. Beyond it a movement is refused ("holding-limit"),
# before any database could overflow, so both engines decide the same way.
MAX_BALANCE = MAX_SAFE_INT


def within_balance_limit(balance: int) -> bool:
    """The one rule for how large an account's balance may grow (see MAX_BALANCE)."""
    return -MAX_BALANCE <= balance <= MAX_BALANCE


def refuse(rule: str, message: str, ctx: Context, field: str | None = None) -> Rejected:
    return Rejected(rule, message, field=field, seq=ctx.seq)


def need(state: StateView, table: str, key: Any, ctx: Context, *, what: str, field: str) -> Any:
    """The record, or a refusal naming what does not exist."""
    rec = state.get(table, key)
    if rec is None:
        raise refuse(f"unknown-{what}", f"no {what} '{key}' is registered", ctx, field)
    return rec


def require_site_scope(
    signers: Signers, site: str, ctx: Context, *, field: str = "entry.site"
) -> None:
    if "operator" not in signers.author.roles:
        raise refuse("role", "only an operator records movements", ctx, "entry.author")
    if site not in signers.author.sites:
        # Same words whether the site exists or not: scope must not reveal sites.
        raise refuse("site-scope", f"site '{site}' is not in your scope", ctx, field)


def require_owner_scope(signers: Signers, role: str, owner: str, ctx: Context) -> None:
    if role not in signers.author.roles:
        raise refuse("role", f"only a user with the role '{role}' may do this", ctx, "entry.author")
    if owner not in signers.author.owners:
        raise refuse("owner-scope", f"owner '{owner}' is not in your scope", ctx, "entry.owner")


def site_holds_for(site: SiteRec, owner: str, ctx: Context, field: str = "entry.owner") -> None:
    if owner != site.custodian and owner not in site.owners:
        raise _not_for_owner(site.code, owner, ctx, field)


def require_site_for_owner(
    state: StateView, code: str, owner: str, ctx: Context, *, field: str
) -> SiteRec:
    """A site named for ``owner``'s stock by someone scoped by owner (a minister's order, a
    dispatch's destination). A site that does not exist and one that does not hold for the
    owner are refused with the same rule and the same words, so the refusal is no oracle
    for which sites exist (DESIGN.md "Who may do and see what"; issue #8 item 7)."""
    site: SiteRec | None = state.get("sites", code)
    if site is None or (owner != site.custodian and owner not in site.owners):
        raise _not_for_owner(code, owner, ctx, field)
    return site


def _not_for_owner(code: str, owner: str, ctx: Context, field: str) -> Rejected:
    return refuse("site-owner", f"site {code} does not hold stock for owner '{owner}'", ctx, field)


def policy_in_force(
    state: StateView, owner: str, material: str, at: datetime
) -> PolicyVersion | None:
    """The release policy (issue #5) of ``owner`` and ``material`` in force at ``at``:
    the version with the latest ``effective_at`` not after it, if any."""
    rec: PolicyRec | None = state.get("policies", (owner, material))
    return rec.in_force(format_time(at)) if rec is not None else None


class Book:
    """The postings of one movement. Each ``post`` reads the account's balance (as of this
    entry, including earlier legs) and refuses a holding that would go negative; ``close``
    checks the legs sum to zero per lot and returns the changes."""

    def __init__(self, state: StateView, ctx: Context):
        self.state = state
        self.ctx = ctx
        self.legs: list[tuple[str, str, str, int]] = []
        self._balances: dict[tuple[str, str], int] = {}
        self._material: dict[str, str] = {}

    def lot(self, code: str, field: str) -> LotRec:
        rec: LotRec = need(self.state, "lots", code, self.ctx, what="lot", field=field)
        self._material[code] = rec.material
        return rec

    def balance(self, account: str, lot: str) -> int:
        key = (account, lot)
        if key not in self._balances:
            rec: BalanceRec | None = self.state.get("balances", key)
            self._balances[key] = rec.quantity if rec else 0
        return self._balances[key]

    def post(self, account: str, lot: str, delta: int, *, field: str = "entry.quantity") -> None:
        new = self.balance(account, lot) + delta
        if new < 0 and is_holding(account):
            raise refuse(
                "negative-holding",
                f"{account[2:]} holds only {format_quantity(new - delta)} of lot {lot}; "
                f"this would leave {format_quantity(new)}",
                self.ctx,
                field,
            )
        if not within_balance_limit(new):
            raise refuse(
                "holding-limit",
                f"this would take {account[2:]} beyond the largest balance the ledger keeps "
                f"({format_quantity(MAX_BALANCE)}) for lot {lot}",
                self.ctx,
                field,
            )
        self._balances[(account, lot)] = new
        self.legs.append((account, self._material[lot], lot, delta))

    def close(self) -> list[Change]:
        total: dict[str, int] = defaultdict(int)
        for _, _, lot, delta in self.legs:
            total[lot] += delta
        if any(total.values()):  # pragma: no cover - every rule posts balanced legs
            raise refuse("unbalanced", "postings do not sum to zero per lot", self.ctx)
        changes: list[Change] = []
        running: dict[tuple[str, str], int] = {}
        for n, (account, material, lot, delta) in enumerate(self.legs):
            key = (account, lot)
            running[key] = running.get(key, self.balance(account, lot) - self._sum(key)) + delta
            changes.append(
                Post(Posting(self.ctx.seq, n, account, material, lot, delta, running[key]))
            )
        for (account, lot), qty in self._balances.items():
            if any(leg[0] == account and leg[2] == lot for leg in self.legs):
                # Zero balances stay: the table doubles as the index of every account and
                # lot ever used, which as-of queries walk (ledger.store.reports).
                changes.append(
                    Put(
                        "balances",
                        (account, lot),
                        BalanceRec(account, lot, self._material[lot], qty),
                    )
                )
        return changes

    def _sum(self, key: tuple[str, str]) -> int:
        return sum(d for a, _, lot, d in self.legs if (a, lot) == key)
