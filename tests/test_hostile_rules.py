"""Rules against hostile or careless input (issue #8, items 3 and 10), on both engines:
both must decide the same input the same way, by a typed refusal, never a DB error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.canonical import MAX_SAFE_INT
from ledger.errors import InvalidEntry, Rejected, StorageError
from ledger.rules.common import MAX_BALANCE
from ledger.service import Ledger
from ledger.store.audit import verify_database
from ledger.store.db import write_transaction
from ledger.timefmt import format_time, now
from tests.conftest import make_ledger
from tests.test_stock_rules import (
    LOT,
    LOT2,
    _setup,
    arrive,
    dispatch,
    eid,
    receive,
    refused,
    reverse,
)


@pytest.fixture
def led(db_url: str, tmp_path: Path) -> Ledger:
    return _setup(make_ledger(db_url, tmp_path / "keys"))


def _ago(**delta: float) -> str:
    return format_time(datetime.now(UTC) - timedelta(**delta))


def test_the_balance_limit_is_the_json_exact_integer_limit() -> None:
    assert MAX_BALANCE == MAX_SAFE_INT == 2**53 - 1


def test_a_holding_never_passes_the_limit(led: Ledger) -> None:
    receive(led, LOT2, MAX_BALANCE)
    err = refused(led, "holding-limit", receive, led, LOT2, 1)
    assert "(9007199254.740991 t)" in str(err)
    assert err.seq is None  # a refusal on the write path names no seq
    # Enough receipts to pass 2^63 g (where PostgreSQL's BIGINT overflowed, 503) are each
    # refused by the rule; nothing reaches the database.
    for _ in range(3):
        refused(led, "holding-limit", receive, led, LOT2, MAX_BALANCE)
    # What is held can still be counted and reversed.
    r = eid(led, receive(led, LOT, 5))
    reverse(led, r)
    verify_database(led.engine, trusted_log_key=None)


def test_the_database_refuses_a_balance_beyond_the_limit_too(led: Ledger) -> None:
    with pytest.raises(Exception) as exc, write_transaction(led.engine) as conn:
        conn.execute(
            text("UPDATE balances SET quantity = :q WHERE lot = :lot"), {"q": MAX_BALANCE + 1, "lot": LOT}
        )
    assert not isinstance(exc.value, StorageError | AssertionError)


def test_test_movement_balance_is_bounded(led: Ledger) -> None:
    led.register_key(admin="admin", user="tom", roles=["operator"], sites=["SITE-A"], owners=[], clearance="NONE")
    led.act("tom", "test.movement", account="ACC-1", delta=MAX_SAFE_INT)
    with pytest.raises(Rejected) as exc:
        led.act("tom", "test.movement", account="ACC-1", delta=1)
    assert exc.value.rule == "holding-limit"


def test_an_arrival_dated_before_its_dispatch_is_refused(led: Ledger) -> None:
    t = eid(led, led.act("olga", "stock.dispatch", site="SITE-A", owner="JP", lot=LOT, quantity=10,
                         occurred_at=_ago(minutes=5), to_site="SITE-B", reference="T"))
    refused(led, "arrival-before-dispatch", led.act, "olga", "stock.arrival", site="SITE-B", transfer=t,
            quantity=10, occurred_at=_ago(minutes=10), shortfall_reason="")
    arrive(led, t, 10)
    verify_database(led.engine, trusted_log_key=None)


def test_a_reversal_dated_before_what_it_reverses_is_refused(led: Ledger) -> None:
    r = eid(led, receive(led, LOT, 7, occurred_at=_ago(minutes=5)))
    refused(led, "reversal-before-movement", led.act, "olga", "stock.reversal", site="SITE-A", reverses=r,
            occurred_at=_ago(minutes=6), reason="typo")
    led.act("olga", "stock.reversal", site="SITE-A", reverses=r, occurred_at=now(), reason="typo")
    t = dispatch(led, 5)
    refused(led, "reversal-before-movement", led.act, "olga", "stock.reversal", site="SITE-A", reverses=t,
            occurred_at=_ago(minutes=1), reason="typo")
    verify_database(led.engine, trusted_log_key=None)


@pytest.mark.parametrize("name", ["token-issuer", "log", "log-2", "sealing"])
def test_reserved_key_names_are_refused_by_the_ledger(led: Ledger, name: str) -> None:
    """Issue #8, item 10: registering "token-issuer" made the token issuer's keystore key
    a user's key. Refused before the keystore is touched, and by the reducer for a
    pre-signed registration too."""
    with pytest.raises(InvalidEntry) as exc:
        led.register_key(admin="admin", user=name, roles=["auditor"], sites=[], owners=[], clearance="NONE")
    assert exc.value.field == "user"
    if name in ("token-issuer", "log-2"):  # nothing generated under the service's names
        assert not led.keystore.exists(name)
    refused(led, "reserved-user", led.act, "admin", "key.registered", user=name, public_key="ab" * 32,
            roles=["auditor"], sites=[], owners=[], clearance="NONE", custody="self")
