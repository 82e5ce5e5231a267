"""Login nonces are consumed atomically (issue #9 item 2): of many concurrent attempts
with the same nonce, on SQLite and PostgreSQL, exactly one succeeds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.errors import Unauthenticated
from ledger.store import nonces
from ledger.store.db import make_engine, migrate


@pytest.mark.parametrize("attempts", [8])
def test_a_nonce_is_consumed_once_under_concurrency(db_url: str, tmp_path: Path, attempts: int) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    at = datetime.now(UTC)
    nonce, expires = nonces.issue(engine, log_id="x.example/log", at=at, user="olga")
    assert len(nonce) == 43 and expires > at.isoformat()[:19]
    results: list[str] = []
    barrier = threading.Barrier(attempts)

    def attempt() -> None:
        barrier.wait()
        try:
            nonces.consume(engine, nonce=nonce, log_id="x.example/log", at=datetime.now(UTC), user="olga",
                           public_key="ab" * 32)
            results.append("ok")
        except Unauthenticated:
            results.append("refused")
        except Exception as exc:  # a lock timeout would be a failure of the design
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["ok"] + ["refused"] * (attempts - 1), results


def test_consume_checks_log_subject_and_expiry(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    at = datetime.now(UTC)
    n1, _ = nonces.issue(engine, log_id="a", at=at, user="olga")
    for kw in ({"log_id": "b", "user": "olga"}, {"log_id": "a", "user": "oscar"}):
        with pytest.raises(Unauthenticated):
            nonces.consume(engine, nonce=n1, at=at, public_key="ab" * 32, **kw)
    with pytest.raises(Unauthenticated):  # two minutes later
        nonces.consume(engine, nonce=n1, log_id="a", at=at + timedelta(minutes=2), user="olga", public_key="ab" * 32)
    nonces.consume(engine, nonce=n1, log_id="a", at=at, user="olga", public_key="ab" * 32)
    n2, _ = nonces.issue(engine, log_id="a", at=at, public_key="cd" * 32)
    with pytest.raises(Unauthenticated):
        nonces.consume(engine, nonce=n2, log_id="a", at=at, user="olga", public_key="ab" * 32)
    nonces.consume(engine, nonce=n2, log_id="a", at=at, user="olga", public_key="cd" * 32)
