"""``reserve backup`` / ``reserve restore`` (issue #11) on SQLite and PostgreSQL.

A round trip reproduces every table; a restore goes only into an empty database and only
after the history verifies against the operator's log key and checkpoint. Altered backups
(a flipped byte, a dropped line, a changed manifest, even with the manifest's digests made
to match again) are refused and nothing is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from cli.main import main
from ledger.store.schema import metadata
from tests import api_fixtures
from tests.api_fixtures import SITE_A, World
from tests.conftest import PG_BASE

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
pg_world = api_fixtures.pg_world
world = api_fixtures.world

PURPOSE = "scheduled safety inspection of the vault"


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request: pytest.FixtureRequest) -> World:
    """The API scenario on each engine, plus a reveal so the access log is not empty."""
    w: World = request.getfixturevalue("world" if request.param == "sqlite" else "pg_world")
    resp = w.client.post(f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga"))
    assert resp.status_code == 200, resp.text
    return w


def _empty_pg_schema() -> Iterator[str]:
    schema = f"r_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def target(source: World, tmp_path: Path) -> Iterator[str]:
    """An empty database on the same engine as the source."""
    if source.db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        yield from _empty_pg_schema()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with eng.connect() as c:
            return {
                t.name: [tuple(r) for r in c.execute(select(t).order_by(*t.primary_key.columns))]
                for t in metadata.sorted_tables
            }
    finally:
        eng.dispose()


def table_names(url: str) -> list[str]:
    eng = create_engine(url)
    try:
        return inspect(eng).get_table_names()
    finally:
        eng.dispose()


def trust_file(source: World, tmp_path: Path) -> str:
    """The log's public key, as the operator keeps it (log.pub)."""
    from ledger.pubkey import to_pem

    path = tmp_path / "log.pub"
    path.write_text(to_pem(source.svc.ledger.log_signer().public_key))
    return str(path)


