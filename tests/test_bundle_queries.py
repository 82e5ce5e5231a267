"""``reserve bundle balances|trace|releases`` (issue #10): the auditor's answers, computed
offline from a verified bundle, agree with the server's own reports on the same history
at the same size, for every point of the log, every filter and every lot; and an
unverifiable bundle gives no answer at all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cli.main import main
from ledger.bundle import file_sha256
from ledger.records import RECORD_TYPES
from ledger.report_rows import as_builtins as asdict
from ledger.service import Ledger
from ledger.store import reports
from ledger.store.audit import export_bundle
from ledger.store.projections import read_table
from ledger.store.schema import entries
from ledger.units import format_quantity
from ledger.views import quantities_out
from tests.inprocess import reset_structlog  # noqa: F401  (autouse)
from tests.stock_scenario import DY, EU, JP, NDPR, SITE_A, SITE_B, build_scenario
from tests.tamper_helpers import log_public_key


@pytest.fixture
def world(ledger: Ledger, tmp_path: Path) -> tuple[Ledger, Path, str]:
    build_scenario(ledger)
    out = tmp_path / "bundle"
    export_bundle(ledger.engine, out)
    return ledger, out, log_public_key(ledger).hex()


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    rc = main(["bundle", *argv, "--format", "json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err.startswith("verified bundle: size ")
    return json.loads(captured.out)


def _rows(server: list[reports.BalanceRow]) -> list[Any]:
    """The server's rows as the API gives them (issue #12: display string and ``_g``)."""
    return [quantities_out(asdict(r)) for r in server]


def test_balances_agree_with_the_server_at_every_seq(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    led, bundle, trust = world
    with led.engine.connect() as conn:
        size = len(conn.execute(select(entries.c.seq)).all())
        assert _rows(reports.balances(conn)) == ask(capsys, "balances", str(bundle), "--trust", trust)
        for seq in range(-1, size):
            server = _rows(reports.balances(conn, as_of_seq=seq))
            offline = ask(capsys, "balances", str(bundle), "--trust", trust, "--as-of-seq", str(seq))
            assert offline == server, seq


def test_balances_as_of_a_time_and_filters_agree(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    led, bundle, trust = world
    with led.engine.connect() as conn:
        times = [r.recorded_at for r in conn.execute(select(entries.c.recorded_at))]
        for t in (times[0], times[len(times) // 2], times[-3], "2000-01-01T00:00:00Z"):
            server = _rows(reports.balances(conn, as_of_seq=reports.seq_at_time(conn, t)))
            offline = ask(capsys, "balances", str(bundle), "--trust", trust, "--as-of", t)
            assert offline == server, t
        for flags, kw in [
            (["--owner", JP], {"owner": JP}),
            (["--owner", EU, "--material", DY], {"owner": EU, "material": DY}),
            (["--site", SITE_B], {"site": SITE_B}),
            (["--site", SITE_A, "--material", NDPR], {"site": SITE_A, "material": NDPR}),
        ]:
            server = _rows(reports.balances(conn, **kw))
            assert server, kw
            offline = ask(capsys, "balances", str(bundle), "--trust", trust, *flags)
            assert offline == server, kw


def test_trace_agrees_with_the_server_for_every_lot(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    led, bundle, trust = world
    with led.engine.connect() as conn:
        lots = sorted(read_table(conn, "lots"))
        assert len(lots) >= 6
        for lot in lots:
            server = reports.trace_lot(conn, str(lot))
            offline = ask(capsys, "trace", str(bundle), str(lot), "--trust", trust)
            assert offline["legs"] == quantities_out([asdict(g) for g in server.legs])
            assert [(d["account"], d["quantity_g"]) for d in offline["distribution"]] == [
                (d.account, d.quantity) for d in server.distribution
            ]
            assert (offline["held"], offline["held_g"]) == (format_quantity(server.held), server.held)
            for name in ("material", "balanced", "consistent"):
                assert offline[name] == getattr(server, name), (lot, name)
            assert tuple(offline["owners"]) == server.owners


def test_trace_of_an_unknown_lot_is_refused(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _led, bundle, trust = world
    assert main(["bundle", "trace", str(bundle), "NO-SUCH-LOT", "--trust", trust]) == 1
    assert "no lot 'NO-SUCH-LOT'" in capsys.readouterr().err


def test_releases_agree_with_the_server(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    led, bundle, trust = world
    offline = ask(capsys, "releases", str(bundle), "--trust", trust)
    with led.engine.connect() as conn:
        stored = read_table(conn, "release_orders")
    assert RECORD_TYPES["release_orders"]
    assert len(offline["orders"]) == len(stored) == 2
    for o in offline["orders"]:
        rec = stored[o["id"]]
        assert (o["cap_g"], o["remaining_g"], o["quorum"], o["minister"]) == (
            rec.cap, rec.remaining, rec.quorum, rec.minister,
        )  # fmt: skip
        assert (o["cap"], o["remaining"]) == (format_quantity(rec.cap), format_quantity(rec.remaining))
        assert [a["user"] for a in o["approvals"]] == [a[0] for a in rec.approvals]
        assert [x["seq"] for x in o["executions"]] == [x[0] for x in rec.executions]


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_other_formats(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    _led, bundle, trust = world
    assert main(["bundle", "balances", str(bundle), "--trust", trust, "--format", fmt]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("," if fmt == "csv" else None)[:2] == (
        ["owner", "site"] if fmt == "csv" else ["OWNER", "SITE"]
    )
    assert any(JP in line for line in out[1:])
    # Quantities as the API gives them (issue #12): the display unit, and in CSV the exact
    # integer beside it.
    if fmt == "csv":
        assert out[0].split(",")[-2:] == ["quantity", "quantity_g"]
        for line in out[1:]:
            shown, grams = line.split(",")[-2:]
            assert shown == format_quantity(int(grams)) and shown.endswith(" t"), line
    else:
        assert out[0].split()[-1] == "QUANTITY"
        assert all(line.endswith(" t") for line in out[1:]), out


def test_trace_and_releases_tables_show_the_display_unit(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _led, bundle, trust = world
    lot = ask(capsys, "balances", str(bundle), "--trust", trust)[0]["lot"]
    assert main(["bundle", "trace", str(bundle), lot, "--trust", trust, "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(",")[-4:] == ["delta", "delta_g", "balance", "balance_g"]
    for line in out[1:]:
        delta, delta_g, balance, balance_g = line.split(",")[-4:]
        assert (delta, balance) == (format_quantity(int(delta_g)), format_quantity(int(balance_g)))
    assert main(["bundle", "releases", str(bundle), "--trust", trust]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    # CAP, EXECUTED, REMAINING: three quantities in tonnes on every row.
    assert rows and all(len(re.findall(r"\b\d+(?:\.\d+)? t\b", line)) == 3 for line in rows), rows


def test_a_tampered_bundle_gives_no_answer(
    world: tuple[Ledger, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _led, bundle, trust = world
    lines = (bundle / "entries.jsonl").read_bytes().splitlines()
    forged = lines[25].replace(b'"quantity":', b'"quantity":1', 1)
    assert forged != lines[25]
    lines[25] = forged
    (bundle / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"]["entries.jsonl"] = file_sha256(bundle / "entries.jsonl")  # fixed too
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    assert main(["bundle", "balances", str(bundle), "--trust", trust]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("FAILED: ")
