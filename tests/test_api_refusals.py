"""Refused requests cost no write each (issue #8 item 9): refusal events are batched into
one transaction and one checkpoint, limited per client address with a summary event, and
a token naming an unknown JWKS key id does not make the service fetch the JWKS again."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from api.auth import TOKEN_TYPE, TokenVerifier
from api.refusals import RefusalLimits, RefusalRecorder
from ledger.errors import StorageError, Unauthenticated
from ledger.store.schema import access_checkpoints, access_log
from tests import api_fixtures
from tests.api_fixtures import World, api_settings, copy_world, foreign_token

world = api_fixtures.world
api_template = api_fixtures.api_template


def _counts(w: World) -> tuple[int, int]:
    """Access-log rows and access checkpoints, read without flushing the buffer."""
    with w.svc.reader.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(access_log)).scalar_one()
        cps = conn.execute(select(func.count()).select_from(access_checkpoints)).scalar_one()
    return int(rows), int(cps)


def _manual(w: World) -> None:
    """The world's recorder without its timer thread, so the test decides when it writes."""
    old = w.svc.refusals
    old.close()
    w.svc.refusals = RefusalRecorder(old._write, RefusalLimits(per_client=30), background=False)


def test_bad_tokens_write_nothing_per_request_and_one_batch_later(world: World) -> None:
    w = world
    _manual(w)
    rows, cps = _counts(w)
    token = foreign_token(w.good_claims("admin"), "attacker")
    for _ in range(20):
        assert w.client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert w.client.get(f"/sites/{api_fixtures.GHOST}", headers=w.auth("omar")).status_code == 404
    assert _counts(w) == (rows, cps), "a refusal must not write while the request is served"
    assert w.svc.refusals.flush() == 30  # the client's budget; the other 10 are counted
    assert _counts(w) == (rows + 30, cps + 1), "one transaction, one checkpoint per batch"
    w.svc.refusals.flush(end_windows=True)
    events = [e["event"] for e in w.access_events()[rows:]]
    summary = events[-1]
    assert summary["action"] == "refused-summary" and summary["suppressed"] == 10
    assert summary["client_hmac"] == events[0]["client_hmac"]
    assert {e["outcome"] for e in events[:-1]} == {"401", "404"}
    assert all("refused_at" in e for e in events[:-1])
    verified = w.client.get("/log/access/verify", headers=w.auth("audrey"))
    assert verified.status_code == 200 and verified.json()["size"] == rows + 31


def test_auditors_see_refusals_still_buffered(world: World) -> None:
    w = world
    assert w.client.get("/me").status_code == 401
    page = w.client.get("/log/access?limit=1000", headers=w.auth("audrey")).json()["events"]
    assert page[-1]["event"]["outcome"] == "401"


def test_scope_rule_refusals_are_recorded(world: World) -> None:
    """A dispatch to a site that does not hold for the owner (or does not exist) is a
    scope refusal: it leaves an access-log event (issue #8 item 7)."""
    w = world
    before = len(w.access_events())
    body = {
        "site": api_fixtures.SITE_A,
        "owner": api_fixtures.JP,
        "lot": api_fixtures.LOT_NDPR,
        "quantity": "1 kg",
        "occurred_at": "2026-01-01T00:00:00Z",
        "to_site": api_fixtures.GHOST,
        "reference": "TR-X",
    }
    resp = w.client.post("/stock/dispatch", json=body, headers=w.auth("olga"))
    assert resp.status_code == 409 and resp.json()["type"].endswith("rule/site-owner")
    events = [e["event"] for e in w.access_events()[before:]]
    assert [(e["action"], e["reason"]) for e in events] == [("refused", "rejected")]
    assert api_fixtures.GHOST not in json.dumps(events)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_recorder_budget_windows_and_summaries() -> None:
    batches: list[list[dict[str, Any]]] = []
    clock = _Clock()
    rec = RefusalRecorder(
        lambda evs: batches.append(list(evs)),
        RefusalLimits(batch_size=1000, per_client=3, window_seconds=10),
        clock=clock,
        background=False,
    )
    for i in range(5):
        rec.add("10.0.0.1", "h1", {"n": i})
    rec.add("10.0.0.2", "h2", {"n": 99})
    assert rec.flush() == 4 and rec.suppressed_total == 2
    clock.t = 11  # the window ends: its summary is written with the next batch
    rec.add("10.0.0.1", "h1", {"n": 5})
    rec.flush()
    assert [e.get("n", e.get("suppressed")) for e in batches[1]] == [2, 5]
    assert batches[1][0]["client_hmac"] == "h1"
    rec.close()


