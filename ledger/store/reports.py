"""Read-only stock reports over the projections: balances now and as of any point of the
log, where a lot went, days of cover against targets, the EU CRMA (Art. 22) aggregate,
overdue loans and open transfers.

Every function takes a :class:`~sqlalchemy.Connection` and returns typed, frozen
dataclasses; nothing here writes. Reports name sites by code only: no location ever
enters the database tables read here, and the aggregate reports (:func:`cover`,
:func:`crma_report`) carry no site code at all.

Scoping: the functions that aggregate or list stock take ``owners`` (``None`` = every
owner, ``[]`` = none), some also ``sites``; the API passes the caller's scope. Virtual
accounts (``V/...``) cannot be attributed to an owner or a site, so any owner or site
filter or scope restricts :func:`balances` to physical holdings.

As-of queries never replay: ``postings`` carries each leg's ``balance_after`` and every
5,000 postings the append stores a balance snapshot, so the balances at seq ``s`` are
the last snapshot at or before ``s`` overridden by each pair's last posting after it
(``ledger.store.snapshots``, issue #12). "As of a time" means as recorded in the log by
then (``recorded_at``,
:func:`seq_at_time`), not as dated by the movements' ``occurred_at``.

Reports that read more than once (:func:`crma_report`, :func:`cover`) pin their figures
to one seq; for a fully consistent snapshot of the reference tables too, give them a
connection of a read-only engine (``make_engine(url, readonly=True)``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, false, or_, select, true

from ledger import timefmt
from ledger.errors import InvalidQuery, NotFound
from ledger.policy import StockScope
from ledger.records import HOLDING_PREFIX, is_holding, split_holding
from ledger.report_rows import AccountQuantity as AccountQuantity
from ledger.report_rows import BalanceRow as BalanceRow
from ledger.report_rows import LotTrace as LotTrace
from ledger.report_rows import TraceLeg as TraceLeg
from ledger.store import snapshots
from ledger.store.db import plain_rows
from ledger.store.schema import (
    balances as balances_t,
)
from ledger.store.schema import (
    entries,
    loans,
    log_state,
    lots,
    materials,
    postings,
    targets,
    transfers,
)
from ledger.timefmt import format_time, parse_time

DAYS_PER_YEAR = 365
TREND_YEARS = 5
# Report years (CRMA Art. 22): four-digit years whose trend (year-4) is still one.
YEAR_MIN, YEAR_MAX = 1970, 9999

# -- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoverRow:
    """Stock held against a target. ``days_held`` = held x 365 / annual quantity, to one
    decimal (half up); ``required`` = the target days' worth in grams (rounded up);
    ``shortfall`` = what is missing to reach it (0 when met)."""

    owner: str
    material: str
    held: int
    annual_quantity: int
    basis: str
    target_days: int
    days_held: Decimal
    required: int
    shortfall: int


@dataclass(frozen=True, slots=True)
class PurityRow:
    """Quantity-weighted average purity (percent, four decimals, half up) of the stock
    held whose lots state purity on ``basis``."""

    basis: str
    purity: Decimal
    tonnes: Decimal


@dataclass(frozen=True, slots=True)
class TrendPoint:
    year: int
    tonnes: Decimal


@dataclass(frozen=True, slots=True)
class CrmaMaterial:
    """One material of the CRMA aggregate. ``percent_of_consumption`` (two decimals,
    half up) relates the stock of the owners that have a target on the basis
    ``consumption`` valid at the report time to the sum of those targets' annual
    quantities; ``None`` if no owner in scope has one."""

    material: str
    name: str
    form: str
    grade_basis: str
    tonnes_held: Decimal
    annual_consumption_tonnes: Decimal | None
    percent_of_consumption: Decimal | None
    purity: tuple[PurityRow, ...]
    trend: tuple[TrendPoint, ...]


@dataclass(frozen=True, slots=True)
class CrmaReport:
    """EU Critical Raw Materials Act, Art. 22 style: stock per material, no site."""

    year: int
    generated_at: str
    as_of_seq: int
    owners: tuple[str, ...] | None
    materials: tuple[CrmaMaterial, ...]


@dataclass(frozen=True, slots=True)
class LoanRow:
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
    days_overdue: int


@dataclass(frozen=True, slots=True)
class TransferRow:
    id: str
    owner: str
    lot: str
    material: str
    from_site: str
    to_site: str
    quantity: int
    dispatched_seq: int
    dispatched_at: str


# -- time -----------------------------------------------------------------------------


def _log_size(conn: Connection) -> int:
    size = conn.execute(select(log_state.c.size)).scalar_one_or_none()
    return int(size) if size is not None else 0


def _recorded_at(conn: Connection, seq: int) -> str:
    return str(conn.execute(select(entries.c.recorded_at).where(entries.c.seq == seq)).scalar_one())


def seq_at_time(conn: Connection, time: str) -> int:
    """The last seq recorded at or before ``time`` (RFC 3339 UTC), -1 if none.

    The log's clock never runs backwards, so ``recorded_at`` (fixed-width, sortable as
    text) is non-decreasing in seq: a binary search over the primary key finds it in
    about log2(size) point reads, with no index on ``recorded_at`` and no scan."""
    t = format_time(parse_time(time, field="time"))
    size = _log_size(conn)
    if size == 0:
        return -1
    if _recorded_at(conn, size - 1) <= t:
        return size - 1
    lo, hi = 0, size - 1  # answer in [lo - 1, hi - 1]: recorded_at(hi) > t
    while lo < hi:
        mid = (lo + hi) // 2
        if _recorded_at(conn, mid) <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def resolve_as_of(conn: Connection, *, as_of_seq: int | None, as_of: str | None) -> int | None:
    """The seq a point-in-time read is taken at (``None``: now), refusing what the log
    cannot answer rather than answering something else (issue #8 item 10): a seq past
    its end (not today's balances) or a time before its genesis (not "seq -1"). The CLI
    and the API both call this, so they agree."""
    if as_of_seq is not None and as_of is not None:
        raise InvalidQuery("give a seq or a time, not both", field="as_of")
    if as_of is not None:
        seq = seq_at_time(conn, format_time(parse_time(as_of, field="as_of")))
        if seq < 0:
            raise InvalidQuery("that time is before the log's first entry", field="as_of")
        return seq
    if as_of_seq is not None:
        # The size only when there is a seq to check: a read of "now" needs no round
        # trip for it (issue #11, GET /balances under load).
        _check_seq(as_of_seq, _log_size(conn))
    return as_of_seq


def _check_seq(seq: int, size: int) -> None:
    if not 0 <= seq < size:
        raise InvalidQuery(
            f"seq {seq} is not in the log: its entries are 0 to {size - 1}", field="as_of_seq"
        )


def check_year(year: int) -> int:
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise InvalidQuery(f"year must be {YEAR_MIN} to {YEAR_MAX}", field="year")
    return year


# -- balances -------------------------------------------------------------------------


def _owner_prefix(owner: str) -> str:
    return f"{HOLDING_PREFIX}{owner}/"


def _account_filters(
    *,
    owner: str | None,
    site: str | None,
    owners: Sequence[str] | None,
    sites: Sequence[str] | None,
    include_virtual: bool,
    scope: StockScope | None = None,
    column: Any = None,
) -> ColumnElement[bool]:
    """The account filter on ``column`` (default ``balances.account``; the snapshot
    reads apply it to the snapshot rows and the postings)."""
    acct = balances_t.c.account if column is None else column
    holdings_only = not include_virtual or any(
        x is not None for x in (owner, site, owners, sites, scope)
    )
    conds: list[ColumnElement[bool]] = []
    if scope is not None:
        either = [acct.startswith(_owner_prefix(o), autoescape=True) for o in sorted(scope.owners)]
        either += [acct.endswith(f"/{s}", autoescape=True) for s in sorted(scope.sites)]
        conds.append(or_(*either) if either else false())
    if holdings_only:
        conds.append(acct.startswith(HOLDING_PREFIX, autoescape=True))
    if owner is not None:
        conds.append(acct.startswith(_owner_prefix(owner), autoescape=True))
    if site is not None:
        # Codes hold no '/', so the suffix names exactly one site.
        conds.append(acct.endswith(f"/{site}", autoescape=True))
    if owners is not None:
        conds.append(
            or_(*[acct.startswith(_owner_prefix(o), autoescape=True) for o in owners])
            if owners
            else false()
        )
    if sites is not None:
        conds.append(
            or_(*[acct.endswith(f"/{s}", autoescape=True) for s in sites]) if sites else false()
        )
    return and_(true(), *conds)


def _in_scope(
    account: str,
    owner: str | None,
    site: str | None,
    owners: Sequence[str] | None,
    sites: Sequence[str] | None,
    scope: StockScope | None = None,
) -> bool:
    """The same filter in Python, as a second line of defence for scoping."""
    if not is_holding(account):
        return owner is None and site is None and owners is None and sites is None and scope is None
    o, s = split_holding(account)
    return (
        (scope is None or o in scope.owners or s in scope.sites)
        and (owner is None or o == owner)
        and (site is None or s == site)
        and (owners is None or o in owners)
        and (sites is None or s in sites)
    )


def balances(
    conn: Connection,
    *,
    owner: str | None = None,
    site: str | None = None,
    material: str | None = None,
    lot: str | None = None,
    as_of_seq: int | None = None,
    include_virtual: bool = False,
    owners: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    scope: StockScope | None = None,
) -> list[BalanceRow]:
    """Non-zero balances, by account and lot: now, or just after entry ``as_of_seq``.

    ``owner``/``site`` filter physical holdings; ``owners``/``sites`` are the caller's
    scope (``None`` = unrestricted), as is ``scope`` (a user's :func:`ledger.policy.stock_scope`,
    in the query itself so nothing out of scope is read). Virtual accounts are included
    only with ``include_virtual`` and no owner or site filter or scope. A seq past the
    end of the log is refused (:func:`resolve_as_of`)."""
    filters = {
        "owner": owner,
        "site": site,
        "owners": owners,
        "sites": sites,
        "include_virtual": include_virtual,
        "scope": scope,
        "material": material,
        "lot": lot,
    }
    if as_of_seq is not None and as_of_seq >= 0:
        _check_seq(as_of_seq, _log_size(conn))
    if as_of_seq is not None and as_of_seq < 0:
        return []
    key = _filter_key(filters)

    def where(cols: Any) -> ColumnElement[bool]:
        return _row_filter(cols, **filters)  # type: ignore[arg-type]

    found: list[tuple[str, str, str, int]]
    if as_of_seq is None:
        stmt = _CURRENT.get(key)
        if stmt is None:
            b = balances_t
            stmt = select(b.c.account, b.c.lot, b.c.material, b.c.quantity).where(
                where(b.c), b.c.quantity != 0
            )
            if len(_CURRENT) < 256:
                _CURRENT[key] = stmt
        found = plain_rows(conn, stmt, {})
    else:
        # One snapshot and the postings after it (issue #12; ledger.store.snapshots).
        found = snapshots.balances_as_of(conn, as_of_seq, where, filter_key=key)
    found.sort()
    # Unfiltered, the second line of defence has nothing to refuse (issue #12: this loop
    # is most of an as-of read's time).
    unfiltered = all(x is None for x in (owner, site, owners, sites, scope))
    rows: list[BalanceRow] = []
    add = rows.append
    for account, lot_, mat, qty in found:
        if not unfiltered and not _in_scope(account, owner, site, owners, sites, scope):
            continue
        if account.startswith(HOLDING_PREFIX):
            _, o, s = account.split("/", 2)
            add(BalanceRow(account, o, s, mat, lot_, qty))
        else:
            add(BalanceRow(account, None, None, mat, lot_, qty))
    return rows


# Built once per filter (building one cost about as much as running it, issue #12).
_CURRENT: dict[tuple[Any, ...], Any] = {}


def _row_filter(
    cols: Any, *, material: str | None, lot: str | None, **accounts: Any
) -> ColumnElement[bool]:
    """The rows of a balances read, on a table's ``account``/``lot``/``material``."""
    where = _account_filters(**accounts, column=cols.account)
    if material is not None:
        where = and_(where, cols.material == material)
    if lot is not None:
        where = and_(where, cols.lot == lot)
    return where


def _filter_key(filters: dict[str, Any]) -> tuple[Any, ...]:
    """What an account filter depends on, hashable (lists become sorted tuples)."""
    return tuple(
        (k, tuple(sorted(v)) if isinstance(v, list | tuple) else v)
        for k, v in sorted(filters.items())
    )


def _held_by_owner_material(
    conn: Connection, owners: Sequence[str] | None, as_of_seq: int | None
) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in balances(conn, owners=owners, as_of_seq=as_of_seq):
        assert row.owner is not None
        totals[(row.owner, row.material)] += row.quantity
    return totals


# -- lot trace ------------------------------------------------------------------------


_TRACE = (
    select(
        postings.c.seq,
        postings.c.n,
        postings.c.recorded_at,
        postings.c.kind,
        postings.c.account,
        postings.c.delta,
        postings.c.balance_after,
    )
    .where(postings.c.lot == bindparam("lot"))
    .order_by(postings.c.seq, postings.c.n)
)


def trace_lot(conn: Connection, lot: str, *, owners: Sequence[str] | None = None) -> LotTrace:
    """Where every gram of ``lot`` went: every leg on every account, in log order.

    With ``owners`` (the caller's scope), a lot that ever touched a holding of another
    owner is answered like a lot that does not exist: the trace shows every account, so
    it is only for callers entitled to all of them. :class:`~ledger.errors.NotFound` if
    no such lot is registered (or it is out of scope)."""
    material = conn.execute(select(lots.c.material).where(lots.c.code == lot)).scalar_one_or_none()
    if material is None:
        raise NotFound(f"no lot '{lot}' is registered")
    # Each leg carries its entry's kind and time (migration 0014): one range of the
    # (lot, seq) index, no join to ``entries`` per leg (issue #12).
    legs = tuple(
        TraceLeg(seq, n, at, kind, account, delta, after)
        for seq, n, at, kind, account, delta, after in plain_rows(conn, _TRACE, {"lot": lot})
    )
    stored = {
        r.account: int(r.quantity)
        for r in conn.execute(
            select(balances_t.c.account, balances_t.c.quantity).where(balances_t.c.lot == lot)
        )
    }
    running: dict[str, int] = defaultdict(int)
    per_seq: dict[int, int] = defaultdict(int)
    consistent = True
    for leg in legs:
        acc = running[leg.account] = running[leg.account] + leg.delta
        per_seq[leg.seq] += leg.delta
        if acc != leg.balance_after:
            consistent = False
    consistent = consistent and dict(running) == stored and not any(per_seq.values())
    distribution = tuple(AccountQuantity(a, q_) for a, q_ in sorted(stored.items()) if q_ != 0)
    # Every account a leg touched is a key of ``running``: split each once, not per leg.
    touched = sorted({split_holding(a)[0] for a in running if is_holding(a)})
    if owners is not None and not set(touched) <= set(owners):
        raise NotFound(f"no lot '{lot}' is registered")
    return LotTrace(
        lot=lot,
        material=str(material),
        legs=legs,
        distribution=distribution,
        held=sum(d.quantity for d in distribution if is_holding(d.account)),
        owners=tuple(touched),
        balanced=sum(stored.values()) == 0,
        consistent=consistent,
    )


# -- cover against targets ------------------------------------------------------------


def _round_ratio(num: int, den: int, places: int) -> Decimal:
    """``num / den`` rounded half up to ``places`` decimals, exactly (no float, no
    intermediate rounding)."""
    value = Fraction(num * 10**places, den)
    q, r = divmod(value.numerator, value.denominator)
    if 2 * r >= value.denominator:
        q += 1
    return Decimal(q).scaleb(-places)


def _fraction_round(value: Fraction, places: int) -> Decimal:
    return _round_ratio(value.numerator, value.denominator, places)


def _tonnes(grams: int) -> Decimal:
    return Decimal(grams).scaleb(-6)


def _valid_targets(conn: Connection, owners: Sequence[str] | None, at: datetime) -> list[Any]:
    q = select(targets)
    if owners is not None:
        q = q.where(targets.c.owner.in_(list(owners)) if owners else false())
    return [
        r
        for r in conn.execute(q.order_by(targets.c.owner, targets.c.material))
        if parse_time(r.valid_from) <= at < parse_time(r.valid_to)
    ]


def cover(conn: Connection, *, owners: Sequence[str] | None, at: str) -> list[CoverRow]:
    """Days of cover per owner and material with a target valid at ``at``, from the
    physical holdings as of ``at`` (the present if ``at`` is now or later)."""
    when = parse_time(at, field="at")
    rows = _valid_targets(conn, owners, when)
    if not rows:
        return []
    seq = seq_at_time(conn, format_time(when))
    held = _held_by_owner_material(conn, owners, seq)
    out: list[CoverRow] = []
    for t in rows:
        h = held.get((t.owner, t.material), 0)
        annual = int(t.annual_quantity)
        days = int(t.days_of_cover)
        required = -(-days * annual // DAYS_PER_YEAR)  # ceiling
        out.append(
            CoverRow(
                owner=t.owner,
                material=t.material,
                held=h,
                annual_quantity=annual,
                basis=t.basis,
                target_days=days,
                days_held=_round_ratio(h * DAYS_PER_YEAR, annual, 1),
                required=required,
                shortfall=max(0, required - h),
            )
        )
    return out


# -- CRMA Art. 22 aggregate -------------------------------------------------------------


def _year_end(year: int) -> str:
    return f"{year:04d}-12-31T23:59:59.999999Z"


def crma_report(
    conn: Connection, *, owners: Sequence[str] | None, year: int, at: str | None = None
) -> CrmaReport:
    """Per material: tonnes held now, percent of annual consumption, chemical form,
    weighted purity and the tonnes held at the end of each of the years ``year-4`` to
    ``year``. Physical holdings of the owners in scope only; no site appears.
    ``at`` (default: now) is the report time, for the validity of targets."""
    check_year(year)
    generated_at = at or timefmt.now()
    when = parse_time(generated_at, field="at")
    # Every figure as of one seq, even while appenders commit (READ COMMITTED).
    head = _log_size(conn) - 1
    current = balances(conn, owners=owners, as_of_seq=head)

    held: dict[str, int] = defaultdict(int)
    held_by: dict[tuple[str, str], int] = defaultdict(int)
    by_lot: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in current:
        assert r.owner is not None
        held[r.material] += r.quantity
        held_by[(r.owner, r.material)] += r.quantity
        by_lot[r.material][r.lot] += r.quantity

    consumption: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for t in _valid_targets(conn, owners, when):
        if t.basis == "consumption":
            consumption[t.material].append((t.owner, int(t.annual_quantity)))

    trend: dict[int, dict[str, int]] = {}
    by_seq: dict[int, dict[str, int]] = {}  # years with no entry share a seq
    for y in range(year - TREND_YEARS + 1, year + 1):
        seq = min(seq_at_time(conn, _year_end(y)), head)
        if seq not in by_seq:
            totals: dict[str, int] = defaultdict(int)
            for r in balances(conn, owners=owners, as_of_seq=seq):
                totals[r.material] += r.quantity
            by_seq[seq] = totals
        trend[y] = by_seq[seq]

    codes = set(held) | set(consumption) | {m for t in trend.values() for m in t}
    mats = {
        r.code: r
        for r in conn.execute(select(materials).where(materials.c.code.in_(sorted(codes))))
    }
    lot_rows = {
        r.code: r
        for r in conn.execute(
            select(lots.c.code, lots.c.purity, lots.c.basis).where(
                lots.c.code.in_(sorted({lot for m in by_lot.values() for lot in m}))
            )
        )
    }

    out: list[CrmaMaterial] = []
    for code in sorted(codes):
        m = mats[code]
        purity_sum: dict[str, Fraction] = defaultdict(Fraction)
        purity_qty: dict[str, int] = defaultdict(int)
        for lot_code, qty in by_lot[code].items():
            lr = lot_rows[lot_code]
            purity_sum[lr.basis] += Fraction(Decimal(lr.purity)) * qty
            purity_qty[lr.basis] += qty
        purity = tuple(
            PurityRow(
                basis=basis,
                purity=_fraction_round(purity_sum[basis] / purity_qty[basis], 4),
                tonnes=_tonnes(purity_qty[basis]),
            )
            for basis in sorted(purity_sum)
        )
        cons = consumption.get(code, [])
        annual = sum(q for _, q in cons)
        percent = None
        if annual:
            held_cons = sum(held_by.get((o, code), 0) for o, _ in cons)
            percent = _round_ratio(held_cons * 100, annual, 2)
        out.append(
            CrmaMaterial(
                material=code,
                name=m.name,
                form=m.form,
                grade_basis=m.grade_basis,
                tonnes_held=_tonnes(held.get(code, 0)),
                annual_consumption_tonnes=_tonnes(annual) if cons else None,
                percent_of_consumption=percent,
                purity=purity,
                trend=tuple(TrendPoint(y, _tonnes(trend[y].get(code, 0))) for y in sorted(trend)),
            )
        )
    return CrmaReport(
        year=year,
        generated_at=generated_at,
        as_of_seq=head,
        owners=tuple(owners) if owners is not None else None,
        materials=tuple(out),
    )


# -- loans and transfers ------------------------------------------------------------------


def overdue_loans(
    conn: Connection,
    *,
    now: str,
    owners: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    scope: StockScope | None = None,
) -> list[LoanRow]:
    """Open loans whose due date is before ``now``, most overdue first; ``scope`` (a
    user's :func:`ledger.policy.stock_scope`) is part of the query."""
    t = parse_time(now, field="now")
    q = select(loans)
    if owners is not None:
        q = q.where(loans.c.owner.in_(list(owners)) if owners else false())
    if sites is not None:
        q = q.where(loans.c.site.in_(list(sites)) if sites else false())
    if scope is not None:
        q = q.where(
            or_(loans.c.owner.in_(sorted(scope.owners)), loans.c.site.in_(sorted(scope.sites)))
        )
    out: list[LoanRow] = []
    for r in conn.execute(q):
        due = parse_time(r.due_at)
        if due < t:
            out.append(
                LoanRow(
                    id=r.id,
                    owner=r.owner,
                    site=r.site,
                    lot=r.lot,
                    material=r.material,
                    borrower=r.borrower,
                    quantity=int(r.quantity),
                    outstanding=int(r.outstanding),
                    due_at=r.due_at,
                    premium_pct=r.premium_pct,
                    lent_seq=int(r.lent_seq),
                    days_overdue=(t - due).days,
                )
            )
    out.sort(key=lambda r: (parse_time(r.due_at), r.lent_seq))
    return out


def open_transfers(
    conn: Connection,
    *,
    owners: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
) -> list[TransferRow]:
    """Transfers dispatched and not yet arrived, oldest first. ``sites`` matches either
    end of the transfer."""
    conds: list[ColumnElement[bool]] = []
    if owners is not None:
        conds.append(transfers.c.owner.in_(list(owners)) if owners else false())
    if sites is not None:
        conds.append(
            or_(transfers.c.from_site.in_(list(sites)), transfers.c.to_site.in_(list(sites)))
            if sites
            else false()
        )
    return transfers_where(conn, *conds)


def transfers_where(conn: Connection, *conds: ColumnElement[bool]) -> list[TransferRow]:
    """Transfers dispatched and not yet arrived that meet every one of ``conds``, oldest
    first: the one query behind both the report and the operator's inbox (issue #12)."""
    q = (
        select(transfers, entries.c.recorded_at)
        .join(entries, entries.c.seq == transfers.c.dispatched_seq)
        .where(*conds)
    )
    return [
        TransferRow(
            id=r.id,
            owner=r.owner,
            lot=r.lot,
            material=r.material,
            from_site=r.from_site,
            to_site=r.to_site,
            quantity=int(r.quantity),
            dispatched_seq=int(r.dispatched_seq),
            dispatched_at=r.recorded_at,
        )
        for r in conn.execute(q.order_by(transfers.c.dispatched_seq))
    ]


__all__ = [
    "AccountQuantity",
    "BalanceRow",
    "CoverRow",
    "CrmaMaterial",
    "CrmaReport",
    "LoanRow",
    "LotTrace",
    "PurityRow",
    "TraceLeg",
    "TransferRow",
    "TrendPoint",
    "balances",
    "cover",
    "crma_report",
    "open_transfers",
    "overdue_loans",
    "seq_at_time",
    "trace_lot",
    "transfers_where",
]
