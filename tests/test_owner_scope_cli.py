"""``reserve owner-scope``, ``reserve export --owner`` and ``reserve verify-bundle --owner``
end to end, as separate processes (issue #14)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from keys import FileKeystore
from keys.sealing import load_or_create_sealer
from ledger.owner_scope import read_key_file
from ledger.owner_scope_verify import owner_balances
from ledger.service import Ledger
from ledger.store import owner_scope
from ledger.store.db import make_engine
from ledger.store.projections import read_table
from ledger.store.schema import owner_keys
from tests.test_cli import assert_one_line_error, run
from tests.test_owner_scope import FR, JP, RO, SECRETS_OF_OTHERS, build


def test_owner_scope_commands_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init = run(home, "init", "--log-id", "test.local/cli")
    assert init.returncode == 0 and "owner-scoped audit enabled" in init.stdout
    # A new log is owner-scoped from the start: only genesis precedes the v2 leaves.
    enabled = run(home, "owner-scope", "enable")
    assert_one_line_error(enabled)
    assert "already enabled" in enabled.stderr
    keydir, pw = home / "keys", b"cli-test-pass"
    engine = make_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.connect() as conn:
        assert owner_scope.enabled_from(conn) == 1
    led = Ledger(engine, FileKeystore(keydir, passphrase=pw), sealer=lambda: load_or_create_sealer(keydir, passphrase=pw))
    build(led, enable=False)

    out = tmp_path / "jp"
    exported = run(home, "export", "--owner", JP, str(out))
    assert exported.returncode == 0, exported.stderr
    for owner in (JP, FR, RO):
        made = run(home, "owner-scope", "key", owner, "--out", str(tmp_path / f"{owner}.key"))
        assert made.returncode == 0, made.stderr
        assert oct((tmp_path / f"{owner}.key").stat().st_mode & 0o777) == "0o600"
        assert "secret" not in made.stdout.replace("(a secret", "")
    again = run(home, "owner-scope", "key", JP, "--out", str(tmp_path / f"{JP}.key"))
    assert_one_line_error(again)

    pub = str(home / "log.pub")
    ok = run(home, "verify-bundle", str(out), "--owner", JP, "--owner-key", str(tmp_path / f"{JP}.key"), "--trust", pub)
    assert ok.returncode == 0, ok.stderr
    assert "withheld and shown not to touch" in ok.stdout
    blob = b"".join(p.read_bytes() for p in out.iterdir())
    assert not any(s.encode() in blob for s in SECRETS_OF_OTHERS)

    # The owner's balances from its own bundle (the scoped replay), as the server has them.
    bal = run(home, "bundle", "balances", str(out), "--trust", pub, "--owner-key", str(tmp_path / f"{JP}.key"), "--format", "json")
    assert bal.returncode == 0, bal.stderr
    with engine.connect() as conn:
        server = owner_balances(read_table(conn, "balances"), JP)
    assert {(r["site"], r["lot"]): r["quantity_g"] for r in json.loads(bal.stdout)} == {
        k: v.quantity for k, v in server.items()
    }
    assert_one_line_error(run(home, "bundle", "balances", str(out), "--trust", pub))  # no key file

    wrong_key = run(home, "verify-bundle", str(out), "--owner", JP, "--owner-key", str(tmp_path / f"{FR}.key"), "--trust", pub)
    assert_one_line_error(wrong_key)
    no_owner = run(home, "verify-bundle", str(out), "--trust", pub)
    assert_one_line_error(no_owner)
    assert f"--owner {JP}" in no_owner.stderr

    full = tmp_path / "full"
    assert run(home, "export", str(full)).returncode == 0
    keys = [a for o in (JP, FR, RO) for a in ("--owner-key", str(tmp_path / f"{o}.key"))]
    checked = run(home, "verify-bundle", str(full), "--trust", pub, *keys)
    assert checked.returncode == 0, checked.stderr
    partial = run(home, "verify-bundle", str(full), "--trust", pub, "--owner-key", str(tmp_path / f"{JP}.key"))
    assert_one_line_error(partial)
    assert "no scoped-audit secret" in partial.stderr

    # The owners' secrets are stored sealed: none of them is in the database file.
    with engine.connect() as conn:
        rows = conn.execute(select(owner_keys)).all()
    assert len(rows) == 3 and all(r.secret is None and r.sealed for r in rows)
    db_bytes = b"".join(p.read_bytes() for p in home.glob("ledger.db*"))
    for o in (JP, FR, RO):
        secret = read_key_file((tmp_path / f"{o}.key").read_text())[2][0].secret
        assert secret not in db_bytes and secret.hex().encode() not in db_bytes
    assert "already sealed" in run(home, "owner-scope", "seal").stdout

    rotated = run(home, "owner-scope", "rotate", JP)
    assert rotated.returncode == 0 and "epoch 2" in rotated.stdout
    unknown = run(home, "export", "--owner", "NOBODY", str(tmp_path / "x"))
    assert_one_line_error(unknown)
    verified = run(home, "verify")
    assert verified.returncode == 0 and "not checked" not in verified.stderr  # commitments checked
