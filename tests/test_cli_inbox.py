"""Issue #12 on the command line (local mode, in process): short references, inboxes,
approval comments, keys by user name, and reports people can hand on
(``--format table|json|csv|md|html``), each format parsed the way a reader would."""

from __future__ import annotations

import csv
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from keys import FileKeystore
from keys.sealing import load_or_create_sealer
from ledger.locations import Location
from ledger.service import Ledger, new_body
from ledger.store.db import make_engine
from ledger.timefmt import now
from tests.inprocess import reset_structlog  # noqa: F401 - autouse
from tests.release_helpers import order, request, set_policy

JP, NDPR, LOT = "JP-RESERVE", "NDPR-OXIDE", "LOT-1"
A, B = "SITE-7F3K", "SITE-2B9Q"
SECRET_NAME = "Bunker Aurora-7731"
PASS = "cli-test-pass"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Ledger, dict[str, str]]:
    """Two sites, an operator at each, a transfer A -> B on its way, and an emergency
    release ordered for site A whose approval carries a comment."""
    h = tmp_path / "home"
    h.mkdir()
    for k in [k for k in os.environ if k.startswith("RESERVE_") and k != "RESERVE_UNSAFE_KDF_COST"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("RESERVE_HOME", str(h))
    monkeypatch.setenv("RESERVE_PASSPHRASE", PASS)

    # The log is owner-scoped (reserve init, issue #14): appending opens the owners' sealed secrets.
    led = Ledger(make_engine(f"sqlite:///{h / 'ledger.db'}"), FileKeystore(h / "keys", passphrase=PASS.encode()),
                 sealer=lambda: load_or_create_sealer(h / "keys", passphrase=PASS.encode()))
    led.init(log_id="test.local/inbox", admin="admin")
    led.sealer = load_or_create_sealer(h / "keys", passphrase=PASS.encode())
    led.act("admin", "owner.registered", code=JP, name="Japan reserve", country="JP")
    led.act("admin", "material.registered", code=NDPR, name="NdPr oxide", form="oxide", base_unit="g", grade_basis="TREO")
    for code in (A, B):
        led.register_site(admin="admin", code=code, classification="SECRET", custodian=JP, owners=[JP],
                          location=Location(name=SECRET_NAME, address="1 Quarry Lane", latitude=1.5, longitude=2.5))
    for user, roles, sites, owners in (
        ("olga", ["operator"], [A], []), ("omar", ["operator"], [B], []),
        ("fiona", ["official"], [], [JP]), ("felix", ["official"], [], [JP]),
        ("mina", ["minister"], [], [JP]), ("max", ["minister"], [], [JP]),
    ):
        led.register_key(admin="admin", user=user, roles=roles, sites=sites, owners=owners, clearance="NONE")
    led.act("olga", "lot.registered", code=LOT, material=NDPR, origin="AU", supplier="Lynas", purity="99.5",
            basis="TREO", certificate_sha256="ab" * 32, containers=[])
    led.act("olga", "stock.receipt", site=A, owner=JP, lot=LOT, quantity=50_000_000, occurred_at=now(),
            supplier="Lynas", accepted_purity="99.5", reference="PO-1")
    res = led.act("olga", "stock.dispatch", site=A, owner=JP, lot=LOT, quantity=2_500_000, occurred_at=now(),
                  to_site=B, reference="TR-1")
    transfer = led.entry_ref(str(res.first_seq))
    set_policy(led, JP, NDPR, minister="mina", quorum=1)
    req = request(led, "fiona", JP, NDPR, 3_000_000, "Shin-Etsu | <b>KK</b>", "emergency_release")
    led.act("felix", "release.approved", request=req, comment="inventories checked *twice*")
    oid = order(led, "max", req, 3_000_000, "emergency_release", [A])
    led.act("olga", "stock.release", site=A, owner=JP, lot=LOT, quantity=1_250_000, order=oid,
            recipient="Shin-Etsu | <b>KK</b>", occurred_at=now())
    return h, led, {"transfer": transfer, "request": req, "order": oid}


def cli(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> str:
    got = main(list(argv))
    out = capsys.readouterr()
    assert got == rc, (argv, out.err)
    if rc:
        assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err, out.err
        return out.err
    return out.out


def _seq(led: Ledger, entry_id: str) -> int:
    from sqlalchemy import select

    from ledger.store.schema import entries

    with led.engine.connect() as conn:
        return int(conn.execute(select(entries.c.seq).where(entries.c.entry_id == entry_id)).scalar_one())


def test_inbound_transfers_and_executable_orders_by_operator(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _h, _led, ids = home
    omar = json.loads(cli(capsys, "transfers", "--inbound", "--as", "omar", "--format", "json"))
    assert [t["id"] for t in omar["transfers"]] == [ids["transfer"]]
    assert json.loads(cli(capsys, "transfers", "--inbound", "--as", "olga", "--format", "json"))["transfers"] == []
    rows = list(csv.reader(io.StringIO(cli(capsys, "transfers", "--inbound", "--as", "omar", "--format", "csv"))))
    assert rows[0][:2] == ["TRANSFER", "SEQ"] and rows[1][3:5] == [A, B] and rows[1][7] == "2.5 t"
    assert "say whose sites" in cli(capsys, "transfers", "--inbound", rc=2)

    olga = json.loads(cli(capsys, "orders", "--executable", "--as", "olga", "--format", "json"))["orders"]
    assert [(o["id"], o["executable_at"], o["remaining_g"]) for o in olga] == [(ids["order"], [A], 1_750_000)]
    assert json.loads(cli(capsys, "orders", "--executable", "--as", "omar", "--format", "json"))["orders"] == []
    assert ids["order"][:12] in cli(capsys, "orders", "--executable", "--as", "olga")


def test_short_references_on_the_command_line(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _h, led, ids = home
    oid, req = ids["order"], ids["request"]
    # `release show` and `release report` by the order's prefix, seq, or the request.
    for ref in (oid[:8], str(_seq(led, oid)), oid, req[:12], str(_seq(led, req))):
        doc = json.loads(cli(capsys, "release", "report", ref, "--format", "json"))
        assert doc["order"]["id"] == oid, ref
    shown = cli(capsys, "release", "show", oid[:8])
    assert "comment: inventories checked *twice*" in shown and "felix" in shown
    # An ambiguous prefix: refused with the candidates' seqs, nothing guessed.
    seqs = []
    for i, code in enumerate(("AA-ONE", "AA-TWO")):
        body = new_body("owner.registered", "admin", code=code, name=code, country="JP")
        body["id"] = "0ddba110" + str(i) * 24
        seqs.append(led.submit(body, [led.signer_for("admin")]).first_seq)
    # A reversal may name any movement, so the prefix is looked up among every entry.
    err = cli(capsys, "stock", "reverse", "--site", A, "0ddba110", "--reason", "typo", "--as", "olga", rc=1)
    assert f"seqs {seqs[0]}, {seqs[1]}" in err and "more than one" in err
    assert "too short" in cli(capsys, "stock", "reverse", "--site", A, "0ddba11", "--reason", "x", "--as", "olga", rc=1)
    # Among release requests and orders the same prefix names nothing: one clear line.
    assert "no release order or release request '0ddba110'" in cli(capsys, "release", "show", "0ddba110", rc=1)
    # One more character is unique: the reducer then judges the reversal (not a movement).
    err = cli(capsys, "stock", "reverse", "--site", A, "0ddba1101", "--reason", "typo", "--as", "olga", rc=1)
    assert "more than one" not in err and "refused" in err


def test_keys_revoke_by_user_name(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "keys", "revoke", "omar", "--reason", "left the site", "--as", "admin")
    assert out.startswith("revoked key ")
    keys = json.loads(cli(capsys, "keys", "list", "--format", "json"))["keys"]
    assert [k["revoked_seq"] is not None for k in keys if k["user"] == "omar"] == [True]
    assert "no active key" in cli(capsys, "keys", "revoke", "omar", "--reason", "again", "--as", "admin", rc=1)


def test_report_formats_parse(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _h, _led, ids = home
    oid = ids["order"]
    # The order's report: JSON, CSV (executions), table, Markdown and HTML pages.
    doc = json.loads(cli(capsys, "release", "report", oid, "--format", "json"))
    assert [a["comment"] for a in doc["approvals"]] == ["inventories checked *twice*"]
    rows = list(csv.DictReader(io.StringIO(cli(capsys, "release", "report", oid, "--format", "csv"))))
    assert [(r["SITE"], r["QUANTITY"]) for r in rows] == [(A, "1.25 t")]
    table = cli(capsys, "release", "report", oid)
    assert "inventories checked *twice*" in table and "remaining 1.75 t" in table
    md = cli(capsys, "release", "report", oid, "--format", "md")
    assert md.startswith("# Report on release order") and "1.25 t" in md and "\\*twice\\*" in md
    assert "Shin-Etsu \\| \\<b\\>KK\\</b\\>" in md and "<b>" not in md
    page = cli(capsys, "release", "report", oid, "--format", "html")
    cells = _html_cells(page)
    assert A in cells and "1.25 t" in cells and "inventories checked *twice*" in cells
    assert "<b>KK</b>" not in page and "&lt;b&gt;KK&lt;/b&gt;" in page
    assert "Content-Security-Policy" in page
    for text in (md, page, table):
        assert SECRET_NAME not in text

    # CRMA: every format parses; tonnes; no site at all.
    crma = json.loads(cli(capsys, "report", "crma", "--format", "json"))
    assert [m["material"] for m in crma["materials"]] == [NDPR]
    rows = list(csv.DictReader(io.StringIO(cli(capsys, "report", "crma", "--format", "csv"))))
    assert rows[0]["MATERIAL"] == NDPR and rows[0]["HELD"] == "46.25 t"
    for fmt in ("table", "md", "html"):
        text = cli(capsys, "report", "crma", "--format", fmt)
        assert "46.25 t" in text and A not in text and B not in text and SECRET_NAME not in text, fmt
    assert NDPR in _html_cells(cli(capsys, "report", "crma", "--format", "html"))

    # Cover and the lot trace: table, JSON and CSV.
    for argv in (("cover",), ("trace", LOT)):
        json.loads(cli(capsys, *argv, "--format", "json"))
        parsed = list(csv.reader(io.StringIO(cli(capsys, *argv, "--format", "csv"))))
        assert parsed and all(len(r) == len(parsed[0]) for r in parsed)
    trace = list(csv.DictReader(io.StringIO(cli(capsys, "trace", LOT, "--format", "csv"))))
    assert {r["KIND"] for r in trace} >= {"stock.receipt", "stock.dispatch", "stock.release"}


def _html_cells(page: str) -> list[str]:
    cells: list[str] = []

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside = False

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.inside = tag == "td"

        def handle_data(self, data: str) -> None:
            if self.inside:
                cells.append(data)

        def handle_endtag(self, tag: str) -> None:
            self.inside = False

    P().feed(page)
    return cells
