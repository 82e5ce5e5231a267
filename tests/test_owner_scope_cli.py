"""``reserve owner-scope``, ``reserve export --owner`` and ``reserve verify-bundle --owner``
end to end, as separate processes (issue #14)."""

from __future__ import annotations

from pathlib import Path

from keys import FileKeystore
from ledger.service import Ledger
from ledger.store.db import make_engine
from tests.test_cli import assert_one_line_error, run
from tests.test_owner_scope import FR, JP, RO, SECRETS_OF_OTHERS, build


def test_owner_scope_commands_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--log-id", "test.local/cli").returncode == 0
    enabled = run(home, "owner-scope", "enable")
    assert enabled.returncode == 0, enabled.stderr
    led = Ledger(make_engine(f"sqlite:///{home / 'ledger.db'}"), FileKeystore(home / "keys", passphrase=b"cli-test-pass"))
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

    rotated = run(home, "owner-scope", "rotate", JP)
    assert rotated.returncode == 0 and "epoch 2" in rotated.stdout
    unknown = run(home, "export", "--owner", "NOBODY", str(tmp_path / "x"))
    assert_one_line_error(unknown)
    assert run(home, "verify").returncode == 0
