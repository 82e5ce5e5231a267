"""``--trust`` (issue #10): the log key inline (64 hex, note verifier key) or as a file;
the bundle's own ``log.vkey`` works but warns that it proves nothing about which log this
is; anything else is a clear one-line usage error (exit 2) that does not echo it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from keys import Ed25519Signer
from ledger.checkpoint import note_verifier_key
from ledger.pubkey import to_pem
from ledger.service import Ledger
from ledger.store.audit import export_bundle
from tests.inprocess import reset_structlog  # noqa: F401  (autouse)
from tests.tamper_helpers import SIZE, build_history, log_public_key

SELF_WARNING = "warning: --trust is the bundle's own log.vkey"


@pytest.fixture
def world(sqlite_ledger: Ledger, tmp_path: Path) -> tuple[Path, bytes]:
    build_history(sqlite_ledger)
    out = tmp_path / "bundle"
    export_bundle(sqlite_ledger.engine, out)
    return out, log_public_key(sqlite_ledger)


def run(capsys: pytest.CaptureFixture[str], bundle: Path, trust: str) -> tuple[int, str, str]:
    rc = main(["verify-bundle", str(bundle), "--trust", trust])
    c = capsys.readouterr()
    return rc, c.out, c.err


def test_inline_hex(world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    bundle, key = world
    rc, out, err = run(capsys, bundle, key.hex())
    assert (rc, err) == (0, "")
    assert out.startswith(f"OK size {SIZE} ")


def test_inline_note_verifier_key(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, key = world
    vkey = note_verifier_key(key_name="test.local/ledger", public_key=key)
    rc, out, err = run(capsys, bundle, vkey)
    assert (rc, err) == (0, "") and out.startswith("OK ")


@pytest.mark.parametrize("form", ["pem", "hex", "vkey"])
def test_key_file(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str], tmp_path: Path, form: str
) -> None:
    bundle, key = world
    text = {
        "pem": to_pem(key),
        "hex": key.hex() + "\n",
        "vkey": note_verifier_key(key_name="test.local/ledger", public_key=key) + "\n",
    }[form]
    f = tmp_path / "anchor.key"
    f.write_text(text)
    rc, out, err = run(capsys, bundle, str(f))
    assert (rc, err) == (0, "") and out.startswith("OK ")


def test_the_bundles_own_vkey_warns(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, _key = world
    rc, out, err = run(capsys, bundle, str(bundle / "log.vkey"))
    assert rc == 0 and out.startswith("OK ")
    assert err.startswith(SELF_WARNING) and "proves" not in out
    assert err.count("\n") == 1


def test_the_bundles_own_vkey_by_another_path_warns(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, _key = world
    monkeypatch.chdir(bundle)
    rc = main(["verify-bundle", ".", "--trust", "./log.vkey"])
    assert rc == 0
    assert capsys.readouterr().err.startswith(SELF_WARNING)


def test_another_key_is_refused(world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    bundle, _key = world
    rc, _out, err = run(capsys, bundle, Ed25519Signer.generate().public_key.hex())
    assert rc == 1
    assert "the trusted log key is not this log's key" in err


@pytest.mark.parametrize(
    "value",
    [
        "not-a-key",
        "abcd" * 15,  # 60 hex digits
        "ab" * 33,  # 66 hex digits
        "name+zzzzzzzz+AAAA",
        "/no/such/file/secret-place.pem",
    ],
)
def test_anything_else_is_a_clear_usage_error(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str], value: str
) -> None:
    bundle, _key = world
    rc, out, err = run(capsys, bundle, value)
    assert rc == 2 and out == ""
    assert err.startswith("error: --trust ") and err.count("\n") == 1
    assert value not in err  # a path is not echoed back
    assert "Traceback" not in err


def test_a_file_that_is_not_a_key(
    world: tuple[Path, bytes], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle, _key = world
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    rc, _out, err = run(capsys, bundle, str(f))
    assert rc == 2
    assert err.startswith("error: --trust: ") and "notes.txt" not in err
