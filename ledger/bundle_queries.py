"""An auditor's own answers from a bundle, offline (issue #10): balances now or as of a
point of the log, where a lot went, and the release orders.

They come from the verifier's replay, not from the server: :class:`BundleAnswers` is a
:class:`~ledger.verify.VerifyObserver` that folds the reducer's postings as
``verify_history`` accepts each entry, so an answer exists only for a history that
verified (the caller runs the whole verification first and answers only if it passed).
The answers mean what the server's ``ledger.store.reports`` answers mean (same rows, same
"as of" semantics: just after entry ``seq``; as of a time = as recorded by the log), and
the tests compare the two on the same history.

Memory: one balance per (account, lot) pair and the legs of the one lot traced.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ledger.audit_report.build import order_json, request_json
from ledger.audit_report.collect import kind_of
from ledger.errors import NotFound
from ledger.records import LotRec, OrderRec, RequestRec, is_holding, split_holding
from ledger.report_rows import AccountQuantity, BalanceRow, LotTrace, TraceLeg
from ledger.state import Change, Post, Put, State
from ledger.timefmt import format_time, parse_time


@dataclass
class BundleAnswers:
    """Folds postings as the verifier accepts entries. ``as_of_seq`` / ``as_of`` (RFC
    3339) freeze the balances just after that point; ``lot`` keeps that lot's legs."""

    as_of_seq: int | None = None
    as_of: str | None = None
    lot: str | None = None
    size: int = 0
    _balances: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    _now: dict[str, int] = field(default_factory=dict)  # the lot's, by account, at the end
    _legs: list[TraceLeg] = field(default_factory=list)
    _lot_material: str | None = None
    _state: State | None = None

    def __post_init__(self) -> None:
        if self.as_of is not None:
            self.as_of = format_time(parse_time(self.as_of, field="as_of"))

    # -- VerifyObserver ----------------------------------------------------------------
    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None:
        self._state = state
        self.size = seq + 1
        counts = (self.as_of_seq is None or seq <= self.as_of_seq) and (
            self.as_of is None or leaf.recorded_at <= self.as_of
        )
        kind = ""
        for ch in changes:
            if isinstance(ch, Post):
                p = ch.posting
                if counts:
                    self._balances[(p.account, p.lot)] = (p.material, p.balance_after)
                if p.lot == self.lot:
                    kind = kind or kind_of(leaf.entry)
                    self._legs.append(
                        TraceLeg(p.seq, p.n, leaf.recorded_at, kind, p.account, p.delta, p.balance_after)
                    )
                    self._now[p.account] = p.balance_after
            elif (
                isinstance(ch, Put)
                and ch.table == "lots"
                and ch.key == self.lot
                and isinstance(ch.value, LotRec)
            ):
                self._lot_material = ch.value.material

    def checkpoint(self, size: int, note: str) -> None:
        return None

    # -- answers --------------------------------------------------------------------------
    def balances(
        self,
        *,
        owner: str | None = None,
        site: str | None = None,
        material: str | None = None,
        lot: str | None = None,
        include_virtual: bool = False,
    ) -> list[BalanceRow]:
        """Non-zero balances by account and lot, as ``reports.balances`` orders them.
        Virtual accounts only with ``include_virtual`` and no owner or site filter."""
        holdings_only = not include_virtual or owner is not None or site is not None
        rows = []
        for (account, lot_), (mat, qty) in sorted(self._balances.items()):
            if qty == 0 or (holdings_only and not is_holding(account)):
                continue
            if (material is not None and mat != material) or (lot is not None and lot_ != lot):
                continue
            o, s = split_holding(account) if is_holding(account) else (None, None)
            if (owner is not None and o != owner) or (site is not None and s != site):
                continue
            rows.append(BalanceRow(account, o, s, mat, lot_, qty))
        return rows

    def trace(self) -> LotTrace:
        if self.lot is None or self._lot_material is None:
            raise NotFound(f"no lot '{self.lot}' is registered")
        running: dict[str, int] = defaultdict(int)
        per_seq: dict[int, int] = defaultdict(int)
        consistent = True
        for leg in self._legs:
            running[leg.account] += leg.delta
            per_seq[leg.seq] += leg.delta
            consistent &= running[leg.account] == leg.balance_after
        consistent = consistent and all(running[a] == q for a, q in self._now.items())
        consistent = consistent and not any(per_seq.values())
        distribution = tuple(
            AccountQuantity(a, q) for a, q in sorted(self._now.items()) if q != 0
        )
        return LotTrace(
            lot=self.lot,
            material=self._lot_material,
            legs=tuple(self._legs),
            distribution=distribution,
            held=sum(d.quantity for d in distribution if is_holding(d.account)),
            owners=tuple(sorted({split_holding(g.account)[0] for g in self._legs if is_holding(g.account)})),
            balanced=sum(self._now.values()) == 0,
            consistent=consistent,
        )

    def releases(self) -> dict[str, list[dict[str, Any]]]:
        """Every ministerial order (approvals, cap, executions, revocation) and every
        request still open, in log order (site codes only)."""
        if self._state is None:
            return {"orders": [], "open_requests": []}
        orders = sorted(self._state.table("release_orders").values(), key=lambda o: o.seq)
        reqs = sorted(self._state.table("release_requests").values(), key=lambda r: r.seq)
        return {
            "orders": [order_json(o) for o in orders if isinstance(o, OrderRec)],
            "open_requests": [request_json(r) for r in reqs if isinstance(r, RequestRec)],
        }