def test_recorder_bounds_its_memory_and_survives_write_failures() -> None:
    written: list[dict[str, Any]] = []
    fail = [True]

    def write(evs: Sequence[dict[str, Any]]) -> None:
        if fail[0]:
            raise StorageError("down")
        written.extend(evs)

    rec = RefusalRecorder(
        write, RefusalLimits(per_client=1, max_clients=100), clock=_Clock(), background=False
    )
    for i in range(1000):
        rec.add(f"c{i}", f"h{i}", {"n": i})
        rec.add(f"c{i}", f"h{i}", {"n": i})
    assert len(rec._budgets) <= 100
    assert rec.flush() == 0  # the write failed: logged, the recorder goes on
    fail[0] = False
    rec.add("x", "hx", {"n": -1})
    rec.close()
    assert written[-1:] == [{"n": -1}] or any(e.get("n") == -1 for e in written)


def test_recorder_thread_writes_full_batches_soon() -> None:
    batches: list[int] = []
    rec = RefusalRecorder(
        lambda evs: batches.append(len(evs)),
        RefusalLimits(batch_size=10, flush_seconds=30, per_client=1000),
    )
    for i in range(10):
        rec.add("c", "h", {"n": i})
    deadline = time.monotonic() + 5
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.close()
    assert batches and batches[0] == 10


# -- JWKS: unknown key ids ------------------------------------------------------------


class CountingJWKS(jwt.PyJWKClient):
    """A PyJWKClient whose "network" is a dict, counting fetches; no cooldown, so every
    unknown kid would fetch without the verifier's own memory of unknown kids."""

    def __init__(self, jwks: dict[str, Any]):
        super().__init__("https://idp.invalid/jwks.json", cooldown_duration=0)
        self.jwks = jwks
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        return self.jwks


def test_unknown_kids_do_not_refetch_the_jwks(world: World, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jwt.algorithms import OKPAlgorithm

    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="idp-ed", alg="EdDSA", use="sig")
    client = CountingJWKS({"keys": [jwk]})
    settings = api_settings(tmp_path, "sqlite://", jwks_url="https://idp.invalid/jwks.json")
    verifier = TokenVerifier(settings.token, jwks_client=client)
    claims = world.good_claims("olga")
    good = jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": TOKEN_TYPE, "kid": "idp-ed"})
    assert verifier.verify(good).sub == "olga"
    fetches = client.fetches
    bad = foreign_token(claims, "made-up-kid")
    for _ in range(50):
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)
    assert client.fetches <= fetches + 1, client.fetches
    # Another token with the same unknown kid costs no fetch either.
    with pytest.raises(Unauthenticated):
        verifier.verify(foreign_token(world.good_claims("fiona"), "made-up-kid"))
    assert client.fetches <= fetches + 1


def test_serve_flushes_refusals_at_shutdown(api_template: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    w = copy_world(api_template, tmp_path / "home")
    _manual(w)
    try:
        rows, _ = _counts(w)
        with TestClient(w.app) as client:  # runs the app's lifespan, as uvicorn does
            assert client.get("/me").status_code == 401
            assert _counts(w)[0] == rows
        assert _counts(w)[0] == rows + 1
    finally:
        w.close()
