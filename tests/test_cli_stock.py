"""The stock commands as an operator types them, end to end through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, run

SECRET = {"name": "Bunker Nord 7", "address": "Via Segreta 12, Nowhere", "latitude": 46.123456, "longitude": 11.654321}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    assert run(h, "init", "--log-id", "test.local/stock").returncode == 0
    loc = tmp_path / "loc.json"
    loc.write_text(json.dumps(SECRET))
    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF assay")
    steps = [
        ["owner", "add", "JP-RESERVE", "--name", "Japan reserve", "--country", "JP", "--as", "admin"],
        ["material", "add", "NDPR-OXIDE", "--name", "NdPr oxide", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["site", "add", "SITE-7F3K", "--classification", "SECRET", "--custodian", "JP-RESERVE", "--location-file", str(loc), "--as", "admin"],
        ["keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "SITE-7F3K", "--clearance", "SECRET"],
        ["lot", "add", "LOT-1", "--material", "NDPR-OXIDE", "--origin", "AU", "--supplier", "Lynas", "--purity", "99.5",
         "--basis", "TREO", "--certificate", str(cert), "--as", "olga"],
        ["stock", "receive", "--site", "SITE-7F3K", "--owner", "JP-RESERVE", "--lot", "LOT-1", "--qty", "12.5 t",
         "--supplier", "Lynas", "--purity", "99.5", "--reference", "DN-1", "--as", "olga"],
    ]
    for step in steps:
        proc = run(h, *step)
        assert proc.returncode == 0, (step, proc.stderr)
    return h


def test_balances_lists_and_reports(home: Path) -> None:
    out = run(home, "balances", "--owner", "JP-RESERVE").stdout
    assert "SITE-7F3K" in out and "12.5 t" in out
    assert "SITE-7F3K" in run(home, "site", "list").stdout
    assert "NDPR-OXIDE" in run(home, "material", "list").stdout
    assert "JP-RESERVE" in run(home, "owner", "list").stdout
    assert "LOT-1" in run(home, "trace", "LOT-1").stdout
    crma = run(home, "report", "crma", "--owner", "JP-RESERVE")
    assert crma.returncode == 0, crma.stderr
    assert "SITE-7F3K" not in crma.stdout


def test_dispatch_arrive_by_seq(home: Path) -> None:
    assert run(home, "site", "add", "SITE-2B9Q", "--classification", "RESTRICTED", "--custodian", "JP-RESERVE",
               "--location-file", "-", "--as", "admin", input=json.dumps({**SECRET, "name": "Depot 2"})).returncode == 0
    assert run(home, "keys", "register", "--as", "admin", "--user", "omar", "--roles", "operator", "--sites", "SITE-2B9Q").returncode == 0
    sent = run(home, "stock", "dispatch", "--site", "SITE-7F3K", "--owner", "JP-RESERVE", "--lot", "LOT-1", "--qty", "2 t",
               "--to", "SITE-2B9Q", "--reference", "T-1", "--as", "olga")
    assert sent.returncode == 0, sent.stderr
    seq = sent.stdout.split()[-1]
    got = run(home, "stock", "arrive", "--site", "SITE-2B9Q", "--transfer", seq, "--qty", "1999.5 kg",
              "--shortfall-reason", "spill", "--as", "omar")
    assert got.returncode == 0, got.stderr
    assert run(home, "verify", "--trust", str(home / "log.pub")).returncode == 0


def test_inexact_quantity_is_refused_in_one_line(home: Path) -> None:
    proc = run(home, "stock", "sell", "--site", "SITE-7F3K", "--owner", "JP-RESERVE", "--lot", "LOT-1", "--qty", "1 lb",
               "--buyer", "B", "--tender", "T", "--order", "0" * 32, "--as", "olga")
    assert_one_line_error(proc)
    assert "rounded" in proc.stderr


def test_location_never_leaves_the_sealed_table(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert run(home, "export", str(out)).returncode == 0
    blobs = [p.read_bytes() for p in out.iterdir()] + [p.read_bytes() for p in home.glob("ledger.db*")]
    for value in ("Bunker Nord 7", "Via Segreta", "46.123456", "11.654321"):
        assert not any(value.encode() in b for b in blobs), value


def test_points_in_time_the_log_cannot_answer_are_refused(home: Path) -> None:
    """Issue #8 item 10: the CLI refuses what the API refuses (one shared check)."""
    ok = run(home, "balances", "--as-of-seq", "0")
    assert ok.returncode == 0, ok.stderr
    for args, field in (
        (("--as-of-seq", "100000"), "as_of_seq"),
        (("--as-of-seq", "-5"), "as_of_seq"),
        (("--as-of", "1999-01-01T00:00:00Z"), "as_of"),
    ):
        proc = run(home, "balances", *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert_one_line_error(proc)
        assert field in proc.stderr
    for year in ("0", "-5", "10000"):
        proc = run(home, "report", "crma", "--year", year)
        assert proc.returncode == 1, (year, proc.stderr)
        assert "year" in proc.stderr
