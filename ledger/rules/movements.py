"""Movement rules: every kind of stock movement as balanced postings (issue #3).

Each movement posts legs between physical holdings (``H/<owner>/<site>``) and virtual
accounts (supplier, transit, loss, gain, loans, buyer, recipient, rotation, conversion)
that sum to zero per lot (:class:`~ledger.rules.common.Book`). A holding never goes
negative at any point of the history, because every leg is checked as it is posted.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from ledger.kinds.stock import (
    Arrival,
    Conversion,
    Dispatch,
    LoanOut,
    LoanReturn,
    Receipt,
    Release,
    Reversal,
    Rotation,
    Sale,
    StockCount,
)
from ledger.records import (
    CONVERSION,
    GAIN,
    LOANS,
    LOSS,
    ROTATION,
    TRANSIT,
    LoanRec,
    LotRec,
    MovementRec,
    SiteRec,
    TransferRec,
    holding,
    virtual,
)
from ledger.reducer import Context, Signers, rule
from ledger.rules.common import (
    Book,
    need,
    policy_in_force,
    refuse,
    require_site_for_owner,
    require_site_scope,
    site_holds_for,
)
from ledger.rules.release import execute_order
from ledger.state import CLOCK_SKEW, Change, Put, StateView
from ledger.timefmt import format_time, parse_time
from ledger.units import format_quantity

# A reversal must come within this time of the movement it mirrors; later corrections
# are new movements (a count, a receipt). It also bounds what the verifier remembers.
REVERSAL_WINDOW = timedelta(days=30)
# Stock-count tolerance, in percent of the book quantity, where no release policy
# (issue #5) is in force for the owner and material.
DEFAULT_COUNT_TOLERANCE = Decimal("0.5")
DEFAULT_ASSAY_TOLERANCE = Decimal("0.5")  # percentage points of purity
# Kinds a reversal may mirror; see ``reversal`` for why the others are not.
REVERSIBLE = (
    "stock.receipt",
    "stock.dispatch",
    "stock.rotation",
    "stock.conversion",
    "stock.count",
)


def _site_for_movement(
    state: StateView, signers: Signers, site_code: str, occurred_at: str, ctx: Context
) -> SiteRec:
    """Scope, existence and time checks every movement shares."""
    require_site_scope(signers, site_code, ctx)
    site: SiteRec = need(state, "sites", site_code, ctx, what="site", field="entry.site")
    occurred = parse_time(occurred_at, field="entry.occurred_at")
    if occurred > ctx.recorded_at + CLOCK_SKEW:
        raise refuse("clock", "the movement is dated in the future", ctx, "entry.occurred_at")
    if site.last_count_at is not None and occurred < parse_time(site.last_count_at):
        raise refuse(
            "before-count",
            f"the movement is dated before the last stock count at {site.code} ({site.last_count_at})",
            ctx,
            "entry.occurred_at",
        )
    return site


def _movement(
    kind: str, body_id: str, site: str, book: Book, ctx: Context, occurred_at: str
) -> list[Change]:
    changes = book.close()
    rec = MovementRec(
        entry_id=body_id,
        seq=ctx.seq,
        kind=kind,
        site=site,
        recorded_at=format_time(ctx.recorded_at),
        postings=tuple(book.legs),
        reversed_by=None,
        occurred_at=occurred_at,
    )
    changes.append(Put("movements", body_id, rec))
    return changes


@rule(Receipt)
def receipt(state: StateView, body: Receipt, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    site_holds_for(site, body.owner, ctx)
    book = Book(state, ctx)
    lot = book.lot(body.lot, "entry.lot")
    _check_assay(state, body, lot, ctx)
    book.post(virtual("supplier", body.supplier), body.lot, -body.quantity)
    book.post(holding(body.owner, site.code), body.lot, body.quantity)
    return _movement("stock.receipt", body.id, site.code, book, ctx, body.occurred_at)


@rule(Dispatch)
def dispatch(state: StateView, body: Dispatch, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    if body.to_site == site.code:
        raise refuse("same-site", "a transfer goes to another site", ctx, "entry.to_site")
    book = Book(state, ctx)
    lot = book.lot(body.lot, "entry.lot")
    book.post(holding(body.owner, site.code), body.lot, -body.quantity)
    book.post(TRANSIT, body.lot, body.quantity)
    # The destination is checked last: every other refusal comes first and reads the
    # same whatever the destination, so no refusal tells whether it exists (issue #8).
    dest = require_site_for_owner(state, body.to_site, body.owner, ctx, field="entry.to_site")
    transfer = TransferRec(
        body.id,
        body.owner,
        body.lot,
        lot.material,
        site.code,
        dest.code,
        body.quantity,
        ctx.seq,
        dispatched_at=body.occurred_at,
    )
    return [
        *_movement("stock.dispatch", body.id, site.code, book, ctx, body.occurred_at),
        Put("transfers", body.id, transfer),
    ]


@rule(Arrival)
def arrival(state: StateView, body: Arrival, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    t: TransferRec | None = state.get("transfers", body.transfer)
    if t is None:
        raise refuse(
            "unknown-transfer",
            "no open transfer with this id (unknown or already resolved)",
            ctx,
            "entry.transfer",
        )
    if t.to_site != site.code:
        # Name only the caller's own site: the destination may be outside their scope.
        raise refuse("wrong-site", f"this transfer does not go to {site.code}", ctx, "entry.site")
    if t.dispatched_at is not None and parse_time(body.occurred_at) < parse_time(t.dispatched_at):
        raise refuse(
            "arrival-before-dispatch",
            f"the arrival is dated before the dispatch ({t.dispatched_at})",
            ctx,
            "entry.occurred_at",
        )
    if body.quantity > t.quantity:
        raise refuse(
            "over-arrival",
            f"{format_quantity(body.quantity)} arrived but only {format_quantity(t.quantity)} were dispatched",
            ctx,
            "entry.quantity",
        )
    shortfall = t.quantity - body.quantity
    if shortfall and not body.shortfall_reason.strip():
        raise refuse(
            "shortfall-reason",
            f"{format_quantity(shortfall)} are missing: state the reason",
            ctx,
            "entry.shortfall_reason",
        )
    book = Book(state, ctx)
    book.lot(t.lot, "entry.transfer")
    book.post(TRANSIT, t.lot, -t.quantity)
    if body.quantity:
        book.post(holding(t.owner, site.code), t.lot, body.quantity)
    if shortfall:
        book.post(LOSS, t.lot, shortfall)
    # A transfer resolves once: the open record goes away.
    return [
        *_movement("stock.arrival", body.id, site.code, book, ctx, body.occurred_at),
        Put("transfers", t.id, None),
    ]


def _hand_over(
    state: StateView,
    body: Release | Sale,
    signers: Signers,
    ctx: Context,
    *,
    counterparty: str,
    account: str,
    field: str,
) -> list[Change]:
    """Stock leaving the reserve to a recipient or buyer, as the execution of an order
    (``ledger.rules.release.execute_order``: cap, window, eligible sites, revocation)."""
    kind = "stock.release" if isinstance(body, Release) else "stock.sale"
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    if isinstance(body, Release):
        site_holds_for(site, body.owner, ctx)
    book = Book(state, ctx)
    lot = book.lot(body.lot, "entry.lot")
    authorised = execute_order(
        state,
        ctx,
        order_id=body.order,
        kind=kind,
        entry_id=body.id,
        site=site.code,
        owner=body.owner,
        lot=body.lot,
        material=lot.material,
        quantity=body.quantity,
        counterparty=counterparty,
        counterparty_field=field,
        occurred_at=body.occurred_at,
    )
    book.post(holding(body.owner, site.code), body.lot, -body.quantity)
    book.post(virtual(account, counterparty), body.lot, body.quantity)
    return [*_movement(kind, body.id, site.code, book, ctx, body.occurred_at), authorised]


@rule(Release)
def release(state: StateView, body: Release, signers: Signers, ctx: Context) -> list[Change]:
    """Stock handed to the recipient named by an ``emergency_release`` order."""
    return _hand_over(
        state,
        body,
        signers,
        ctx,
        counterparty=body.recipient,
        account="recipient",
        field="entry.recipient",
    )


@rule(LoanOut)
def loan_out(state: StateView, body: LoanOut, signers: Signers, ctx: Context) -> list[Change]:
    """A loan executes a ``loan`` order; the borrower is the order's recipient."""
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    site_holds_for(site, body.owner, ctx)
    if parse_time(body.due_at, field="entry.due_at") <= parse_time(body.occurred_at):
        raise refuse("due-date", "the loan must be due after it is made", ctx, "entry.due_at")
    book = Book(state, ctx)
    lot = book.lot(body.lot, "entry.lot")
    authorised = execute_order(
        state,
        ctx,
        order_id=body.order,
        kind="stock.loan_out",
        entry_id=body.id,
        site=site.code,
        owner=body.owner,
        lot=body.lot,
        material=lot.material,
        quantity=body.quantity,
        counterparty=body.borrower,
        counterparty_field="entry.borrower",
        occurred_at=body.occurred_at,
    )
    book.post(holding(body.owner, site.code), body.lot, -body.quantity)
    book.post(LOANS, body.lot, body.quantity)
    loan = LoanRec(
        id=body.id,
        owner=body.owner,
        site=site.code,
        lot=body.lot,
        material=lot.material,
        borrower=body.borrower,
        quantity=body.quantity,
        outstanding=body.quantity,
        due_at=body.due_at,
        premium_pct=body.premium_pct,
        lent_seq=ctx.seq,
    )
    return [
        *_movement("stock.loan_out", body.id, site.code, book, ctx, body.occurred_at),
        Put("loans", body.id, loan),
        authorised,
    ]