def make_backup(source: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """The backup file and the checkpoint note the operator keeps from its output."""
    file = tmp_path / "ledger.backup"
    kept = tmp_path / "kept.note"
    rc, out, err = cli(capsys, "backup", str(file), "--db", source.db_url, "--checkpoint-out", str(kept))
    assert rc == 0, err
    note = out.split("keep a copy apart from the backup):\n", 1)[1]
    assert kept.read_text() == note
    assert file.stat().st_mode & 0o777 == 0o600  # owner only
    manifest = json.loads(file.read_bytes().split(b"\n", 1)[0])
    assert note == manifest["checkpoint"] and note.startswith("test.local/ledger\n")
    note_file = tmp_path / "checkpoint.note"
    note_file.write_text(note)
    return file, note_file


def test_round_trip_restores_every_table_and_verifies(
    source: World, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, note = make_backup(source, tmp_path, capsys)
    trust = trust_file(source, tmp_path)
    rc, out, err = cli(capsys, "restore", str(file), "--db", target, "--checkpoint", str(note), "--trust", trust)
    assert rc == 0, err
    assert out.startswith("restored ")
    before, after = dump(source.db_url), dump(target)
    assert before == after
    assert before["entries"] and before["site_locations"] and before["access_log"]
    rc, out, err = cli(capsys, "verify", "--db", target, "--trust", trust)
    assert rc == 0, err
    # Restore never writes over a database that holds anything.
    rc, _, err = cli(capsys, "restore", str(file), "--db", target, "--checkpoint", str(note), "--trust", trust)
    assert rc == 2 and "not empty" in err
    assert dump(target) == before
    # Nor does a backup overwrite a file.
    rc, _, err = cli(capsys, "backup", str(file), "--db", source.db_url)
    assert rc == 2 and "exists" in err


# -- altered backups --------------------------------------------------------------------


def _lines(file: Path) -> list[bytes]:
    return file.read_bytes().splitlines(keepends=True)


def _reseal(lines: list[bytes]) -> list[bytes]:
    """Make the manifest's counts and digests match the (altered) lines again, as an
    attacker who rewrites the whole file would."""
    manifest = json.loads(lines[0])
    digests: dict[str, hashlib._Hash] = {}
    counts: dict[str, int] = {}
    for line in lines[1:]:
        name = json.loads(line)["t"]
        digests.setdefault(name, hashlib.sha256()).update(line)
        counts[name] = counts.get(name, 0) + 1
    for name, info in manifest["tables"].items():
        info["rows"] = counts.get(name, 0)
        info["sha256"] = digests.get(name, hashlib.sha256()).hexdigest()
    return [json.dumps(manifest, sort_keys=True).encode() + b"\n", *lines[1:]]


def _entry_index(lines: list[bytes], seq: int) -> int:
    for i, line in enumerate(lines[1:], 1):
        obj = json.loads(line)
        if obj["t"] == "entries" and obj["r"]["seq"] == seq:
            return i
    raise AssertionError(seq)


def flip_entry_byte(lines: list[bytes]) -> list[bytes]:
    i = _entry_index(lines, 3)
    obj = json.loads(lines[i])
    leaf = bytearray(base64.b64decode(obj["r"]["leaf"]))
    pos = leaf.index(b'"kind"') + 9  # inside the kind's value: still JSON
    leaf[pos] ^= 0x01
    obj["r"]["leaf"] = base64.b64encode(bytes(leaf)).decode()
    out = list(lines)
    out[i] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return out


def drop_entry_line(lines: list[bytes]) -> list[bytes]:
    i = _entry_index(lines, 5)
    return lines[:i] + lines[i + 1 :]


def drop_access_line(lines: list[bytes]) -> list[bytes]:
    for i, line in enumerate(lines[1:], 1):
        if json.loads(line)["t"] == "access_log":
            return lines[:i] + lines[i + 1 :]
    raise AssertionError("no access log line")


def change_manifest_size(lines: list[bytes]) -> list[bytes]:
    manifest = json.loads(lines[0])
    manifest["size"] -= 1
    return [json.dumps(manifest, sort_keys=True).encode() + b"\n", *lines[1:]]


def change_manifest_digest(lines: list[bytes]) -> list[bytes]:
    manifest = json.loads(lines[0])
    digest = manifest["tables"]["balances"]["sha256"]
    manifest["tables"]["balances"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    return [json.dumps(manifest, sort_keys=True).encode() + b"\n", *lines[1:]]


def change_balance_and_reseal(lines: list[bytes]) -> list[bytes]:
    out = list(lines)
    for i, line in enumerate(out[1:], 1):
        obj = json.loads(line)
        if obj["t"] == "balances" and obj["r"]["quantity"] > 0:
            obj["r"]["quantity"] += 1000
            out[i] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            return _reseal(out)
    raise AssertionError("no balance")


ALTERATIONS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "flipped byte in an entry": flip_entry_byte,
    "flipped byte in an entry, manifest resealed": lambda ls: _reseal(flip_entry_byte(ls)),
    "dropped entry line": drop_entry_line,
    "dropped entry line, manifest resealed": lambda ls: _reseal(drop_entry_line(ls)),
    "dropped access-log line, manifest resealed": lambda ls: _reseal(drop_access_line(ls)),
    "manifest size changed": change_manifest_size,
    "manifest digest changed": change_manifest_digest,
    "projection changed, manifest resealed": change_balance_and_reseal,
    "truncated file": lambda ls: ls[: len(ls) // 2],
}


@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_altered_backups_are_refused_and_nothing_is_written(
    source: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, note = make_backup(source, tmp_path, capsys)
    trust = trust_file(source, tmp_path)
    original = _lines(file)
    for name, alter in ALTERATIONS.items():
        bad = tmp_path / f"bad-{abs(hash(name))}.backup"
        bad.write_bytes(b"".join(alter(original)))
        target = tmp_path / f"target-{abs(hash(name))}.db"
        rc, _out, err = cli(capsys, "restore", str(bad), "--db", f"sqlite:///{target}", "--checkpoint", str(note), "--trust", trust)
        assert rc == 1, (name, rc, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not target.exists(), f"{name}: the restore left a database behind"
    # The unaltered file restores (the alterations, not the set-up, were refused).
    target = tmp_path / "good.db"
    rc, _, err = cli(capsys, "restore", str(file), "--db", f"sqlite:///{target}", "--checkpoint", str(note), "--trust", trust)
    assert rc == 0, err


def test_restore_needs_the_operators_key_and_a_consistent_checkpoint(
    source: World, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, note = make_backup(source, tmp_path, capsys)
    trust = trust_file(source, tmp_path)
    # Another log's key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.pubkey import to_pem

    other = tmp_path / "other.pub"
    other.write_text(to_pem(Ed25519PrivateKey.generate().public_key().public_bytes_raw()))
    rc, _, err = cli(capsys, "restore", str(file), "--db", target, "--checkpoint", str(note), "--trust", str(other))
    assert rc == 1, err
    # A checkpoint the operator kept that this history does not extend (a forged note
    # whose root differs): refused.
    forged = note.read_text().split("\n")
    forged[2] = base64.b64encode(b"\x00" * 32).decode()
    bad_note = tmp_path / "forged.note"
    bad_note.write_text("\n".join(forged))
    rc, _, err = cli(capsys, "restore", str(file), "--db", target, "--checkpoint", str(bad_note), "--trust", trust)
    assert rc in (1, 2), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert table_names(target) == []
    # Both arguments are required.
    with pytest.raises(SystemExit) as exit_:
        main(["restore", str(file), "--db", target, "--trust", trust])
    assert exit_.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_a_sqlite_backup_restores_into_postgresql(
    source: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One logical format for both engines: a ledger moves from the embedded default to
    PostgreSQL and still verifies (deploy/HA-DR.md)."""
    from tests.conftest import require_pg

    require_pg()
    file, note = make_backup(source, tmp_path, capsys)
    trust = trust_file(source, tmp_path)
    for url in _empty_pg_schema():
        rc, _, err = cli(capsys, "restore", str(file), "--db", url, "--checkpoint", str(note), "--trust", trust)
        assert rc == 0, err
        assert dump(url) == dump(source.db_url)
        rc, _, err = cli(capsys, "verify", "--db", url, "--trust", trust)
        assert rc == 0, err
