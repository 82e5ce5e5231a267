"""The verification report (issue #10): for each tamper case of the signed log it names
the right entry (seq), check and reducer rule, with evidence; it is written when
verification fails; its JSON has the documented shape; every text from the log is
escaped in the HTML; and the page opens in headless Chromium with no network."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, update

from keys import Ed25519Signer
from ledger.audit_report import build_document, render, verify_with_report
from ledger.audit_report.collect import Collector
from ledger.canonical import canonical
from ledger.errors import VerificationFailed
from ledger.merkle import leaf_hash
from ledger.service import Ledger
from ledger.store.audit import entry_line, export_bundle, verify_database
from ledger.store.schema import checkpoints, entries, log_state, test_balances, tree_nodes
from ledger.timefmt import format_time, parse_time
from tests.inprocess import reset_structlog  # noqa: F401  (autouse)
from tests.stock_scenario import build_scenario
from tests.tamper_helpers import (
    FIRST_MOVE,
    OPERATOR,
    SIZE,
    build_history,
    checkpoint_row,
    flip_sig_byte,
    log_public_key,
    other_root,
    read_leaf,
    replace_note_root,
    resign,
    swap_entries,
    tampering,
    write_leaf,
)
from tests.web_browser import chromium_path

K = FIRST_MOVE + 3
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def led(ledger: Ledger) -> Ledger:
    build_history(ledger)
    return ledger


def run_report(
    led: Ledger, tmp_path: Path, *, trusted: bytes | None = None
) -> tuple[dict[str, Any], str, VerificationFailed | None]:
    html_path, json_path = tmp_path / "r.html", tmp_path / "r.json"
    key = trusted if trusted is not None else log_public_key(led)
    failure = None
    try:
        verify_with_report(
            lambda obs: verify_database(led.engine, trusted_log_key=key, observer=obs),
            html_path=html_path,
            json_path=json_path,
            source={"kind": "database", "trust": "the given key"},
            entry_at=lambda seq: entry_line(led.engine, seq),
            skipped=frozenset({"bundle-files", "held-checkpoint"}),
        )
    except VerificationFailed as exc:
        failure = exc
    return json.loads(json_path.read_text()), html_path.read_text(), failure


# -- tamper cases: (what the attacker does, seq, check, rule) ---------------------------


def _quantity(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, K)
    leaf["entry"]["delta"] = 700
    write_leaf(conn, K, leaf)


def _quantity_old_hash(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, K)
    leaf["entry"]["delta"] = 700
    write_leaf(conn, K, leaf, update_hash=False)


def _genesis_sig(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, 0)
    leaf["sigs"][1]["sig"] = flip_sig_byte(leaf["sigs"][1]["sig"])
    write_leaf(conn, 0, leaf)


def _deleted(conn: Connection, led: Ledger) -> None:
    conn.execute(delete(entries).where(entries.c.seq == K))


def _renumbered(conn: Connection, led: Ledger) -> None:
    conn.execute(delete(entries).where(entries.c.seq == K))
    for seq in range(K + 1, SIZE):
        leaf = read_leaf(conn, seq)
        leaf["seq"] = seq - 1
        line = canonical(leaf)
        conn.execute(
            update(entries)
            .where(entries.c.seq == seq)
            .values(seq=seq - 1, leaf=line, leaf_hash=leaf_hash(line))
        )


def _swapped(conn: Connection, led: Ledger) -> None:
    swap_entries(conn, K)


def _stranger(conn: Connection, led: Ledger) -> None:
    write_leaf(conn, K, resign(read_leaf(conn, K), [Ed25519Signer.generate()]))


def _other_user(conn: Connection, led: Ledger) -> None:
    write_leaf(conn, K, resign(read_leaf(conn, K), [led.keystore.load("admin")]))


def _author_changed(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, K)
    leaf["entry"]["delta"] = 700
    write_leaf(conn, K, resign(leaf, [led.keystore.load(OPERATOR)]))


def _author_negative(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, K)
    leaf["entry"]["delta"] = -1000
    write_leaf(conn, K, resign(leaf, [led.keystore.load(OPERATOR)]))


def _author_stale(conn: Connection, led: Ledger) -> None:
    leaf = read_leaf(conn, K)
    old = parse_time(leaf["entry"]["created_at"])
    leaf["entry"]["created_at"] = format_time(old.replace(year=old.year - 1))
    write_leaf(conn, K, resign(leaf, [led.keystore.load(OPERATOR)]))


def _truncated(conn: Connection, led: Ledger) -> None:
    conn.execute(delete(entries).where(entries.c.seq >= SIZE - 2))


def _projection(conn: Connection, led: Ledger) -> None:
    conn.execute(update(test_balances).values(balance=1_000_000))


def _head(conn: Connection, led: Ledger) -> None:
    conn.execute(update(log_state).values(head_hash="0" * 64))


def _checkpoint_root(conn: Connection, led: Ledger) -> None:
    row = checkpoint_row(conn, K + 1)
    root = bytes(row.root)
    note = replace_note_root(row.note, root, other_root(root))
    conn.execute(update(checkpoints).where(checkpoints.c.size == K + 1).values(note=note))


def _tree_node(conn: Connection, led: Ledger) -> None:
    conn.execute(
        update(tree_nodes)
        .where(tree_nodes.c.level == 0, tree_nodes.c.idx == K)
        .values(hash=b"\x5a" * 32)
    )


CASES: list[tuple[str, Callable[[Connection, Ledger], None], int | None, str, str | None]] = [
    ("changed-quantity", _quantity, K, "signatures", None),
    ("changed-quantity-old-hash", _quantity_old_hash, K, "database-columns", None),
    ("genesis-log-signature", _genesis_sig, 0, "signatures", None),
    ("deleted", _deleted, K, "sequence", None),
    ("deleted-renumbered", _renumbered, K, "hash-chain", None),
    ("swapped", _swapped, K, "sequence", None),
    ("resigned-unregistered-key", _stranger, K, "rules", "key-not-authorised"),
    ("resigned-other-users-key", _other_user, K, "rules", "key-not-authorised"),
    ("resigned-by-author", _author_changed, K, "checkpoints", None),
    ("resigned-negative", _author_negative, K, "rules", "negative-holding"),
    ("resigned-stale", _author_stale, K, "rules", "stale-entry"),
    ("truncated", _truncated, SIZE - 2, "coverage", None),
    ("projection", _projection, None, "projections", None),
    ("log-head", _head, SIZE - 1, "log-head", None),
    ("checkpoint-root", _checkpoint_root, K, "checkpoints", None),
    ("tree-node", _tree_node, K, "tree-nodes", None),
]


@pytest.mark.parametrize(
    ("tamper", "seq", "check", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_report_names_the_entry_and_rule(
    led: Ledger,
    tmp_path: Path,
    tamper: Callable[[Connection, Ledger], None],
    seq: int | None,
    check: str,
    rule: str | None,
) -> None:
    if tamper is _projection:
        with led.engine.begin() as conn:  # a projection: no trigger guards it
            tamper(conn, led)
    else:
        with tampering(led.engine) as conn:
            tamper(conn, led)
    doc, page, failure = run_report(led, tmp_path)
    assert failure is not None, "the tampered history verified"
    assert doc["result"] == "failed"
    (f,) = doc["failures"]
    assert (f["seq"], f["check"], f["rule"]) == (seq, check, rule), f
    assert f["message"] == failure.public_message
    statuses = {c["check"]: c["status"] for c in doc["checks"]}
    assert statuses[check] == "failed"
    assert list(statuses.values()).count("failed") == 1
    if seq is not None and check not in ("coverage", "log-head", "tree-nodes"):
        ev = f["evidence"]["entry"]
        assert ev["kind"] in ("test.movement", "genesis")
        assert ev["recorded_at"]
    # The page says it too, in the failures table.
    failures_html = page[page.index('id="failures"') : page.index('id="checks"')]
    assert f"<td>{seq if seq is not None else '-'}</td><td>{check}</td>" in failures_html
    if rule:
        assert f"<td>{rule}</td>" in failures_html


def test_wrong_trust_key_is_reported(led: Ledger, tmp_path: Path) -> None:
    doc, _page, failure = run_report(led, tmp_path, trusted=Ed25519Signer.generate().public_key)
    assert failure is not None
    (f,) = doc["failures"]
    assert (f["seq"], f["check"]) == (0, "trust-anchor")
    # Every entry passed the streaming checks before the end check failed.
    assert doc["entries"]["verified"] == SIZE


def test_clean_history_report_shape(led: Ledger, tmp_path: Path) -> None:
    doc, page, failure = run_report(led, tmp_path)
    assert failure is None
    assert doc["format"] == "reserve-ledger/verification-report/v1"
    assert doc["result"] == "passed" and doc["failures"] == []
    assert set(doc) >= {
        "generated_at", "source", "log", "failures", "checks", "entries", "signatures", "keys",
        "checkpoints", "rules", "common_rules", "stock", "losses", "releases", "access_log",
    }  # fmt: skip
    assert doc["log"]["size"] == SIZE and len(doc["log"]["root"]) == 64
    assert doc["entries"]["verified"] == SIZE
    assert doc["entries"]["by_kind"] == {
        "genesis": 1, "owner.registered": 1, "site.registered": 1, "key.registered": 1, "test.movement": 8,
    }  # fmt: skip
    assert doc["signatures"]["verified"] == SIZE + 1  # genesis: admin and log key
    assert doc["checkpoints"]["verified"] == SIZE
    rules = {r["rule"]: r["entries"] for r in doc["rules"]}
    assert rules["ledger.rules.testmove.test_movement"] == 8
    assert rules["ledger.rules.keys.key_registered"] == 1
    keys = {k["user"]: k for k in doc["keys"]}
    assert keys[OPERATOR]["valid_from_seq"] == 3 and keys[OPERATOR]["signatures"] == 8  # after owner, site
    assert all(c["status"] in ("passed", "not-applicable") for c in doc["checks"])
    assert "passed" in page and "<script" not in page


def test_report_is_written_and_exit_is_1_from_the_command(
    led: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    out = tmp_path / "b"
    export_bundle(led.engine, out)
    lines = (out / "entries.jsonl").read_bytes().splitlines()
    (out / "entries.jsonl").write_bytes(b"\n".join(lines[:K] + lines[K + 1 :]) + b"\n")
    trust = log_public_key(led).hex()
    rc = main(
        ["verify-bundle", str(out), "--trust", trust, "--report", str(tmp_path / "v.html"),
         "--report-json", str(tmp_path / "v.json")]
    )  # fmt: skip
    assert rc == 1
    doc = json.loads((tmp_path / "v.json").read_text())
    # The signed entries name the entry; the unsigned manifest's complaint comes second.
    assert [(f["seq"], f["check"]) for f in doc["failures"]] == [(K, "sequence"), (None, "bundle-files")]
    statuses = {c["check"]: c["status"] for c in doc["checks"]}
    assert statuses["sequence"] == statuses["bundle-files"] == "failed"
    assert (tmp_path / "v.html").read_text().startswith("<!DOCTYPE html>")


# -- escaping: every text of the log is untrusted ----------------------------------------

PAYLOADS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "'; x='</style>"]


def _poison(value: Any, payload: str) -> Any:
    if isinstance(value, str):
        return value + payload
    if isinstance(value, list):
        return [_poison(v, payload) for v in value]
    if isinstance(value, dict):
        return {k: _poison(v, payload) for k, v in value.items()}
    return value


@pytest.fixture
def scenario_doc(sqlite_ledger: Ledger, tmp_path: Path) -> dict[str, Any]:
    build_scenario(sqlite_ledger)
    col = Collector()
    report = verify_database(
        sqlite_ledger.engine, trusted_log_key=log_public_key(sqlite_ledger), observer=col
    )
    return build_document(col, report=report, failure=None, source={"kind": "database"})


def test_scenario_report_has_plots_losses_and_orders(scenario_doc: dict[str, Any]) -> None:
    doc = scenario_doc
    series = {(s["owner"], s["material"]): s for s in doc["stock"]["series"]}
    assert series[("JP-RESERVE", "NDPR-OXIDE")]["targets"], "a target is plotted"
    assert doc["losses"]["events"] >= 2  # the short arrival and the count difference
    kinds = {x["kind"] for x in doc["losses"]["listed"]}
    assert {"stock.arrival", "stock.count"} <= kinds
    orders = doc["releases"]["orders"]
    assert len(orders) == 2 and all(o["approvals"] and o["executions"] for o in orders)
    page = render(doc)
    assert page.count("<svg") == len(series)
    for o in orders:
        assert o["id"] in page


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_text_is_escaped(scenario_doc: dict[str, Any], payload: str) -> None:
    doc = _poison(scenario_doc, payload)
    # keep what the renderer parses as times and numbers parseable
    for key in ("first_recorded_at", "last_recorded_at"):
        doc["entries"][key] = scenario_doc["entries"][key]
    for s, orig in zip(doc["stock"]["series"], scenario_doc["stock"]["series"], strict=True):
        s["points"] = orig["points"]
        s["targets"] = orig["targets"]
    doc["failures"] = [
        {"seq": 3, "check": "rules" + payload, "rule": payload, "message": payload,
         "evidence": {"message": payload, "field": payload, "entry": {"kind": payload}}}
    ]  # fmt: skip
    page = render(doc)
    assert payload not in page
    assert "<script" not in page and "<img" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert page.count("</style>") == 1


# -- headless Chromium, no network ----------------------------------------------------------


def test_html_opens_in_headless_chromium_offline(
    scenario_doc: dict[str, Any], tmp_path: Path
) -> None:
    page = render(scenario_doc)
    # Self-contained: nothing to fetch (only the SVG namespace URI, never loaded).
    refs = re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?([^"' )>]+)""", page)
    assert refs == [], refs
    assert "Content-Security-Policy" in page
    path = tmp_path / "report.html"
    path.write_text(page)
    proc = subprocess.run(
        [
            chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom", path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Verification report" in dom
    assert dom.count("<svg") == len(scenario_doc["stock"]["series"])
    assert "Release orders" in dom and scenario_doc["releases"]["orders"][0]["id"] in dom
