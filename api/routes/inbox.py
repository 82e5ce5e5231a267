"""What waits for the caller (issue #12): transfers on their way to an operator's sites
(``GET /transfers?inbound=true``) and the orders they may execute there
(``GET /orders?executable=true``). Scope and the executable rule are ``ledger``'s
(``ledger.store.inbox``); quantities come as the exact integer in grams beside the
display text."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import principal, roles, services
from api.routes.reads import STOCK_READERS
from api.services import Services
from ledger.policy import Principal
from ledger.store import inbox
from ledger.timefmt import now

router = APIRouter(tags=["inbox"])


@router.get("/transfers", **roles(*STOCK_READERS))
def transfers(
    inbound: Annotated[
        bool, Query(description="only transfers on their way to your sites (operators)")
    ] = False,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Transfers dispatched and not yet arrived: an operator's at either end of their
    sites, an official's or minister's of their owners, an auditor's all."""
    with svc.reader.connect() as conn:
        rows = inbox.transfers_for(conn, p, inbound=inbound)
    return {"transfers": [inbox.transfer_view(r) for r in rows]}


@router.get("/orders", **roles(*STOCK_READERS))
def orders(
    executable: Annotated[
        bool, Query(description="only orders that may be executed now (at your sites, for operators)")
    ] = False,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Release orders: an operator's those naming one of their sites, an official's or
    minister's of their owners, an auditor's all; ``executable_at`` lists the sites where
    the caller may execute one now."""
    with svc.reader.connect() as conn:
        rows = inbox.orders_for(conn, p, at=now(), executable=executable)
    return {"orders": [inbox.order_view(o) for o in rows]}
