"""A fast clock never pins the log (issue #8, item 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from ledger.entries import sign_body
from ledger.errors import ClockBehind
from ledger.service import Ledger, new_body
from ledger.store.log import append, head
from ledger.timefmt import format_time
from tests.conftest import with_operator


def _at(**delta: float) -> str:
    return format_time(datetime.now(UTC) + timedelta(**delta))


def _move(led: Ledger) -> dict[str, Any]:
    return sign_body(new_body("test.movement", "olga", account="ACC-1", delta=1), [led.signer_for("olga")])


def _append(led: Ledger, clock: str) -> Any:
    return append(led.engine, [_move(led)], log_signer=led.log_signer(), clock=lambda: clock)


def test_a_clock_far_behind_the_log_is_refused_with_an_alert(ledger: Ledger) -> None:
    led = with_operator(ledger)
    fast = _at(hours=1)  # one append while the server clock ran an hour fast
    _append(led, fast)
    before = head(led.engine).size
    with structlog.testing.capture_logs() as logs, pytest.raises(ClockBehind) as exc:
        _append(led, _at())  # the clock is right again: an hour behind the log
    assert "clock" in exc.value.public_message and exc.value.seq is None
    assert head(led.engine).size == before  # nothing appended, nothing pinned
    assert any(e["event"] == "alert_clock_behind_log" and e["log_level"] == "error" for e in logs)


def test_within_the_skew_recorded_at_stays_monotonic(ledger: Ledger) -> None:
    led = with_operator(ledger)
    ahead = _at(minutes=2)
    _append(led, ahead)
    _append(led, _at())  # two minutes behind: within the allowed skew
    assert head(led.engine).last_recorded_at == ahead
