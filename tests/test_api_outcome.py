"""A write whose outcome is not known in time is answered 202, never 5xx, and its
outcome is fetched by its Idempotency-Key (issue #8, item 2)."""

from __future__ import annotations

import threading
import time

import pytest
from anyio import to_thread
from fastapi.testclient import TestClient

from ledger.store.db import write_transaction
from ledger.store.group_commit import GroupCommitter
from ledger.store.log import _lock
from tests import api_fixtures
from tests.api_fixtures import World
from tests.test_api_writes import receipt

api_template = api_fixtures.api_template
world = api_fixtures.world


def _hold_the_log(w: World, release: threading.Event) -> threading.Thread:
    """Another writer holding the append lock until ``release`` (at most 20 s); returns
    once it holds it."""
    held = threading.Event()

    def hold() -> None:
        with write_transaction(w.svc.ledger.engine) as conn:
            _lock(conn)
            held.set()
            release.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    return holder


def test_a_slow_commit_answers_202_then_the_outcome(world: World) -> None:
    w = world
    w.svc.committer.close()
    w.svc.committer = GroupCommitter(w.svc.ledger.engine, w.svc.ledger.log_signer, wait=0.2)
    release = threading.Event()
    holder = _hold_the_log(w, release)
    headers = {**w.auth("olga"), "Idempotency-Key": "slow-1"}
    try:
        r = w.client.post("/stock/receive", json=receipt(), headers=headers)
        assert r.status_code == 202, r.text
        assert r.headers["Location"] == "/entries/outcome/slow-1"
        assert r.json()["outcome"] == "pending"
        pending = w.client.get("/entries/outcome/slow-1", headers=w.auth("olga"))
        assert pending.status_code == 202
    finally:
        release.set()
        holder.join()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = w.client.get("/entries/outcome/slow-1", headers=w.auth("olga"))
        if got.status_code != 202:
            break
        time.sleep(0.05)
    assert got.status_code == 200, got.text
    assert got.json()["outcome"] == "appended" and isinstance(got.json()["seq"], int)
    # Another user's key space is separate; an unknown key was never appended.
    assert w.client.get("/entries/outcome/slow-1", headers=w.auth("omar")).status_code == 404
    assert w.client.get("/entries/outcome/never-sent", headers=w.auth("olga")).status_code == 404


def test_writes_waiting_for_their_commit_hold_no_thread(world: World) -> None:
    """Issue #11: a custodial write waits for its group commit on the event loop. With the
    app's thread pool cut to two threads and the log held by another writer, five writes
    wait, and a read that needs a thread (GET /balances) is still answered meanwhile.
    When each write held a thread for its commit, the read queued behind them."""
    w = world
    with TestClient(w.app) as client:  # one event loop for every request below

        async def two_threads() -> None:
            to_thread.current_default_thread_limiter().total_tokens = 2

        client.portal.call(two_threads)
        first = client.post("/stock/receive", json=receipt(), headers=w.auth("olga"))
        assert first.status_code == 201, first.text  # olga's key is now unwrapped
        release = threading.Event()
        holder = _hold_the_log(w, release)
        written: list[int] = []
        writers = [
            threading.Thread(
                target=lambda: written.append(
                    client.post("/stock/receive", json=receipt(), headers=w.auth("olga")).status_code
                )
            )
            for _ in range(5)
        ]
        read: list[int] = []
        reader = threading.Thread(
            target=lambda: read.append(client.get("/balances", headers=w.auth("olga")).status_code)
        )
        try:
            for t in writers:
                t.start()
            time.sleep(1.0)  # the five are waiting for the log
            reader.start()
            reader.join(10)
            answered_while_held = list(read)
            assert written == [], "a write was answered while the log was held"
        finally:
            release.set()
            holder.join()
            for t in writers:
                t.join(30)
            reader.join(30)
    assert answered_while_held == [200]
    assert written == [201] * 5


def test_a_refused_write_outcome_is_its_refusal(world: World) -> None:
    w = world
    headers = {**w.auth("olga"), "Idempotency-Key": "refused-1"}
    r = w.client.post("/stock/receive", json=receipt(quantity="0 t"), headers=headers)
    assert r.status_code == 422
    assert w.client.get("/entries/outcome/refused-1", headers=w.auth("olga")).status_code == 404


pg_world = api_fixtures.pg_world


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_both_engines_refuse_nul_and_bidi_text_the_same_way(engine: str, request: pytest.FixtureRequest) -> None:
    """Issue #8, items 2 and 4: PostgreSQL answered 503 for a NUL in free text (and spoiled
    its neighbours' writes), SQLite 201. Both now refuse it at the schema: 422 naming the
    field, nothing written."""
    w: World = request.getfixturevalue("world" if engine == "sqlite" else "pg_world")
    before = w.entry_count()
    for bad in ("Lynas\x00", "Evil\u202etxt.exe", "Ly\u200bnas"):
        r = w.client.post("/stock/receive", json=receipt(supplier=bad), headers=w.auth("olga"))
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "entry.supplier"
    ok = w.client.post("/stock/receive", json=receipt(supplier="Lynas Rare Earths"), headers=w.auth("olga"))
    assert ok.status_code == 201, ok.text
    assert w.entry_count() == before + 1
