"""Issue #12: a typed API, one vocabulary, human units out ("Tests that must exist")."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from api.routes.releases import APPROVE_FORM, ORDER_FORM, PRICE_FORM, REQUEST_FORM
from api.routes.releases import REVOKE_FORM as ORDER_REVOKE_FORM
from api.routes.writes import MOVEMENT_FORMS, REFERENCE_FORMS, REVOKE_FORM
from ledger.errors import InvalidEntry
from ledger.kinds.requests import example, parse_form
from ledger.kinds.vocabulary import TERMS, flag
from ledger.units import parse_quantity
from ledger.views import GRAM_KEYS, quantities_out
from tests import api_fixtures
from tests.api_fixtures import JP, LOT_NDPR, SITE_A, SITE_B, World

world = api_fixtures.world
api_template = api_fixtures.api_template

# Every route that writes an entry (the body is what is signed, or the fields of it).
WRITE_TAGS = {"writes", "releases"}
DISPLAY = re.compile(r"^-?[0-9]+(\.[0-9]{1,6})? t$")


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ref = schema.get("$ref", "")
    assert ref.startswith("#/components/schemas/"), schema
    name = ref.rsplit("/", 1)[1]
    return name, doc["components"]["schemas"][name]


def _write_operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method == "post" and WRITE_TAGS & set(op.get("tags", ()))
    ]


def test_every_write_route_has_a_named_schema_with_described_fields(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    writes = _write_operations(doc)
    assert len(writes) >= 24, [p for p, _ in writes]  # 11 movements, 4 collections, releases, keys...
    names = set()
    for path, op in writes:
        body = op.get("requestBody")
        assert body is not None, f"{path} documents no request body"
        name, schema = _resolve(doc, body["content"]["application/json"]["schema"])
        names.add(name)
        props = schema.get("properties")
        assert props, f"{path}: schema {name} has no fields"
        for field, prop in props.items():
            assert prop.get("description"), f"{path}: {name}.{field} is not described"
            if name != "SignedEntryIn":
                assert prop.get("examples"), f"{path}: {name}.{field} has no example"
    assert len(names) == len(writes), "two write routes share a schema"
    # Each movement has its own path and schema, generated from the kinds table.
    for action in MOVEMENT_FORMS:
        assert f"/stock/{action}" in doc["paths"]
    quantity = doc["components"]["schemas"]["ReceiptIn"]["properties"]["quantity"]
    assert quantity["type"] == "string" and "12.5 t" in quantity["examples"]
    assert "occurred_at" not in doc["components"]["schemas"]["ReceiptIn"]["required"]
    assert "shortfall_reason" not in doc["components"]["schemas"]["ArrivalIn"]["required"]


FORMS = {
    **{f"/stock/{a}": (f, "olga") for a, f in MOVEMENT_FORMS.items()},
    "/reference/owners": (REFERENCE_FORMS["owners"], "admin"),
    "/reference/materials": (REFERENCE_FORMS["materials"], "admin"),
    "/reference/lots": (REFERENCE_FORMS["lots"], "olga"),
    "/reference/targets": (REFERENCE_FORMS["targets"], "fiona"),
    "/releases/prices": (PRICE_FORM, "fiona"),
    "/releases/requests": (REQUEST_FORM, "fiona"),
    "/releases/requests/" + "4e" * 16 + "/approve": (APPROVE_FORM, "felix"),
    "/releases/orders": (ORDER_FORM, "mina"),
    "/releases/orders/" + "9c" * 16 + "/revoke": (ORDER_REVOKE_FORM, "mina"),
}


@pytest.mark.parametrize("path", list(FORMS))
def test_the_example_of_each_schema_is_accepted_as_is(world: World, path: str) -> None:
    """Posted unchanged to the in-process app, each schema's example passes the request
    checks: a 201, or the rules' own answer about the world it meets (a made-up transfer
    id is not found, a request without a policy in force is refused), never a 422."""
    form, user = FORMS[path]
    doc = world.client.get("/openapi.json").json()
    schema_name = form.struct.__name__
    documented = doc["components"]["schemas"][schema_name]["examples"][0]
    assert documented == example(form)
    resp = world.client.post(path, json=documented, headers=world.auth(user))
    assert resp.status_code in (201, 404, 409), (path, resp.status_code, resp.text)


def test_an_example_is_appended(world: World) -> None:
    """The examples name made-up sites (the document is public); an owner's is complete."""
    before = world.entry_count()
    resp = world.client.post("/reference/owners", json=example(REFERENCE_FORMS["owners"]), headers=world.auth("admin"))
    assert resp.status_code == 201, resp.text
    assert world.entry_count() == before + 1


