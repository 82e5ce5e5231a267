"""``reserve release ...`` as officials and ministers type it, end to end through the CLI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.errors import Rejected
from ledger.timefmt import format_time
from tests.test_cli import assert_one_line_error, run

LOCATION = {"name": "Depot", "address": "Nowhere 1", "latitude": 1.5, "longitude": 2.5}


def ok(home: Path, *args: str) -> str:
    proc = run(home, *args)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


def seq_of(out: str) -> str:
    return out.split()[-1]


def _cosigned_policy(home: Path, effective_at: str) -> None:
    from keys import FileKeystore
    from keys.sealing import load_or_create_sealer
    from ledger.service import Ledger, new_body
    from ledger.store.db import make_engine

    keys, pw = home / "keys", b"cli-test-pass"
    # The log is owner-scoped (reserve init, issue #14): appending opens the owners' sealed secrets.
    led = Ledger(make_engine(f"sqlite:///{home / 'ledger.db'}"), FileKeystore(keys, passphrase=pw),
                 sealer=lambda: load_or_create_sealer(keys, passphrase=pw))
    body = new_body(
        "policy.set", "admin", owner="JP-RESERVE", material="NDPR-OXIDE", quorum=1,
        crisis_index="FASTMARKETS-NDPR", crisis_currency="USD", crisis_threshold="95",
        count_tolerance_pct="0.5", regimes=["emergency_release", "loan"], effective_at=effective_at,
    )
    led.submit(body, [led.signer_for("admin"), led.signer_for("mina")])


def test_release_request_approve_order_execute_revoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(home, "init", "--log-id", "test.local/release")
    loc = tmp_path / "loc.json"
    loc.write_text(json.dumps(LOCATION))
    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF assay")
    declaration = tmp_path / "declaration.pdf"
    declaration.write_bytes(b"%PDF our inventory is exhausted")
    for step in (
        ["owner", "add", "JP-RESERVE", "--name", "Japan reserve", "--country", "JP", "--as", "admin"],
        ["material", "add", "NDPR-OXIDE", "--name", "NdPr oxide", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["site", "add", "SITE-7F3K", "--classification", "SECRET", "--custodian", "JP-RESERVE", "--location-file", str(loc), "--as", "admin"],
        ["keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "SITE-7F3K"],
        ["keys", "register", "--as", "admin", "--user", "fiona", "--roles", "official", "--owners", "JP-RESERVE"],
        ["keys", "register", "--as", "admin", "--user", "felix", "--roles", "official", "--owners", "JP-RESERVE"],
        ["keys", "register", "--as", "admin", "--user", "mina", "--roles", "minister", "--owners", "JP-RESERVE"],
        ["lot", "add", "LOT-1", "--material", "NDPR-OXIDE", "--origin", "AU", "--supplier", "Lynas", "--purity", "99.5",
         "--basis", "TREO", "--certificate", str(cert), "--as", "olga"],
        ["stock", "receive", "--site", "SITE-7F3K", "--owner", "JP-RESERVE", "--lot", "LOT-1", "--qty", "12.5 t",
         "--supplier", "Lynas", "--purity", "99.5", "--reference", "DN-1", "--as", "olga"],
    ):
        ok(home, *step)

    policy = ["release", "policy", "--owner", "JP-RESERVE", "--material", "NDPR-OXIDE", "--quorum", "1",
              "--crisis-index", "FASTMARKETS-NDPR", "--crisis-currency", "USD", "--crisis-threshold", "95",
              "--regimes", "emergency_release,loan", "--as", "admin"]
    # Local mode on a ledger that is not a demo: one keystore may not sign for two people
    # (issue #9 item 4); co-signing is a proposal in client mode (tests/test_cli_client.py).
    refused = run(home, *policy, "--cosign", "mina", "--effective-at", "2030-01-01T00:00:00Z")
    assert_one_line_error(refused)
    assert refused.returncode == 1 and "own key" in refused.stderr and "demo" in refused.stderr
    # The policy as a completed proposal appends it: both signatures over one body.
    with pytest.raises(Rejected, match="only at a future time"):
        _cosigned_policy(home, "2020-01-01T00:00:00Z")
    effective = datetime.now(UTC) + timedelta(seconds=8)  # a loaded machine is slow
    _cosigned_policy(home, format_time(effective))
    assert "to come" in ok(home, "release", "policies")
    while datetime.now(UTC) <= effective:
        time.sleep(0.1)

    price = seq_of(ok(home, "release", "price", "--index", "FASTMARKETS-NDPR", "--material", "NDPR-OXIDE",
                      "--value", "131.5", "--currency", "USD", "--source", "Fastmarkets", "--as", "felix"))
    ask = ["release", "request", "--owner", "JP-RESERVE", "--material", "NDPR-OXIDE", "--qty", "2 t",
           "--recipient", "Demo Magnetics KK", "--regime", "emergency_release", "--purpose", "magnet lines idle",
           "--as", "fiona"]
    no_price = run(home, *ask, "--declaration", str(declaration))  # issue #12: the crisis price too
    assert_one_line_error(no_price)
    assert "must carry the price observation" in no_price.stderr
    req = seq_of(ok(home, *ask, "--declaration", str(declaration), "--price-observation", price))
    listed = ok(home, "release", "list")
    assert "open requests: 1" in listed and "still needs: 1 more approval(s)" in listed

    self_approval = run(home, "release", "approve", req, "--as", "fiona")
    assert_one_line_error(self_approval)
    assert "nobody approves their own request" in self_approval.stderr
    early = run(home, "release", "order", req, "--cap", "2 t", "--valid-until", "2099-01-01T00:00:00Z",
                "--sites", "SITE-7F3K", "--report-to", "Diet committee", "--as", "mina")
    assert_one_line_error(early)
    assert "needs 1 approval(s)" in early.stderr

    ok(home, "release", "approve", req, "--cap", "1.5 t", "--as", "felix")
    assert "an order by a minister of JP-RESERVE" in ok(home, "release", "show", req)
    until = format_time(datetime.now(UTC) + timedelta(days=7))
    over = run(home, "release", "order", req, "--cap", "2 t", "--valid-until", until, "--sites", "SITE-7F3K",
               "--report-to", "Diet committee", "--as", "mina")
    assert_one_line_error(over)
    assert "condition of felix's approval" in over.stderr
    order = seq_of(ok(home, "release", "order", req, "--cap", "1.5 t", "--valid-until", until, "--sites",
                      "SITE-7F3K", "--report-to", "Diet committee", "--as", "mina"))

    release = ["stock", "release", "--site", "SITE-7F3K", "--owner", "JP-RESERVE", "--lot", "LOT-1",
               "--order", order, "--recipient", "Demo Magnetics KK", "--as", "olga"]
    ok(home, *release, "--qty", "1 t")
    too_much = run(home, *release, "--qty", "600 kg")
    assert_one_line_error(too_much)
    assert "would exceed the order's cap: 0.5 t of 1.5 t remain" in too_much.stderr

    shown = ok(home, "release", "show", order)
    assert "remaining 0.5 t" in shown and "SITE-7F3K" in shown and LOCATION["name"] not in shown
    report = json.loads(ok(home, "release", "report", order, "--format", "json"))
    assert report["report_to"] == "Diet committee" and report["order"]["remaining_g"] == 500_000
    assert report["order"]["remaining"] == "0.5 t"
    assert [e["site"] for e in report["executions"]] == ["SITE-7F3K"]

    ok(home, "release", "revoke", order, "--reason", "recipient re-supplied", "--as", "mina")
    after = run(home, *release, "--qty", "1 kg")
    assert_one_line_error(after)
    assert "revoked" in after.stderr
    assert "revoked" in ok(home, "release", "list", "--all")
    ok(home, "verify", "--trust", str(home / "log.pub"))
