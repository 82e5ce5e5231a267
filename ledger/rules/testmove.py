"""The generic test movement: one account, a signed delta, never below zero."""

from __future__ import annotations

from ledger.errors import Rejected
from ledger.kinds.keys import TestMovement
from ledger.reducer import Context, Signers, require_role, rule
from ledger.rules.common import within_balance_limit
from ledger.state import Change, Put, StateView


@rule(TestMovement)
def test_movement(
    state: StateView, body: TestMovement, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, "operator", ctx, what="record movements")
    if body.delta == 0:
        raise Rejected(
            "zero-quantity",
            "a movement moves a non-zero quantity",
            field="entry.delta",
            seq=ctx.seq,
        )
    balance = (state.get("test_balances", body.account) or 0) + body.delta
    if balance < 0:
        raise Rejected(
            "negative-holding",
            f"account {body.account} would go negative ({balance})",
            field="entry.delta",
            seq=ctx.seq,
        )
    if not within_balance_limit(balance):
        raise Rejected(
            "holding-limit",
            f"account {body.account} would exceed the largest balance the ledger keeps",
            field="entry.delta",
            seq=ctx.seq,
        )
    return [Put("test_balances", body.account, balance or None)]