def _receipt(**over: Any) -> dict[str, Any]:
    body = {"site": SITE_A, "owner": JP, "lot": LOT_NDPR, "quantity": "1.5 kg", "supplier": "Lynas",
            "accepted_purity": "0.995", "reference": "PO-T-1"}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def _last_entry(w: World) -> dict[str, Any]:
    size = w.entry_count()
    leaves = w.client.get(f"/log/entries?start={size - 1}&limit=1", headers=w.auth("audrey")).json()
    entry: dict[str, Any] = leaves["entries"][0]["entry"]
    return entry


def test_times_with_an_offset_are_stored_in_utc_and_default_to_now(world: World) -> None:
    w = world
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)  # written at UTC+09:00
    tokyo = t.astimezone(timezone(timedelta(hours=9))).isoformat()
    resp = w.client.post("/stock/receive", json=_receipt(occurred_at=tokyo), headers=w.auth("olga"))
    assert resp.status_code == 201, resp.text
    entry = _last_entry(w)
    assert entry["occurred_at"].endswith("Z")
    assert datetime.fromisoformat(entry["occurred_at"].replace("Z", "+00:00")) == t.astimezone(UTC)
    assert entry["quantity"] == 1500 and entry["accepted_purity"] == "99.5"
    # absent and null: now
    for value in (..., None):
        resp = w.client.post("/stock/receive", json=_receipt(occurred_at=value), headers=w.auth("olga"))
        assert resp.status_code == 201, resp.text
        assert abs(datetime.fromisoformat(_last_entry(w)["occurred_at"].replace("Z", "+00:00"))
                   - datetime.now(UTC)) < timedelta(minutes=1)


def test_optional_fields_may_be_null_or_absent(world: World) -> None:
    w = world
    sent = w.client.post(
        "/stock/dispatch",
        json={"site": SITE_A, "owner": JP, "lot": LOT_NDPR, "quantity": "1 t", "to_site": SITE_B, "reference": "T-9"},
        headers=w.auth("olga"),
    )
    assert sent.status_code == 201, sent.text
    transfer = sent.json()["entry_id"]
    got = w.client.post(
        "/stock/arrive",
        json={"site": SITE_B, "transfer": transfer, "quantity": "1 t", "shortfall_reason": None},
        headers=w.auth("omar"),
    )
    assert got.status_code == 201, got.text
    assert _last_entry(w)["shortfall_reason"] == ""


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"quantity": 1500}, "entry.quantity"),  # a bare number: which unit?
        ({"quantity": "1500"}, "entry.quantity"),
        ({"occurred_at": "2026-11-29 10:00"}, "entry.occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00+01:00"}, "entry.occurred_at"),  # before year 1 in UTC
        ({"site": 7}, "entry.site"),
        ({"colour": "red"}, "entry.colour"),
        ({"supplier": ...}, "entry.supplier"),
    ],
)
def test_bad_fields_are_422_naming_them_and_nothing_is_written(world: World, over: dict[str, Any], field: str) -> None:
    w = world
    before = w.entry_count()
    resp = w.client.post("/stock/receive", json=_receipt(**over), headers=w.auth("olga"))
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["field"] == field, problem
    assert "regex" not in problem["detail"] and "^" not in problem["detail"]
    assert w.entry_count() == before
    if over.get("quantity") == 1500:
        assert "bare number" in problem["detail"]


def test_a_container_mass_is_a_quantity_with_a_unit_too() -> None:
    form = REFERENCE_FORMS["lots"]
    good = example(form)
    assert parse_form(form, good)["containers"][0]["net_mass"] == 250_000
    with pytest.raises(InvalidEntry) as info:
        parse_form(form, {**good, "containers": [{**good["containers"][0], "net_mass": 250000}]})
    assert info.value.field == "entry.containers[0].net_mass"


def test_key_revocation_takes_its_key_from_the_path_only() -> None:
    assert "key_id" not in REVOKE_FORM.struct.__struct_fields__
    assert parse_form(REVOKE_FORM, {"reason": "lost laptop"}) == {"reason": "lost laptop"}


# -- one vocabulary ---------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    out = {prefix.strip(): parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_subparsers(sub, f"{prefix} {name}"))
    return out


