"""Hostile input at the HTTP edge (issue #8 items 3 and 10): control characters in path
and query parameters, integers past what a column or a JSON client holds, undecodable
bodies. Each answers a 422 problem naming the parameter (or the same 404 as a thing that
does not exist), identically on SQLite and PostgreSQL; never a 5xx."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ledger.store import reports
from tests import api_fixtures
from tests.api_fixtures import (
    JP,
    LOT_NDPR,
    SITE_A,
    SITE_B,
    World,
    build_ledger_home,
    open_world,
    scratch_dir,
)
from tests.conftest import PG_BASE, require_pg

world = api_fixtures.world
api_template = api_fixtures.api_template

PROBLEM = "https://reserve-ledger.example/problems/"
BIG = 2**63  # 9223372036854775808: one past a signed 64-bit column
ORDER_ID = "0" * 32


@pytest.fixture(scope="module")
def _pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this module (its tests only read, or are refused)."""
    require_pg()
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def any_world(
    request: pytest.FixtureRequest,
    api_template: api_fixtures.Template,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """One world per engine for the module: every test using it writes nothing (each
    checks that), so they can share it."""
    with scratch_dir(tmp_path_factory.mktemp("edges")) as base:
        if request.param == "sqlite":
            w = api_fixtures.copy_world(api_template, base / "home")
        else:
            pg_url = request.getfixturevalue("_pg_schema_url")
            home = base / "pg-home"
            home.mkdir()
            w = open_world(home, pg_url, build_ledger_home(home, pg_url), reuse_sealer=True)
        yield w
        w.close()


# (user, method, url, body, field): every route that takes a code, id, seq or year.
BAD_PARAMS: list[tuple[str, str, str, Any, str]] = [
    *[("olga", "GET", f"/balances?{p}=%00", None, p) for p in ("site", "owner", "material", "lot")],
    ("olga", "GET", "/balances?site=SITE%1b7F3K", None, "site"),
    ("olga", "GET", "/lots/%00/trace", None, "lot"),
    ("olga", "GET", "/sites/%00", None, "code"),
    ("olga", "POST", "/sites/%00/reveal", {"purpose": "inspection of the vault"}, "code"),
    ("fiona", "GET", "/releases/orders/%00/report", None, "order_id"),
    ("max", "POST", "/releases/orders/%00/revoke", {"reason": "r"}, "order_id"),
    ("fiona", "POST", "/releases/requests/%00/approve", {}, "request_id"),
    ("admin", "POST", "/keys/%00/revoke", {"reason": "r"}, "key_id"),
    ("audrey", "GET", f"/log/access?start={BIG}", None, "start"),
    ("audrey", "GET", "/log/access?limit=1001", None, "limit"),
    ("audrey", "GET", f"/log/entries?start={BIG}", None, "start"),
    ("audrey", "GET", f"/log/proofs/inclusion?seq={BIG}&size=1", None, "seq"),
    ("audrey", "GET", f"/log/proofs/inclusion?seq=0&size={BIG}", None, "size"),
    ("audrey", "GET", f"/log/proofs/consistency?old=1&new={BIG}", None, "new"),
    ("audrey", "GET", f"/log/checkpoints/{BIG}", None, "size"),
    ("olga", "GET", f"/balances?as_of_seq={BIG}", None, "as_of_seq"),
    ("fiona", "GET", "/reports/crma?year=0", None, "year"),
    ("fiona", "GET", "/reports/crma?year=-5", None, "year"),
    ("fiona", "GET", "/reports/crma?year=10000", None, "year"),
    ("fiona", "GET", "/cover?at=%00", None, "at"),
    ("olga", "GET", "/balances?as_of=2026-01-01T00:00:00%00Z", None, "as_of"),
]


@pytest.mark.parametrize(("user", "method", "url", "body", "field"), BAD_PARAMS)
def test_bad_parameters_are_422_naming_them_on_both_engines(
    any_world: World, user: str, method: str, url: str, body: Any, field: str
) -> None:
    w = any_world
    before = w.entry_count()
    resp = w.client.request(method, url, json=body, headers=w.auth(user))
    assert resp.status_code == 422, (url, resp.status_code, resp.text)
    problem = resp.json()
    assert problem["field"] == field, problem
    assert "\x00" not in resp.text
    assert w.entry_count() == before


def test_control_characters_in_an_idempotency_key_are_refused(world: World) -> None:
    resp = world.client.post(
        "/reference/lots",
        json={"code": "X"},
        headers={**world.auth("olga"), "Idempotency-Key": "a\tb"},
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "Idempotency-Key"


def _post_raw(w: World, user: str, raw: bytes, url: str = "/entries") -> Any:
    headers = {**w.auth(user), "Content-Type": "application/json"}
    return w.client.post(url, content=raw, headers=headers)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"entry":"\\ud800","sigs":[]}',  # a lone surrogate, escaped
        b'{"entry":"\\udc00x","sigs":[]}',
        b'{"entry":"\xed\xa0\x80","sigs":[]}',  # a surrogate encoded as UTF-8 (invalid)
        b'{"entry":"\xff","sigs":[]}',
        b'{"entry": {"a":',  # truncated
        b'{"entry": NaN, "sigs": []}',
        b"[" * 5000 + b"]" * 5000,  # deep nesting
    ],
)
def test_undecodable_bodies_are_422_without_a_bogus_field(any_world: World, raw: bytes) -> None:
    w = any_world
    before = w.entry_count()
    resp = _post_raw(w, "olga", raw)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"] == PROBLEM + "invalid-body"
    assert "field" not in problem, problem  # not a character offset such as "22"
    assert w.entry_count() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"entry": {"quantity": 9007199254740992}, "sigs": []}', "entry.quantity"),
        (b'{"entry": {"quantity": -9007199254740992}, "sigs": []}', "entry.quantity"),
        (b'{"entry": {"sites": [1, 99999999999999999999999]}, "sigs": []}', "entry.sites[1]"),
    ],
)
def test_integers_beyond_2_53_are_refused_naming_their_field(
    world: World, raw: bytes, field: str
) -> None:
    resp = _post_raw(world, "olga", raw)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    # The same for a custodial write's fields.
    resp = _post_raw(world, "olga", b'{"code": "L", "containers": [{"net_mass": 1e400}]}')
    assert resp.status_code == 422, resp.text