@rule(LoanReturn)
def loan_return(state: StateView, body: LoanReturn, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    loan: LoanRec | None = state.get("loans", body.loan)
    if loan is None:
        raise refuse(
            "unknown-loan",
            "no open loan with this id (unknown or fully returned)",
            ctx,
            "entry.loan",
        )
    site_holds_for(site, loan.owner, ctx, "entry.site")
    if body.quantity > loan.outstanding:
        raise refuse(
            "over-return",
            f"only {format_quantity(loan.outstanding)} of this loan are outstanding",
            ctx,
            "entry.quantity",
        )
    book = Book(state, ctx)
    book.lot(loan.lot, "entry.loan")
    book.post(LOANS, loan.lot, -body.quantity)
    book.post(holding(loan.owner, site.code), loan.lot, body.quantity)
    left = loan.outstanding - body.quantity
    updated = None if left == 0 else replace(loan, outstanding=left)
    return [
        *_movement("stock.loan_return", body.id, site.code, book, ctx, body.occurred_at),
        Put("loans", loan.id, updated),
    ]


@rule(Sale)
def sale(state: StateView, body: Sale, signers: Signers, ctx: Context) -> list[Change]:
    """A sale executes an ``ordinary_sale`` or ``price_spike_sale`` order; the buyer is
    the order's recipient."""
    return _hand_over(
        state, body, signers, ctx, counterparty=body.buyer, account="buyer", field="entry.buyer"
    )


@rule(Rotation)
def rotation(state: StateView, body: Rotation, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    site_holds_for(site, body.owner, ctx)
    book = Book(state, ctx)
    out = book.lot(body.lot_out, "entry.lot_out")
    new = book.lot(body.lot_in, "entry.lot_in")
    if body.lot_in == body.lot_out:
        raise refuse("rotation", "a rotation brings in another lot", ctx, "entry.lot_in")
    if new.material != out.material:
        raise refuse(
            "rotation",
            f"a rotation replaces {out.material} with {out.material}, not with {new.material}",
            ctx,
            "entry.lot_in",
        )
    if new.basis != out.basis or Decimal(new.purity) < Decimal(out.purity):
        raise refuse(
            "rotation-grade",
            f"the incoming lot must be of equal or better grade ({new.purity}% < {out.purity}% {out.basis})"
            if new.basis == out.basis
            else "the incoming lot's purity is stated on another basis",
            ctx,
            "entry.lot_in",
        )
    holder = holding(body.owner, site.code)
    book.post(holder, body.lot_out, -body.quantity)
    book.post(ROTATION, body.lot_out, body.quantity)
    book.post(ROTATION, body.lot_in, -body.quantity)
    book.post(holder, body.lot_in, body.quantity)
    return _movement("stock.rotation", body.id, site.code, book, ctx, body.occurred_at)


@rule(Conversion)
def conversion(state: StateView, body: Conversion, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    site_holds_for(site, body.owner, ctx)
    book = Book(state, ctx)
    book.lot(body.lot_in, "entry.lot_in")
    book.lot(body.lot_out, "entry.lot_out")
    if body.lot_in == body.lot_out:
        raise refuse("conversion", "a conversion produces another lot", ctx, "entry.lot_out")
    holder = holding(body.owner, site.code)
    book.post(holder, body.lot_in, -body.quantity_in, field="entry.quantity_in")
    book.post(CONVERSION, body.lot_in, body.quantity_in)
    book.post(CONVERSION, body.lot_out, -body.quantity_out)
    book.post(holder, body.lot_out, body.quantity_out)
    return _movement("stock.conversion", body.id, site.code, book, ctx, body.occurred_at)


def assay_tolerance(state: StateView, owner: str, material: str, at: datetime) -> Decimal:
    """Percentage points a receipt's purity may differ from its lot's assay without a
    stated reason: the release policy's in force at ``at``, else the default 0.5."""
    policy = policy_in_force(state, owner, material, at)
    if policy is None or policy.assay_tolerance_pct is None:
        return DEFAULT_ASSAY_TOLERANCE
    return Decimal(policy.assay_tolerance_pct)


def _check_assay(state: StateView, body: Receipt, lot: LotRec, ctx: Context) -> None:
    """A receipt's accepted purity is checked against its lot's certified assay (same
    basis): a difference beyond the tolerance needs a stated reason (issue #12)."""
    difference = abs(Decimal(body.accepted_purity) - Decimal(lot.purity))
    tolerance = assay_tolerance(state, body.owner, lot.material, ctx.recorded_at)
    if difference > tolerance and not (body.purity_deviation_reason or "").strip():
        raise refuse(
            "assay",
            f"accepted purity {body.accepted_purity}% differs from lot {lot.code}'s assay of "
            f"{lot.purity}% {lot.basis} by {difference} points, more than the tolerance of "
            f"{tolerance}; state the reason (purity_deviation_reason) if it is right",
            ctx,
            "entry.accepted_purity",
        )


def count_tolerance(state: StateView, owner: str, material: str, at: datetime) -> Decimal:
    """Percent of the book quantity a count may differ by without a second officer: the
    release policy's in force at ``at`` (the log's time), else the default 0.5 %."""
    policy = policy_in_force(state, owner, material, at)
    return Decimal(policy.count_tolerance_pct) if policy else DEFAULT_COUNT_TOLERANCE


@rule(StockCount)
def stock_count(state: StateView, body: StockCount, signers: Signers, ctx: Context) -> list[Change]:
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    site_holds_for(site, body.owner, ctx)
    book = Book(state, ctx)
    lot = book.lot(body.lot, "entry.lot")
    holder = holding(body.owner, site.code)
    on_book = book.balance(holder, body.lot)
    if body.book != on_book:
        raise refuse(
            "book-changed",
            f"the book quantity is {format_quantity(on_book)}, not {format_quantity(body.book)}: count again",
            ctx,
            "entry.book",
        )
    diff = body.counted - on_book
    tolerance = count_tolerance(state, body.owner, lot.material, ctx.recorded_at)
    beyond = abs(diff) * 100 > tolerance * on_book if on_book else diff != 0
    if signers.cosigners:
        second = signers.cosigners[0]
        officer = ("operator" in second.roles and site.code in second.sites) or (
            "official" in second.roles and body.owner in second.owners
        )
        if len(signers.cosigners) > 1 or second.user == signers.author.user or not officer:
            raise refuse(
                "second-officer",
                "the second signature must be one other officer: an operator of the site or an official of the owner",
                ctx,
                "sigs[1]",
            )
    elif beyond:
        raise refuse(
            "count-tolerance",
            f"the count differs from the book by {format_quantity(diff)}, beyond the {tolerance}% "
            "tolerance: a second officer must co-sign",
            ctx,
            "sigs",
        )
    if diff < 0:
        book.post(holder, body.lot, diff, field="entry.counted")
        book.post(LOSS, body.lot, -diff)
    elif diff > 0:
        book.post(GAIN, body.lot, -diff)
        book.post(holder, body.lot, diff)
    counted_at = body.occurred_at
    if site.last_count_at is not None and parse_time(site.last_count_at) > parse_time(counted_at):
        counted_at = site.last_count_at  # pragma: no cover - refused above as before-count
    updated = replace(site, last_count_at=counted_at)
    return [
        *_movement("stock.count", body.id, site.code, book, ctx, body.occurred_at),
        Put("sites", site.code, updated),
    ]


@rule(Reversal)
def reversal(state: StateView, body: Reversal, signers: Signers, ctx: Context) -> list[Change]:
    """Mirror one earlier movement's postings, once. Arrivals and loan returns are not
    reversible (they close a transfer or a loan), nor are releases, sales and loans out:
    they execute a ministerial order and count against its cap (issue #5), so a mistaken
    one is dealt with by the minister (revoking the order), not undone by an operator.
    A dispatch is reversible only while in transit."""
    site = _site_for_movement(state, signers, body.site, body.occurred_at, ctx)
    orig: MovementRec | None = state.get("movements", body.reverses)
    if orig is None or orig.kind not in REVERSIBLE:
        raise refuse("not-reversible", "no reversible movement with this id", ctx, "entry.reverses")
    if parse_time(orig.recorded_at) < ctx.recorded_at - REVERSAL_WINDOW:
        raise refuse(
            "reversal-window",
            "movements older than 30 days are corrected by a new movement, not reversed",
            ctx,
            "entry.reverses",
        )
    if orig.occurred_at is not None and parse_time(body.occurred_at) < parse_time(orig.occurred_at):
        raise refuse(
            "reversal-before-movement",
            f"the reversal is dated before the movement it reverses ({orig.occurred_at})",
            ctx,
            "entry.occurred_at",
        )
    if orig.reversed_by is not None:
        raise refuse(
            "already-reversed",
            f"this movement was already reversed at seq {orig.reversed_by}",
            ctx,
            "entry.reverses",
        )
    if orig.site != site.code:
        raise refuse(
            "wrong-site", f"the movement was not recorded at {site.code}", ctx, "entry.site"
        )
    extra: list[Change] = []
    if orig.kind == "stock.dispatch":
        if state.get("transfers", orig.entry_id) is None:
            raise refuse(
                "not-reversible", "the transfer has already arrived", ctx, "entry.reverses"
            )
        extra.append(Put("transfers", orig.entry_id, None))
    book = Book(state, ctx)
    for account, _material, lot, delta in reversed(orig.postings):
        book.lot(lot, "entry.reverses")
        book.post(account, lot, -delta, field="entry.reverses")
    changes = book.close()
    changes.append(Put("movements", orig.entry_id, replace(orig, reversed_by=ctx.seq)))
    return changes + extra