def test_every_old_flag_still_works_and_fills_the_new_field() -> None:
    from cli.main import build_parser

    commands = _subparsers(build_parser())
    seen: set[str] = set()
    for command, parser in commands.items():
        for action in parser._actions:
            for field, t in TERMS.items():
                if action.dest != field or flag(field) not in action.option_strings:
                    continue
                for old in t.old_flags:
                    if old not in action.option_strings:
                        continue
                    # the old name is the same option: it fills the same field
                    assert parser._option_string_actions[old] is action, (command, old)
                    assert "deprecated" in (action.help or ""), (command, old)
                    seen.add(old)
    # Every old flag named in the vocabulary is an alias somewhere.
    assert seen == {o for t in TERMS.values() for o in t.old_flags}, {o for t in TERMS.values() for o in t.old_flags} - seen
    # --to was two fields; each command still reads it as its own.
    assert commands["stock dispatch"]._option_string_actions["--to"].dest == "to_site"
    assert commands["target set"]._option_string_actions["--to"].dest == "valid_to"


def test_cli_flags_are_the_api_field_names() -> None:
    """A movement's flags are exactly its request schema's fields (the CLI's extras aside)."""
    from cli.main import build_parser

    commands = _subparsers(build_parser())
    cli_only = {"help", "as_user", "second_officer"}
    for action, form in MOVEMENT_FORMS.items():
        parser = commands[f"stock {action}"]
        dests = {a.dest for a in parser._actions} - cli_only
        assert dests == set(form.struct.__struct_fields__), (action, dests ^ set(form.struct.__struct_fields__))
        for a in parser._actions:
            if a.option_strings and a.dest not in cli_only:
                assert a.option_strings[0] == flag(a.dest), (action, a.option_strings)


# -- human units out ----------------------------------------------------------------------

SKIP = ("/log", "/proposals", "/entries/outcome", "/metrics", "/docs", "/redoc", "/openapi.json", "/auth")


def _walk_quantities(value: Any, where: str, found: list[str]) -> None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            _walk_quantities(v, f"{where}[{i}]", found)
        return
    if not isinstance(value, dict):
        return
    for k, v in value.items():
        at = f"{where}.{k}"
        if k in GRAM_KEYS:
            assert f"{k}_g" in value, f"{at}: no exact integer beside it"
            exact = value[f"{k}_g"]
            if v is None:
                assert exact is None, at
                continue
            assert isinstance(v, str) and DISPLAY.match(v), f"{at} = {v!r} is not in display units"
            assert isinstance(exact, int) and parse_quantity(v.lstrip("-")) == abs(exact), (at, v, exact)
            found.append(at)
        elif k.endswith("_g"):
            assert k[:-2] in value, f"{at}: grams without the display value"
        else:
            _walk_quantities(v, at, found)


def test_every_quantity_in_every_read_is_in_display_units_with_its_exact_integer(world: World) -> None:
    w = world
    doc = w.client.get("/openapi.json").json()
    reads = [p for p, ops in doc["paths"].items() if "get" in ops and not p.startswith(SKIP)]
    concrete = {"{code}": SITE_A, "{lot}": LOT_NDPR, "{seq}": "1"}
    found: list[str] = []
    called = 0
    for path in reads:
        url = path
        for k, v in concrete.items():
            url = url.replace(k, v)
        if "{" in url:  # an order's report needs an order: the CLI release test reads one
            continue
        for user in ("audrey", "fiona", "olga"):
            resp = w.client.get(url, headers=w.auth(user))
            if resp.status_code != 200:
                continue
            called += 1
            _walk_quantities(resp.json(), url, found)
    assert called >= 15, called
    paths = {f.split(".")[0].split("[")[0] for f in found}
    for must in ("/balances", f"/lots/{LOT_NDPR}/trace", "/cover", "/reports/crma", "/registry/lots"):
        assert must in paths, (must, sorted(paths))


def test_release_views_have_the_same_shape() -> None:
    """The release read models (orders, reports) go through the same function."""
    from dataclasses import asdict

    from ledger.store.releases import ApprovalView

    row = quantities_out(asdict(ApprovalView(user="felix", seq=3, recorded_at="t", cap=400_000, counts=True, note="")))
    assert (row["cap"], row["cap_g"]) == ("0.4 t", 400_000)
    assert quantities_out(row) == row  # idempotent