def test_largest_safe_integer_still_reaches_the_rules(world: World) -> None:
    body = {
        "site": SITE_A,
        "owner": JP,
        "lot": LOT_NDPR,
        "quantity": 2**53 - 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "supplier": "S",
        "accepted_purity": "99.50",
        "reference": "PO-X",
    }
    resp = world.client.post("/stock/receive", json=body, headers=world.auth("olga"))
    assert resp.status_code != 422 or resp.json().get("field") != "quantity", resp.text
    assert resp.status_code < 500, resp.text


# -- points in time (item 10) ---------------------------------------------------------


def test_as_of_seq_past_the_end_is_refused_not_todays_balances(any_world: World) -> None:
    w = any_world
    size = w.entry_count()
    auth = w.auth("olga")
    last = w.client.get(f"/balances?as_of_seq={size - 1}", headers=auth)
    assert last.status_code == 200, last.text
    assert last.json()["balances"] == w.client.get("/balances", headers=auth).json()["balances"]
    for seq in (size, size + 1000):
        resp = w.client.get(f"/balances?as_of_seq={seq}", headers=auth)
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == "as_of_seq"


def test_as_of_before_the_genesis_is_refused(any_world: World) -> None:
    w = any_world
    resp = w.client.get("/balances?as_of=1999-01-01T00:00:00Z", headers=w.auth("olga"))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "as_of"
    assert "as_of_seq" not in resp.json()
    both = w.client.get(
        "/balances?as_of=2026-01-01T00:00:00Z&as_of_seq=1", headers=w.auth("olga")
    )
    assert both.status_code == 422


def test_cli_and_api_share_the_point_in_time_checks(world: World) -> None:
    from ledger.errors import InvalidQuery

    with world.svc.reader.connect() as conn:
        size = reports._log_size(conn)
        assert reports.resolve_as_of(conn, as_of_seq=size - 1, as_of=None) == size - 1
        with pytest.raises(InvalidQuery) as info:
            reports.resolve_as_of(conn, as_of_seq=size, as_of=None)
        assert info.value.field == "as_of_seq"
        with pytest.raises(InvalidQuery):
            reports.balances(conn, as_of_seq=size)
        with pytest.raises(InvalidQuery) as info:
            reports.crma_report(conn, owners=None, year=0)
        assert info.value.field == "year"


# -- scope in the query (item 7) ------------------------------------------------------


def test_balances_never_read_out_of_scope_rows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both after-the-fact filters disabled, only in-scope rows still come back:
    the scope is in the SQL query, so nothing else was read."""
    from ledger import policy

    monkeypatch.setattr(reports, "_in_scope", lambda *a, **k: True)
    monkeypatch.setattr(policy, "holding_visible", lambda *a, **k: True)
    resp = world.client.get("/balances", headers=world.auth("omar"))  # operator at SITE_B
    assert resp.status_code == 200, resp.text
    rows = resp.json()["balances"]
    assert rows and {r["site"] for r in rows} == {SITE_B}
    resp = world.client.get("/balances", headers=world.auth("elena"))  # EU official
    assert {r["owner"] for r in resp.json()["balances"]} == {"EU-JOINT"}
    every = world.client.get("/balances", headers=world.auth("audrey")).json()["balances"]
    assert len(every) > len(rows)


def test_openapi_documents_the_ranges(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"]["/log/access"]["get"]["parameters"]}
    assert params["start"]["schema"]["maximum"] == 2**53 - 1
    text = json.dumps(doc["paths"]["/reports/crma"])
    assert '"minimum": 1970' in text and '"maximum": 9999' in text
