"""``reserve transfers [--inbound]`` and ``reserve orders [--executable]`` (issue #12):
what waits for an operator at their sites, the same lists as ``GET /transfers`` and
``GET /orders``.

In client mode the service scopes the lists by the caller's token; in local mode (the
server's administrators) by the keys of the user named with ``--as`` / ``RESERVE_USER``,
and without one every transfer and order is listed (``--inbound`` needs a user).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cli.output import add_format, emit
from ledger.errors import ConfigError

if TYPE_CHECKING:
    from cli.backend import Backend

TRANSFER_HEADERS = ["TRANSFER", "SEQ", "DISPATCHED", "FROM", "TO", "OWNER", "LOT", "QUANTITY"]
ORDER_HEADERS = ["ORDER", "SEQ", "OWNER", "MATERIAL", "REGIME", "RECIPIENT", "REMAINING", "UNTIL", "EXECUTABLE AT"]


def _scope_params(b: Backend, a: argparse.Namespace, *, needs_user: bool) -> dict[str, Any]:
    """Local mode reads the database directly: say whose scope applies."""
    if b.mode != "local":
        return {}
    user = getattr(a, "as_user", None) or getattr(b, "user", None)
    if not user:
        if needs_user:
            raise ConfigError("say whose sites: --as USER or RESERVE_USER")
        return {}
    return {"as_user": user}


def transfers(b: Backend, a: argparse.Namespace) -> int:
    params = _scope_params(b, a, needs_user=a.inbound)
    doc = b.read("/transfers", inbound="true" if a.inbound else None, **params)
    rows = [
        [t["id"][:12], t["dispatched_seq"], t["dispatched_at"], t["from_site"], t["to_site"],
         t["owner"], t["lot"], t["quantity"]]
        for t in doc["transfers"]
    ]
    return emit(a.format, doc=doc, headers=TRANSFER_HEADERS, rows=rows)


def orders(b: Backend, a: argparse.Namespace) -> int:
    params = _scope_params(b, a, needs_user=False)
    doc = b.read("/orders", executable="true" if a.executable else None, **params)
    rows = [
        [o["id"][:12], o["seq"], o["owner"], o["material"], o["regime"], o["recipient"],
         o["remaining"], o["valid_until"], ",".join(o["executable_at"]) or "-"]
        for o in doc["orders"]
    ]
    return emit(a.format, doc=doc, headers=ORDER_HEADERS, rows=rows)


def register(sub: Any, *, wrap: Any) -> None:
    """Add ``reserve transfers`` and ``reserve orders`` to the top-level parser."""
    sp = add_format(sub.add_parser("transfers", help="transfers on their way (--inbound: to your sites)"))
    sp.add_argument("--inbound", action="store_true", help="only transfers on their way to your sites")
    sp.add_argument("--as", dest="as_user", metavar="USER", help="whose scope (or RESERVE_USER)")
    sp.set_defaults(fn=wrap(transfers))
    sp = add_format(sub.add_parser("orders", help="release orders (--executable: those you may execute now)"))
    sp.add_argument(
        "--executable", action="store_true", help="only orders you may execute now, at your sites"
    )
    sp.add_argument("--as", dest="as_user", metavar="USER", help="whose scope (or RESERVE_USER)")
    sp.set_defaults(fn=wrap(orders))
