"""Files named by flags are user input: a bad one is one line and exit 2, never a crash
(issue #8 item 5). Each case failed with exit 70 "unexpected failure" before."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import add_site, assert_one_line_error, run

BAD_CONTAINERS = {
    "malformed": b'[{"id": "C1", "type": "drum", ',
    "nul-byte": b'[{"id": "C1\x00", "type": "drum", "net_mass": "250 kg"}]',
    "nul-escape": b'[{"id": "C1\\u0000", "type": "drum", "net_mass": "250 kg"}]',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "not-utf8": b'[{"id": "\xff"}]',
    "not-a-list": b'{"id": "C1"}',
    "nan": b'[{"id": "C1", "type": "drum", "net_mass": NaN}]',
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("files") / "home"
    assert run(h, "init", "--log-id", "test.local/files").returncode == 0
    add_site(h, "S")
    for step in (
        ["material", "add", "NDPR-OXIDE", "--name", "NdPr", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "S"],
    ):
        proc = run(h, *step)
        assert proc.returncode == 0, proc.stderr
    return h


@pytest.mark.parametrize("case", sorted(BAD_CONTAINERS))
def test_bad_containers_file_is_a_usage_error(home: Path, tmp_path: Path, case: str) -> None:
    cont = tmp_path / "containers.json"
    cont.write_bytes(BAD_CONTAINERS[case])
    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF")
    proc = run(home, "lot", "add", "LOT-1", "--material", "NDPR-OXIDE", "--origin", "AU", "--supplier", "L",
               "--purity", "99", "--basis", "TREO", "--certificate", str(cert), "--containers", str(cont), "--as", "olga")
    assert_one_line_error(proc)
    assert proc.returncode == 2, proc.stderr
    assert "containers file" in proc.stderr
    assert "unexpected" not in proc.stderr


def test_missing_files_are_usage_errors(home: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    for args in (
        ["keys", "register", "--as", "admin", "--user", "ann", "--roles", "auditor", "--public-key-file", missing],
        ["lot", "add", "L2", "--material", "NDPR-OXIDE", "--origin", "AU", "--supplier", "L", "--purity", "99",
         "--basis", "TREO", "--certificate", missing, "--as", "olga"],
        ["verify", "--trust", missing],
        ["verify", "--checkpoint", missing],
        ["site", "add", "S", "--classification", "SECRET", "--custodian", "X", "--location-file", missing, "--as", "admin"],
    ):
        proc = run(home, *args)
        assert_one_line_error(proc)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "cannot read" in proc.stderr


def test_binary_public_key_file_is_a_usage_error(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pub"
    bad.write_bytes(b"\x00\xff" * 40)
    proc = run(home, "keys", "register", "--as", "admin", "--user", "ann", "--roles", "auditor", "--public-key-file", str(bad))
    assert_one_line_error(proc)
    assert proc.returncode == 2
