"""Local mode (the server's administrators): nobody signs as somebody else except on a
demo ledger, and every read takes --format table|json|csv (issue #9)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from keys import FileKeystore
from ledger.service import Ledger
from ledger.store.db import make_engine
from tests.test_cli import assert_one_line_error, run

SITE, JP, LOT = "SITE-7F3K", "JP-RESERVE", "LOT-1"


def _home(tmp_path: Path, *, demo: bool) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    led = Ledger(make_engine(f"sqlite:///{home / 'ledger.db'}"), FileKeystore(home / "keys", passphrase=b"cli-test-pass"))
    led.init(log_id="test.local/modes", admin="admin", demo=demo)
    loc = tmp_path / "loc.json"
    loc.write_text(json.dumps({"name": "Depot", "address": "Nowhere 1", "latitude": 1.5, "longitude": 2.5}))
    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF")
    for step in (
        ["owner", "add", JP, "--name", "Japan, reserve", "--country", "JP", "--as", "admin"],
        ["material", "add", "NDPR-OXIDE", "--name", "NdPr", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["site", "add", SITE, "--classification", "SECRET", "--custodian", JP, "--location-file", str(loc), "--as", "admin"],
        ["keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", SITE],
        ["keys", "register", "--as", "admin", "--user", "oscar", "--roles", "operator", "--sites", SITE],
        ["lot", "add", LOT, "--material", "NDPR-OXIDE", "--origin", "AU", "--supplier", "L", "--purity", "99",
         "--basis", "TREO", "--certificate", str(cert), "--as", "olga"],
        ["stock", "receive", "--site", SITE, "--owner", JP, "--lot", LOT, "--qty", "10 t", "--supplier", "L",
         "--purity", "99", "--reference", "R", "--as", "olga"],
    ):
        proc = run(home, *step)
        assert proc.returncode == 0, (step, proc.stderr)
    return home


COUNT = ["stock", "count", "--site", SITE, "--owner", JP, "--lot", LOT, "--book", "10 t", "--counted", "9 t",
         "--as", "olga", "--second-officer", "oscar"]


def test_second_officer_from_one_keystore_is_refused_on_a_real_ledger(tmp_path: Path) -> None:
    home = _home(tmp_path, demo=False)
    proc = run(home, *COUNT)
    assert_one_line_error(proc)
    assert proc.returncode == 1 and "own key" in proc.stderr
    assert "10 t" in run(home, "balances").stdout  # nothing was written


def test_second_officer_works_on_a_demo_ledger_and_says_so(tmp_path: Path) -> None:
    home = _home(tmp_path, demo=True)
    proc = run(home, *COUNT)
    assert proc.returncode == 0, proc.stderr
    assert "recorded stock.count" in proc.stdout
    assert "not independent" in proc.stderr
    assert "9 t" in run(home, "balances").stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _home(tmp_path_factory.mktemp("fmt"), demo=False)


@pytest.mark.parametrize(
    ("args", "key", "column"),
    [
        (["owner", "list"], "owners", "CODE"),
        (["material", "list"], "materials", "CODE"),
        (["lot", "list"], "lots", "CODE"),
        (["site", "list"], "sites", "CODE"),
        (["balances"], "balances", "OWNER"),
        (["keys", "list"], "keys", "KEY"),
        (["user", "list"], "users", "USER"),
        (["loans"], "loans", "LOAN"),
        (["cover"], "cover", "OWNER"),
        (["release", "policies"], "policies", "OWNER"),
        (["release", "list"], "orders", "ORDER"),
        (["trace", LOT], "legs", "SEQ"),
    ],
)
def test_every_read_takes_format(home: Path, args: list[str], key: str, column: str) -> None:
    as_json = run(home, *args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert isinstance(doc[key], list)
    as_csv = run(home, *args, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0][0] == column
    assert len(rows) - 1 == len(doc[key])
    table = run(home, *args)
    assert table.returncode == 0 and column in table.stdout


def test_csv_quotes_what_needs_quoting(home: Path) -> None:
    rows = list(csv.reader(io.StringIO(run(home, "owner", "list", "--format", "csv").stdout)))
    assert rows[1] == [JP, "Japan, reserve", "JP"]
    assert run(home, "owner", "list", "--format", "xml").returncode == 2
