"""The generic test movement: one account, a signed delta, never below zero."""

from __future__ import annotations

from ledger.entries import TestMovement
from ledger.errors import Rejected
from ledger.reducer import Context, Signers, require_role, rule
from ledger.state import Change, SetTestBalance, StateView


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
    balance = state.test_balance(body.account) + body.delta
    if balance < 0:
        raise Rejected(
            "negative-holding",
            f"account {body.account} would go negative ({balance})",
            field="entry.delta",
            seq=ctx.seq,
        )
    return [SetTestBalance(body.account, balance)]
